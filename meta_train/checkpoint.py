"""Checkpoints: orbax CheckpointManager over the whole outer state, as host arrays.

The state is flattened to numbered leaves and saved from host numpy copies, so
a checkpoint does not depend on the device count (a run can resume on another
mesh) and process 0 alone writes it. orbax writes into a temporary directory
and renames it when complete, so a kill at any moment leaves either the old or
the new checkpoint, never a torn one; ``keep`` bounds how many stay.

A checkpoint can still be damaged after it was written (a truncated copy, a
full disk, a bad sector). Each save therefore ends by writing a manifest of
the step's files (size and SHA-256, ``STEP/lopt_manifest.json``), and resume
checks the newest checkpoint against it before orbax reads it (a torn file
that orbax reads fails deep in tensorstore, with pages of asyncio noise). One
that fails the check, or does not restore, is moved aside (``checkpoints/corrupt-STEP``: nothing is deleted) and
falls back to the next newest, saying which step was skipped and why; only
when none restores does it stop, naming the directories and the fix.
Temporary directories that a killed save left behind are removed when the
manager opens (the caller holds the workdir's lock, so no live save owns them).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  """No checkpoint in the workdir can be restored; the message names them and the fix."""


TMP_MARK = ".orbax-checkpoint-tmp"


def remove_orphans(root: str) -> list[str]:
  """Deletes the temporary directories of saves that never finished; returns their names."""
  if not os.path.isdir(root):
    return []
  orphans = sorted(n for n in os.listdir(root) if TMP_MARK in n)
  for n in orphans:
    shutil.rmtree(os.path.join(root, n), ignore_errors=True)
  return orphans


def manager(workdir: str, keep: int) -> ocp.CheckpointManager | None:
  """Process 0's manager (None on other processes: they neither read nor write)."""
  if jax.process_index() != 0:
    return None
  root = os.path.abspath(os.path.join(workdir, "checkpoints"))
  remove_orphans(root)
  multi = jax.process_count() > 1
  if multi:
    # orbax cannot create the root itself when only some processes take part.
    os.makedirs(root, exist_ok=True)
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=not multi, enable_async_checkpointing=False,
      # Only process 0 takes part, so orbax's barriers never wait for the others.
      multiprocessing_options=ocp.options.MultiprocessingOptions(
          primary_host=0, active_processes={0}) if multi else ocp.options.MultiprocessingOptions())
  return ocp.CheckpointManager(root, options=options)


def _named(leaves: list[np.ndarray]) -> dict[str, np.ndarray]:
  return {f"leaf{i:05d}": np.asarray(x) for i, x in enumerate(leaves)}


MANIFEST = "lopt_manifest.json"


def _file_digests(step_dir: str) -> dict[str, list]:
  """``{relative path: [size, sha256]}`` of every file of a checkpoint step but the manifest."""
  out = {}
  for dirpath, _, files in os.walk(step_dir):
    for name in files:
      path = os.path.join(dirpath, name)
      rel = os.path.relpath(path, step_dir)
      if rel.startswith(MANIFEST):  # the manifest and its temporary file
        continue
      h = hashlib.sha256()
      with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
          h.update(chunk)
      out[rel] = [os.path.getsize(path), h.hexdigest()]
  return dict(sorted(out.items()))


def _step_dir(mngr: ocp.CheckpointManager, step: int) -> str:
  return os.path.join(str(mngr.directory), str(step))


def write_manifest(mngr: ocp.CheckpointManager, step: int) -> None:
  path = os.path.join(_step_dir(mngr, step), MANIFEST)
  with open(path + ".tmp", "w") as f:
    json.dump(_file_digests(_step_dir(mngr, step)), f, indent=1)
  os.replace(path + ".tmp", path)


def verify(mngr: ocp.CheckpointManager, step: int) -> str | None:
  """Why the files of checkpoint ``step`` differ from its manifest; None if they match.

  A checkpoint written before manifests existed (or killed between orbax's
  commit and the manifest) has none and is left to orbax's own checks.
  """
  step_dir = _step_dir(mngr, step)
  try:
    with open(os.path.join(step_dir, MANIFEST)) as f:
      expected = json.load(f)
  except FileNotFoundError:
    return None
  except (OSError, ValueError) as e:
    return f"its manifest {MANIFEST} is unreadable ({e})"
  got = _file_digests(step_dir)
  for rel, (size, digest) in expected.items():
    if rel not in got:
      return f"{rel} is missing"
    if got[rel][0] != size:
      return f"{rel} has {got[rel][0]} bytes, {size} were written"
    if got[rel][1] != digest:
      return f"{rel} has changed since it was written (SHA-256 mismatch)"
  return None


def save(mngr: ocp.CheckpointManager, step: int, host_state: Any) -> None:
  """Saves a host pytree at ``step`` (call on process 0 only in multi-host runs)."""
  mngr.save(step, args=ocp.args.StandardSave(_named(jax.tree.leaves(host_state))), force=True)
  mngr.wait_until_finished()
  write_manifest(mngr, step)


def _restore(mngr: ocp.CheckpointManager, step: int, like: Any) -> Any:
  leaves, treedef = jax.tree.flatten(like)
  target = {k: np.zeros(np.shape(x), np.asarray(x).dtype) for k, x in _named(leaves).items()}
  got = mngr.restore(step, args=ocp.args.StandardRestore(target))
  if sorted(got) != sorted(target):
    raise ValueError(f"it holds leaves {sorted(got)[:3]}..., not the run's {len(target)}")
  return treedef.unflatten([np.asarray(got[k]) for k in sorted(got)])


def _reason(e: Exception) -> str:
  """The first line of an orbax/tensorstore error (they run to hundreds of lines)."""
  text = f"{type(e).__name__}: {e}".strip()
  first = text.splitlines()[0] if text else type(e).__name__
  return first if len(first) <= 300 else first[:300] + " ..."


def _quiet_closed_loop_noise() -> None:
  """Drops the "Event loop is closed" errors a failed orbax read leaves behind.

  After a read fails, tensorstore's callbacks still post to the event loop
  orbax has closed; each post raises in a callback and Python prints it as an
  unraisable exception, up to ~200 lines that bury the one-line reason we
  report. Only that exact error is dropped; every other one still prints.
  """
  previous = sys.unraisablehook
  if getattr(previous, "_lopt_quiet", False):
    return

  def hook(unraisable):
    e = unraisable.exc_value
    if isinstance(e, RuntimeError) and str(e) == "Event loop is closed":
      return
    previous(unraisable)

  hook._lopt_quiet = True  # type: ignore[attr-defined]
  sys.unraisablehook = hook


def _move_aside(mngr: ocp.CheckpointManager, step: int) -> str:
  """Renames a checkpoint that does not restore so that the run can save that step again."""
  root = str(mngr.directory)
  dst = os.path.join(root, f"corrupt-{step}-{time.strftime('%Y%m%dT%H%M%S')}")
  os.rename(os.path.join(root, str(step)), dst)
  return dst


def restore_newest_valid(mngr: ocp.CheckpointManager, like: Any,
                         say: Callable[[str], None] = print) -> tuple[int, Any] | None:
  """``(step, host_state)`` of the newest checkpoint that restores; None if there is none.

  A checkpoint that fails to restore is moved aside (see the module docstring)
  and named with the reason; if every one fails, raises ``CheckpointError``.
  """
  failed = []
  for step in sorted(mngr.all_steps(), reverse=True):
    why = verify(mngr, step)
    if why is not None:
      failed.append((step, why))
      continue
    try:
      host = _restore(mngr, step, like)
    except Exception as e:  # pylint: disable=broad-except
      # Any failure here means the files cannot give back this step's state.
      _quiet_closed_loop_noise()
      failed.append((step, _reason(e)))
      continue
    for bad, why in failed:
      dst = _move_aside(mngr, bad)
      say(f"warning: checkpoint at outer step {bad} is damaged ({why}); moved it to "
          f"{dst} and resumed from outer step {step} instead.")
    if failed:
      mngr.reload()
    return step, host
  if failed:
    lines = "\n".join(f"  {os.path.join(str(mngr.directory), str(s))}: {why}"
                      for s, why in failed)
    raise CheckpointError(
        f"no checkpoint in {mngr.directory} can be restored:\n{lines}\nRestore them from a "
        "backup, or move the checkpoints directory aside to start the run over (its "
        "metrics.jsonl and exports stay).")
  return None


def restore_latest(mngr: ocp.CheckpointManager | None, like: Any,
                   say: Callable[[str], None] = print) -> tuple[int, Any] | None:
  """``(step, host_state)`` from the newest valid checkpoint, shaped like ``like``; None if none.

  Process 0 reads the checkpoint and broadcasts it, so every process resumes
  from the same state (call it on all processes together). A process 0 that
  finds none restorable tells the others before it raises, so none waits.
  """
  step, host, error = None, None, None
  if mngr is not None:
    try:
      found = restore_newest_valid(mngr, like, say)
    except CheckpointError as e:
      error = e
      found = None
    if found is not None:
      step, host = found
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    code = -2 if error is not None else (-1 if step is None else step)
    step = int(multihost_utils.broadcast_one_to_all(np.int32(code)))
    if step == -2:
      raise error if error is not None else CheckpointError(
          "process 0 found no restorable checkpoint; its output names them and the fix.")
    if step < 0:
      return None
    host = multihost_utils.broadcast_one_to_all(like if host is None else host)
    host = jax.tree.map(np.asarray, host)
  elif error is not None:
    raise error
  return None if step is None else (step, host)
