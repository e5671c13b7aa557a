"""One front door for weights: a name or a path becomes ``(arch, theta)``.

Every caller that lets a user name an optimizer (``learned_opt.load``, a
config's ``init_from``, the evaluation's ``--optimizer``) goes through
:func:`resolve`, so they all accept the same four kinds of source and fail
with the same message:

1. a registered architecture name (``learned_opt.architectures()``): that
   architecture with default hparams and its untrained theta,
   ``init_meta(jax.random.key(0))``;
2. a shipped pretrained name (``learned_opt.pretrained.names()``): checksum,
   architecture and feature version verified by ``pretrained.load_meta``;
3. a file written by ``learned_opt.save`` (``theta_file.read``);
4. a learned_optimization / VeLO msgpack ``params`` checkpoint
   (``velo.load_checkpoint``), told apart from 3 by its first byte.

A string is tried as a name first, then as a path; an ``os.PathLike`` is
always a path, so ``pathlib.Path("mlp")`` reads a file called ``mlp``.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import jax
import optax

from learned_opt import base, pretrained, registry, serialization, theta_file, velo

Kind = Literal["architecture", "pretrained", "file"]
ACCEPTED_FILES = "an existing file written by learned_opt.save or a VeLO checkpoint"


def _unknown(source: str) -> base.LearnedOptimizerError:
  hint = (" It is a directory: pass a file inside it (e.g. runs/NAME/export/best)."
          if os.path.isdir(source) else "")
  return base.LearnedOptimizerError(
      f"{source!r} is neither an existing file nor a pretrained optimizer nor a registered "
      f"architecture (no such file or name).{hint} Accepted: an architecture name "
      f"{registry.architectures()} (untrained theta), a shipped pretrained name "
      f"{pretrained.names()}, or {ACCEPTED_FILES}.")


def kind(source: str | os.PathLike) -> Kind:
  """Which of the accepted kinds ``source`` is, without loading anything.

  Raises:
    LearnedOptimizerError: for a string that is no name and no existing file,
      listing what is accepted.

  Examples:
    >>> import learned_opt
    >>> learned_opt.weights.kind("mlp"), learned_opt.weights.kind("mlp-demo-v0")
    ('architecture', 'pretrained')
  """
  if isinstance(source, os.PathLike):
    return "file"
  if not isinstance(source, str):
    raise base.LearnedOptimizerError(
        f"an optimizer source must be a str or a path, got {type(source).__name__} {source!r}; "
        f"pass an architecture name, a pretrained name or {ACCEPTED_FILES}.")
  if source in registry.architectures():
    return "architecture"
  if source in pretrained.names():
    return "pretrained"
  if os.path.isfile(source):
    return "file"
  raise _unknown(source)


def read_file(path: str | os.PathLike) -> tuple[base.LearnedOptimizer, base.Theta]:
  """``(arch, theta)`` of a ``learned_opt.save`` file or a VeLO checkpoint, by its header."""
  if serialization.sniff(path) == "msgpack":
    return velo.load_checkpoint(path)
  return theta_file.read(path)


def resolve(source: str | os.PathLike) -> tuple[base.LearnedOptimizer, base.Theta]:
  """Turns an architecture name, a pretrained name or a path into ``(arch, theta)``.

  Args:
    source: see the module docstring for the four accepted kinds.

  Returns:
    ``(arch, theta)``: the architecture (a frozen dataclass) and its
    meta-parameters, ready for ``arch.as_optax(theta, num_steps=N)``.

  Raises:
    LearnedOptimizerError: for an unknown source (listing what is accepted), a
      missing, corrupt or modified file, a theta of another feature version,
      or a pretrained entry whose file fails its checks.

  Examples:
    >>> import learned_opt
    >>> arch, theta = learned_opt.resolve("mlp-demo-v0")
    >>> arch.name
    'mlp'
  """
  k = kind(source)
  if k == "architecture":
    arch = registry.get(source)
    return arch, arch.init_meta(jax.random.key(0))
  if k == "pretrained":
    return pretrained.load_meta(source)
  return read_file(source)


def load_meta(source: str | os.PathLike) -> tuple[base.LearnedOptimizer, base.Theta]:
  """``(arch, theta)`` of ``source``: :func:`resolve` under the name that pairs with ``save``.

  Examples:
    >>> import learned_opt
    >>> arch, theta = learned_opt.load_meta("mlp-demo-v0")
    >>> arch == learned_opt.pretrained.load_meta("mlp-demo-v0")[0]
    True
  """
  return resolve(source)


def load(source: str | os.PathLike, *, num_steps: int,
         **kwargs: Any) -> optax.GradientTransformationExtraArgs:
  """Returns the Optax transform of any source :func:`resolve` accepts.

  Args:
    source: an architecture name (untrained), a name in
      ``learned_opt.pretrained.names()``, a file from ``learned_opt.save``, or
      a learned_optimization / VeLO checkpoint.
    num_steps: the length of the training run.
    **kwargs: extra keyword arguments of the architecture's ``as_optax``
      (e.g. ``weight_decay`` for ``velo``).

  Examples:
    >>> import learned_opt
    >>> tx = learned_opt.load("mlp-demo-v0", num_steps=1000)
  """
  base.check_num_steps(num_steps)  # before any file is read: fail fast on a bad call
  arch, theta = resolve(source)
  return arch.as_optax(theta, num_steps=num_steps, **kwargs)
