"""Saving and loading meta-parameters: a self-describing file, no pickles.

The file is a zip archive (``numpy.savez``) holding ``meta`` (UTF-8 JSON:
format name and version, architecture name, hparams, each leaf's path, shape
and dtype, and a SHA-256 checksum over paths, shapes, dtypes and bytes) and one
raw-byte ``uint8`` array per leaf (raw bytes so that bfloat16 and any future
dtype round-trip bit-exactly). Loading rebuilds the architecture from its name
and hparams, ``eval_shape``-s a target theta and restores into it, checking
every name, shape, dtype and the checksum (as flax's save/load example does).

Files in learned_optimization's msgpack checkpoint format (VeLO's released
``params`` files) are recognised and handed to :mod:`learned_opt.velo`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from typing import Any

import jax
import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy)
import numpy as np
import optax

from learned_opt import base, registry

FORMAT = "learned_opt.theta"
FORMAT_VERSION = 1


def _leaves_with_names(theta: base.Theta) -> list[tuple[str, Any]]:
  return [(jax.tree_util.keystr(p), x) for p, x in jax.tree_util.tree_leaves_with_path(theta)]


def _checksum(entries: list[tuple[str, np.ndarray]]) -> str:
  h = hashlib.sha256()
  for name, a in entries:
    h.update(json.dumps([name, list(a.shape), str(a.dtype)]).encode())
    h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()


def save(path: str | os.PathLike, arch: base.LearnedOptimizer, theta: base.Theta) -> None:
  """Writes ``arch`` and ``theta`` to ``path`` atomically (write, then rename).

  Examples:
    >>> import jax, learned_opt, tempfile, os
    >>> arch = learned_opt.get("adam_hparams")
    >>> theta = arch.init_meta(jax.random.key(0))
    >>> path = os.path.join(tempfile.mkdtemp(), "theta.lopt")
    >>> learned_opt.save(path, arch, theta)
    >>> arch2, theta2 = learned_opt.load_meta(path)
    >>> arch2 == arch
    True
  """
  base.check_theta(arch, theta)
  entries = [(n, np.asarray(x)) for n, x in _leaves_with_names(theta)]
  meta = {
      "format": FORMAT, "format_version": FORMAT_VERSION, "arch": arch.name,
      "hparams": arch.hparams(),
      "leaves": [{"name": n, "shape": list(a.shape), "dtype": str(a.dtype)} for n, a in entries],
      "checksum": _checksum(entries),
  }
  arrays = {f"leaf{i}": np.frombuffer(np.ascontiguousarray(a).tobytes(), np.uint8)
            for i, (_, a) in enumerate(entries)}
  arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
  path = os.fspath(path)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "wb") as f:
    np.savez(f, **arrays)
  os.replace(tmp, path)


def _fail(path: Any, what: str) -> base.LearnedOptimizerError:
  return base.LearnedOptimizerError(
      f"cannot load learned-optimizer file {os.fspath(path)!r}: {what}")


def _read_npz(path: str) -> tuple[dict[str, Any], list[np.ndarray]]:
  try:
    with open(path, "rb") as f:
      data = f.read()
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
      meta = json.loads(bytes(z["meta"]).decode())
      raw = [np.asarray(z[f"leaf{i}"]) for i in range(len(meta.get("leaves", [])))]
  except (zipfile.BadZipFile, EOFError, KeyError, ValueError, OSError) as e:
    raise _fail(path, f"the file is truncated or corrupt ({type(e).__name__}: {e}). "
                "Re-export it with learned_opt.save().") from None
  if meta.get("format") != FORMAT:
    raise _fail(path, "not a learned_opt theta file (no format tag). Save with learned_opt.save().")
  if meta.get("format_version", 0) > FORMAT_VERSION:
    raise _fail(path, f"format version {meta['format_version']} is newer than this "
                f"learned_opt supports ({FORMAT_VERSION}); upgrade learned-opt.")
  return meta, raw


def load_meta(path: str | os.PathLike) -> tuple[base.LearnedOptimizer, base.Theta]:
  """Restores ``(arch, theta)`` from a file written by :func:`save`, bit-exactly.

  A learned_optimization / VeLO ``params`` checkpoint is accepted too.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise _fail(path, "no such file.")
  with open(path, "rb") as f:
    head = f.read(4)
  if not head.startswith(b"PK"):
    if head and (0x80 <= head[0] <= 0x8F or head[0] in (0xDE, 0xDF)):  # a msgpack map
      from learned_opt import velo  # pylint: disable=g-import-not-at-top
      return velo.load_checkpoint(path)
    raise _fail(path, "not a learned_opt theta file or a learned_optimization checkpoint "
                "(unrecognised header). Save with learned_opt.save().")
  meta, raw = _read_npz(path)
  try:
    arch = registry.get(meta["arch"], **meta["hparams"])
  except base.LearnedOptimizerError as e:
    raise _fail(path, f"{e} (the file was written by another version of learned-opt or by a "
                "plug-in architecture that is not imported).") from None
  entries = []
  for spec, r in zip(meta["leaves"], raw):
    dtype = np.dtype(spec["dtype"])
    if r.size != int(np.prod(spec["shape"], dtype=np.int64)) * dtype.itemsize:
      raise _fail(path, f"leaf {spec['name']} has {r.size} bytes, expected shape "
                  f"{spec['shape']} of {dtype}; the file is corrupt.")
    entries.append((spec["name"], r.view(dtype).reshape(spec["shape"])))
  if _checksum(entries) != meta["checksum"]:
    raise _fail(path, "checksum mismatch: the arrays were modified or corrupted. "
                "Re-export the file with learned_opt.save().")
  target = jax.eval_shape(arch.init_meta, jax.random.key(0))
  saved = dict(entries)
  leaves = []
  for name, t in _leaves_with_names(target):
    if name not in saved:
      raise _fail(path, f"theta is missing leaf {name} expected by architecture {arch.name!r}.")
    a = saved.pop(name)
    if a.shape != t.shape or a.dtype != t.dtype:
      raise _fail(path, f"leaf {name} is {a.shape} {a.dtype}, architecture {arch.name!r} "
                  f"expects {t.shape} {t.dtype}.")
    leaves.append(a)
  if saved:
    raise _fail(path, f"unexpected leaves {sorted(saved)} for architecture {arch.name!r}.")
  theta = jax.tree.unflatten(jax.tree.structure(target), [jax.numpy.asarray(a) for a in leaves])
  return arch, theta


def load(path_or_name: str | os.PathLike, *, num_steps: int,
         **kwargs: Any) -> optax.GradientTransformationExtraArgs:
  """Returns the Optax transform of a saved theta file or a shipped pretrained name.

  Args:
    path_or_name: a file from :func:`save`, a learned_optimization / VeLO
      checkpoint, or a name in ``learned_opt.pretrained.names()``.
    num_steps: the length of the training run.
    **kwargs: extra keyword arguments of the architecture's ``as_optax``
      (e.g. ``weight_decay`` for ``velo``).
  """
  from learned_opt import pretrained  # pylint: disable=g-import-not-at-top
  base.check_num_steps(num_steps)
  if isinstance(path_or_name, str) and path_or_name in pretrained.names():
    arch, theta = pretrained.load_meta(path_or_name)
  elif os.path.exists(os.fspath(path_or_name)):
    arch, theta = load_meta(path_or_name)
  else:
    raise base.LearnedOptimizerError(
        f"{os.fspath(path_or_name)!r} is neither an existing file nor a pretrained optimizer; "
        f"pretrained names: {pretrained.names()}.")
  return arch.as_optax(theta, num_steps=num_steps, **kwargs)
