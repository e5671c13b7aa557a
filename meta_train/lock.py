"""One run per workdir: a lock file held for the run's lifetime.

Two runs on one workdir interleave their ``metrics.jsonl`` rows and checkpoint
sets, and the damage survives every later resume, so the second one must be
refused before it writes anything. The lock is an ``fcntl.flock`` on
``WORKDIR/LOCK``: the kernel releases it when its process ends, however it
ends (SIGKILL and power loss included), so a lock left by a dead run is stale
by construction and the next run takes it. The file also records who holds it
(pid, host, start time), which the refusal names.

The file itself is never deleted: a process that opened it just before the
holder deleted it would lock an orphaned inode while a third one locked a new
file, and both would run.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time

LOCK_FILE = "LOCK"


class LockError(RuntimeError):
  """The workdir is in use by another live run; the message names it and the fix."""


class WorkdirLock:
  """``with WorkdirLock(workdir):`` holds the workdir's lock; ``acquire``/``release`` by hand."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK_FILE)
    self._fd: int | None = None

  def acquire(self) -> "WorkdirLock":
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      os.close(fd)
      if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
        raise
      raise LockError(f"workdir {os.path.dirname(self.path)!r} is in use by another run "
                      f"({describe(read_owner(self.path))}). Wait for it to end (or stop it "
                      "with SIGTERM, which checkpoints), or use another --workdir.") from None
    owner = {"pid": os.getpid(), "host": socket.gethostname(),
             "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(owner) + "\n").encode(), 0)
    os.fsync(fd)
    self._fd = fd
    return self

  def release(self) -> None:
    if self._fd is not None:
      os.ftruncate(self._fd, 0)  # a lock file with no owner reads as "not held"
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None

  def __enter__(self) -> "WorkdirLock":
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()


def read_owner(path: str) -> dict:
  """The holder recorded in a lock file; {} if it is empty or unreadable."""
  try:
    with open(path) as f:
      owner = json.loads(f.read() or "{}")
  except (OSError, ValueError):
    return {}
  return owner if isinstance(owner, dict) else {}


def describe(owner: dict) -> str:
  if not owner:
    return "owner not recorded yet"
  return (f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')}, "
          f"started {owner.get('started', '?')}")
