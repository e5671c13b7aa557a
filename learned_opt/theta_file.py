"""An architecture and its theta, stored as one ``.lopt`` file.

:func:`save` records the architecture's registry name, its hparams and the
``FEATURE_VERSION`` the theta was made for, next to one array per theta leaf
(named by its pytree path). :func:`read` refuses another feature version,
rebuilds the architecture from the registry, ``eval_shape``-s a target theta
and restores into it, checking every name, shape and dtype (as flax's
save/load example does), so a file can only come back as the architecture
that wrote it. The byte-level format lives in ``serialization.py``; turning a
name or a path into weights is ``weights.py``'s job.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from learned_opt import base, registry, serialization

# Files written before the feature version was recorded computed version 1.
UNVERSIONED_FEATURE_VERSION = 1


def leaves_with_names(theta: base.Theta) -> list[tuple[str, Any]]:
  """``(pytree path, leaf)`` pairs; the paths name the arrays in a file."""
  return [(jax.tree_util.keystr(p), x) for p, x in jax.tree_util.tree_leaves_with_path(theta)]


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
  arrays = {n: np.asarray(x) for n, x in leaves_with_names(theta)}
  bad = non_finite_leaf(arrays)
  if bad:
    raise base.LearnedOptimizerError(
        f"refusing to save theta to {os.fspath(path)!r}: leaf theta{bad} is not finite; a "
        "non-finite theta gives NaN updates on every task. Save the last finite theta "
        "instead (a meta-training run's export/best), or meta-train again with a smaller "
        "outer learning rate.")
  meta = {"arch": arch.name, "hparams": arch.hparams(), "feature_version": base.FEATURE_VERSION}
  serialization.write(path, meta, arrays)


def non_finite_leaf(arrays: Mapping[str, np.ndarray]) -> str | None:
  """The first name whose array holds a NaN or inf, with how many, or None."""
  for name, a in arrays.items():
    a = np.asarray(a, np.float32)
    if not np.isfinite(a).all():
      return f"{name} ({int(np.isnan(a).sum())} NaN, {int(np.isinf(a).sum())} inf of {a.size})"
  return None


def restore(arch: base.LearnedOptimizer, arrays: Mapping[str, np.ndarray], *,
            source: str) -> base.Theta:
  """Restores named ``arrays`` (from ``source``, a path) into ``arch``'s theta structure.

  The target comes from ``eval_shape`` (no weights are initialised), and a
  missing, extra, reshaped or retyped leaf is refused rather than broadcast.
  """
  target = jax.eval_shape(arch.init_meta, jax.random.key(0))
  saved = dict(arrays)
  leaves, names = [], []
  for name, t in leaves_with_names(target):
    if name not in saved:
      raise serialization.error(
          source, f"theta is missing leaf {name} expected by architecture {arch.name!r}.")
    a = saved.pop(name)
    if a.shape != t.shape or a.dtype != t.dtype:
      raise serialization.error(source, f"leaf {name} is {a.shape} {a.dtype}, architecture "
                                f"{arch.name!r} expects {t.shape} {t.dtype}.")
    leaves.append(a)
    names.append(name)
  if saved:
    raise serialization.error(
        source, f"unexpected leaves {sorted(saved)} for architecture {arch.name!r}.")
  bad = non_finite_leaf(dict(zip(names, leaves)))
  if bad:  # written before save() refused these, or by another tool
    raise serialization.error(source, f"leaf {bad} is not finite; this theta gives NaN updates. "
                              "Use a finite theta (a run's export/best).")
  return jax.tree.unflatten(jax.tree.structure(target), [jnp.asarray(a) for a in leaves])


def read(path: str | os.PathLike) -> tuple[base.LearnedOptimizer, base.Theta]:
  """Restores ``(arch, theta)`` from a file written by :func:`save`, bit-exactly.

  Raises:
    LearnedOptimizerError: for a file that is missing, corrupt, of another
      feature version, or of an architecture that is not registered.
  """
  meta, arrays = serialization.read(path)
  source = f"learned-optimizer file {os.fspath(path)!r}"
  base.check_feature_version(meta.get("feature_version", UNVERSIONED_FEATURE_VERSION),
                             source=source)
  if not isinstance(meta.get("arch"), str) or not isinstance(meta.get("hparams"), dict):
    raise serialization.error(path, "its header names no architecture (no 'arch' and "
                              "'hparams'); it was not written by learned_opt.save().")
  try:
    arch = registry.get(meta["arch"], **meta["hparams"])
  except base.LearnedOptimizerError as e:
    raise serialization.error(path, f"{e} (the file was written by another version of "
                              "learned-opt or by a plug-in architecture that is not "
                              "imported).") from None
  return arch, restore(arch, arrays, source=os.fspath(path))
