"""The ``.lopt`` file format: a JSON header and named raw-byte arrays, no pickles.

This module is file I/O only; it knows nothing of architectures, names or
thetas (``weights.py`` and ``theta_file.py`` build on it). A file is a zip
archive (``numpy.savez``) holding ``meta`` (UTF-8 JSON) and one ``uint8``
array ``leaf{i}`` per named array. Raw bytes, not numpy arrays, are stored so
that bfloat16 and any future dtype round-trip bit-exactly. Besides the
caller's own keys, ``meta`` holds four keys this module writes and checks:

* ``format`` / ``format_version``: what the file is, so a stray zip is refused;
* ``leaves``: each array's name, shape and dtype, in order;
* ``checksum``: SHA-256 over names, shapes, dtypes and bytes, so a flipped bit
  is refused instead of silently changing an optimizer.

A write goes to a temporary file that is then renamed, so a reader never sees
half a file. learned_optimization's msgpack checkpoints (VeLO's ``params``) are
told apart by their first byte (:func:`sniff`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from typing import Any, Literal, Mapping

import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy)
import numpy as np

from learned_opt.base import LearnedOptimizerError

FORMAT = "learned_opt.theta"
FORMAT_VERSION = 1
# The keys of ``meta`` that write() fills in and read() consumes.
RESERVED_KEYS = ("format", "format_version", "leaves", "checksum")


def error(path: Any, what: str) -> LearnedOptimizerError:
  """The error for a file that cannot be used; ``what`` says why and how to fix it."""
  return LearnedOptimizerError(f"cannot load learned-optimizer file {os.fspath(path)!r}: {what}")


def checksum(arrays: Mapping[str, np.ndarray]) -> str:
  """SHA-256 over each array's name, shape, dtype and bytes, in order."""
  h = hashlib.sha256()
  for name, a in arrays.items():
    h.update(json.dumps([name, list(a.shape), str(a.dtype)]).encode())
    h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()


def write(path: str | os.PathLike, meta: Mapping[str, Any],
          arrays: Mapping[str, np.ndarray]) -> None:
  """Writes ``meta`` (JSON-able) and the named ``arrays`` to ``path``, atomically.

  Args:
    path: the file; its folder is created if needed.
    meta: the caller's header; must not use the keys in ``RESERVED_KEYS``.
    arrays: name -> numpy array, stored in this order.

  Examples:
    >>> import numpy as np, os, tempfile
    >>> from learned_opt import serialization
    >>> path = os.path.join(tempfile.mkdtemp(), "x.lopt")
    >>> serialization.write(path, {"note": "hi"}, {"w": np.arange(3.0)})
    >>> meta, arrays = serialization.read(path)
    >>> meta, arrays["w"].tolist()
    ({'note': 'hi'}, [0.0, 1.0, 2.0])
  """
  clash = sorted(set(meta) & set(RESERVED_KEYS))
  if clash:
    raise LearnedOptimizerError(f"meta keys {clash} are written by serialization.write itself; "
                                "remove them from the meta you pass.")
  arrays = {n: np.asarray(a) for n, a in arrays.items()}
  header = {**meta, "format": FORMAT, "format_version": FORMAT_VERSION,
            "leaves": [{"name": n, "shape": list(a.shape), "dtype": str(a.dtype)}
                       for n, a in arrays.items()],
            "checksum": checksum(arrays)}
  blobs = {f"leaf{i}": np.frombuffer(np.ascontiguousarray(a).tobytes(), np.uint8)
           for i, a in enumerate(arrays.values())}
  blobs["meta"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
  path = os.fspath(path)
  if os.path.isdir(path):  # checked first: the rename below would fail only after the write
    raise LearnedOptimizerError(
        f"cannot write learned-optimizer file {path!r}: it is an existing directory. Pass a "
        f"file path, e.g. {os.path.join(path, 'theta.lopt')!r}.")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp-{os.getpid()}"
  try:
    with open(tmp, "wb") as f:  # a file handle: np.savez would append ".npz" to a name
      np.savez(f, **blobs)
    os.replace(tmp, path)
  except BaseException:  # a failed write (disk full, interrupt) leaves no stray temporary
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def sniff(path: str | os.PathLike) -> Literal["lopt", "msgpack"]:
  """Which format ``path`` is in, from its first bytes: ``"lopt"`` or ``"msgpack"``.

  Raises:
    LearnedOptimizerError: for a missing file or an unrecognised header.
  """
  if not os.path.isfile(path):
    raise error(path, "no such file.")
  with open(path, "rb") as f:
    head = f.read(4)
  if head.startswith(b"PK"):  # a zip archive
    return "lopt"
  # A msgpack map starts with 0x80-0x8f (fixmap), 0xde (map16) or 0xdf (map32).
  if head and (0x80 <= head[0] <= 0x8F or head[0] in (0xDE, 0xDF)):
    return "msgpack"
  raise error(path, "not a learned_opt theta file or a learned_optimization checkpoint "
              "(unrecognised header). Save with learned_opt.save().")


def _read_zip(path: str) -> tuple[dict[str, Any], list[np.ndarray]]:
  try:
    with open(path, "rb") as f:
      data = f.read()
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
      meta = json.loads(bytes(z["meta"]).decode())
      raw = [np.asarray(z[f"leaf{i}"]) for i in range(len(meta.get("leaves", [])))]
  except (zipfile.BadZipFile, EOFError, KeyError, ValueError, OSError) as e:
    raise error(path, f"the file is truncated or corrupt ({type(e).__name__}: {e}). "
                "Re-export it with learned_opt.save().") from None
  if not isinstance(meta, dict) or meta.get("format") != FORMAT:
    raise error(path, "not a learned_opt theta file (no format tag). Save with learned_opt.save().")
  if meta.get("format_version", 0) > FORMAT_VERSION:
    raise error(path, f"format version {meta['format_version']} is newer than this "
                f"learned_opt supports ({FORMAT_VERSION}); upgrade learned-opt.")
  return meta, raw


def read(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """Reads a file written by :func:`write`, checking sizes and the checksum.

  Returns:
    ``(meta, arrays)``: the caller's header (without ``RESERVED_KEYS``) and
    name -> numpy array, in the order they were written.

  Raises:
    LearnedOptimizerError: for a missing, truncated, corrupt or modified file,
      or one written by a newer format version.
  """
  if sniff(path) != "lopt":
    raise error(path, "this is a learned_optimization msgpack checkpoint, not a .lopt file; "
                "read it with learned_opt.velo.load_checkpoint or learned_opt.load_meta.")
  meta, raw = _read_zip(os.fspath(path))
  arrays = {}
  for spec, r in zip(meta["leaves"], raw):
    dtype = np.dtype(spec["dtype"])
    if r.size != int(np.prod(spec["shape"], dtype=np.int64)) * dtype.itemsize:
      raise error(path, f"leaf {spec['name']} has {r.size} bytes, expected shape "
                  f"{spec['shape']} of {dtype}; the file is corrupt.")
    arrays[spec["name"]] = r.view(dtype).reshape(spec["shape"])
  if checksum(arrays) != meta.get("checksum"):
    raise error(path, "checksum mismatch: the arrays were modified or corrupted. "
                "Re-export the file with learned_opt.save().")
  return {k: v for k, v in meta.items() if k not in RESERVED_KEYS}, arrays
