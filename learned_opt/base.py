"""The learned-optimizer contract: type aliases, the architecture ABC and errors.

A learned optimizer has two halves (Metz et al., 2022, "VeLO: Training Versatile
Learned Optimizers by Scaling Up"; the split follows learned_optimization):

* **meta-parameters** ``theta``: a pytree of float32 arrays, created by
  ``arch.init_meta(key)`` and changed only by meta-training;
* the **inner optimizer** ``arch.as_optax(theta, num_steps=N)``: an
  ``optax.GradientTransformationExtraArgs`` that trains a model for ``N`` steps.

Its ``update(grads, state, params, *, value, **extra_args)`` takes the current
loss as ``value=`` (the optax convention of ``reduce_on_plateau``), needs
``params`` and keeps no copy of them in its state.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import Any, ClassVar

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from learned_opt import perturbed

Theta = Any  # a pytree (nested dicts) of float32 arrays
Params = optax.Params
PRNGKey = chex.PRNGKey

# The version of what learned_opt's architectures compute from a theta: the
# features they read (features.py, flat.py, velo/hyper_v2.py) and how they map
# them to a step. A theta is only meaningful for the computation it was
# meta-trained with, so every saved file and pretrained entry records this
# number and loading refuses another one. Bump it (and ship new pretrained
# entries) whenever a change alters the update a given theta produces.
FEATURE_VERSION = 1


class LearnedOptimizerError(ValueError):
  """Raised for misuse of a learned optimizer; the message names the fix."""


class LearnedOptimizer(abc.ABC):
  """An architecture of learned optimizer: a frozen dataclass of hyperparameters.

  Concrete subclasses are frozen dataclasses (hashable, so they can be static
  arguments to ``jax.jit``) registered with ``learned_opt.register``.
  """

  name: ClassVar[str]
  # True if ``as_optax`` accepts ``learned_opt.perturbed`` leaves in theta
  # (reads it only through ``perturbed.matmul``/``perturbed.value``), so ES
  # can evaluate perturbations without a copy of theta per particle.
  structured_theta: ClassVar[bool] = False

  @abc.abstractmethod
  def init_meta(self, key: PRNGKey) -> Theta:
    """Returns fresh meta-parameters ``theta``."""

  @abc.abstractmethod
  def as_optax(
      self, theta: Theta, *, num_steps: int
  ) -> optax.GradientTransformationExtraArgs:
    """Returns the inner optimizer for a run of ``num_steps`` steps."""

  def hparams(self) -> dict[str, Any]:
    """The constructor arguments, as plain JSON-able data."""
    return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

  def state_floats_per_param(self, params: Params) -> float:
    """Optimizer-state size in floats per parameter (Adam: 2), measured by eval_shape."""
    theta = jax.eval_shape(self.init_meta, jax.random.key(0))
    theta = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), theta)
    state = jax.eval_shape(self.as_optax(theta, num_steps=1).init, params)
    n_state = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(state)
                  if jnp.issubdtype(s.dtype, jnp.floating))
    n_params = sum(int(np.prod(np.shape(p))) for p in jax.tree.leaves(params))
    return n_state / n_params


def _plain(v: Any) -> Any:
  return list(v) if isinstance(v, tuple) else v


# ----------------------------------------------------------------------------
# Checks shared by every architecture. Each error names the fix.
# ----------------------------------------------------------------------------


def check_hparams(arch: Any, *, ints: tuple[str, ...] = (), counts: tuple[str, ...] = (),
                  positive: tuple[str, ...] = (), bools: tuple[str, ...] = (),
                  ranges: dict[str, tuple[float, float]] | None = None,
                  choices: dict[str, tuple[str, ...]] | None = None) -> None:
  """Raises unless each named field is valid (for ``__post_init__``).

  ``ints`` are ints >= 1, ``counts`` ints >= 0, ``positive`` finite numbers
  > 0, ``bools`` True or False, ``ranges`` maps a field to the closed
  interval ``(lo, hi)`` its finite value must lie in, and ``choices`` maps a
  field to the names it may take. Finiteness is checked
  explicitly: ``inf > 0`` holds and every comparison with NaN is False, so a
  bare ``v > 0`` lets both through into every step.
  """
  name = type(arch).__name__
  for f in ints + counts:
    v, low = getattr(arch, f), 1 if f in ints else 0
    if isinstance(v, bool) or not (isinstance(v, int) and v >= low):
      raise LearnedOptimizerError(f"{name}.{f} must be an int >= {low}, got {v!r}{_default(arch, f)}.")
  for f in positive:
    if not (_finite_number(getattr(arch, f)) and getattr(arch, f) > 0):
      raise LearnedOptimizerError(
          f"{name}.{f} must be a finite number > 0, got {getattr(arch, f)!r}{_default(arch, f)}.")
  for f, (lo, hi) in (ranges or {}).items():
    if not (_finite_number(getattr(arch, f)) and lo <= getattr(arch, f) <= hi):
      raise LearnedOptimizerError(
          f"{name}.{f} must be a finite number in [{lo:.3g}, {hi:.3g}], got "
          f"{getattr(arch, f)!r}{_default(arch, f)}.")
  for f in bools:
    if not isinstance(getattr(arch, f), bool):
      raise LearnedOptimizerError(
          f"{name}.{f} must be True or False, got {getattr(arch, f)!r}{_default(arch, f)}.")
  for f, names in (choices or {}).items():
    if getattr(arch, f) not in names:
      raise LearnedOptimizerError(
          f"{name}.{f}={getattr(arch, f)!r} is not one of {list(names)}{_default(arch, f)}.")


def _default(arch: Any, f: str) -> str:
  """``"; the default is X"`` for the dataclass field ``f``, so the error shows a valid value."""
  field = {x.name: x for x in dataclasses.fields(arch)}.get(f)
  has = field is not None and field.default is not dataclasses.MISSING
  return f"; the default is {field.default!r}" if has else ""


def _finite_number(v: Any) -> bool:
  return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def check_num_steps(num_steps: Any) -> Any:
  """Validates ``num_steps``: a Python int >= 1, or an integer JAX scalar.

  A traced integer scalar is accepted so that meta-training can vmap over runs
  of different lengths (each PES particle has its own horizon); its value
  cannot be checked at trace time.
  """
  if isinstance(num_steps, jax.Array) and not isinstance(num_steps, bool):
    if num_steps.ndim == 0 and jnp.issubdtype(num_steps.dtype, jnp.integer):
      if isinstance(num_steps, jax.core.Tracer):
        return num_steps
      num_steps = int(num_steps)
  if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)):
    raise LearnedOptimizerError(
        f"num_steps must be an int >= 1 (the length of the training run), "
        f"got {num_steps!r}. Pass e.g. as_optax(theta, num_steps=1000).")
  if num_steps < 1:
    raise LearnedOptimizerError(
        f"num_steps must be >= 1 (the length of the training run), got {num_steps}. "
        "Pass the number of update steps you will take, e.g. num_steps=1000.")
  return int(num_steps)


def check_params(params: Params, fn: str) -> None:
  """Raises unless ``params`` is a pytree of floating-point arrays."""
  if params is None:
    raise LearnedOptimizerError(
        f"{fn} needs the current parameters: call update(grads, state, params, value=loss). "
        "Learned optimizers use parameter values as features.")
  leaves = jax.tree.leaves(params)
  if not leaves:
    raise LearnedOptimizerError(f"{fn}: params has no array leaves; pass the model parameters.")
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
      raise LearnedOptimizerError(
          f"{fn}: parameter {jax.tree_util.keystr(path)} has non-float dtype "
          f"{jnp.result_type(leaf)}. Learned optimizers update float32/bfloat16 arrays only; "
          "exclude it with optax.masked(...) or nnx.Optimizer(..., wrt=nnx.Param).")


def check_grads(grads: Any, params: Params, fn: str) -> None:
  """Raises unless ``grads`` has the tree structure and leaf shapes of ``params``.

  The flat architectures lay the gradients out by the *parameters'* layout, so
  a gradient tree with an extra key, a transposed leaf or two leaves' shapes
  swapped but the same total size would silently update the wrong parameters.
  """
  fix = ("Pass the gradients of these parameters, e.g. grads = jax.grad(loss)(params), "
         "and the same params tree to init and update.")
  g_paths = {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(grads)}
  p_paths = {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(params)}
  g_struct, p_struct = jax.tree.structure(grads), jax.tree.structure(params)
  if g_struct != p_struct:
    only_g = sorted(set(g_paths) - set(p_paths))
    only_p = sorted(set(p_paths) - set(g_paths))
    raise LearnedOptimizerError(
        f"{fn}: the gradient tree does not match the parameter tree (leaves only in grads: "
        f"{_short(', '.join(only_g) or 'none')}; only in params: "
        f"{_short(', '.join(only_p) or 'none')}). grads is "
        f"{_short(str(g_struct))}, params is {_short(str(p_struct))}. {fix}")
  for path, p in p_paths.items():
    g_shape, p_shape = tuple(jnp.shape(g_paths[path])), tuple(jnp.shape(p))
    if g_shape != p_shape:
      raise LearnedOptimizerError(
          f"{fn}: gradient {path} has shape {g_shape} but parameter {path} has shape "
          f"{p_shape}. {fix}")


def _short(x: Any, limit: int = 300) -> str:
  """``str(x)`` cut to ``limit`` characters: a large model's treedef runs to pages."""
  text = str(x)
  return text if len(text) <= limit else text[:limit] + "..."


def check_feature_version(version: Any, *, source: str) -> None:
  """Raises unless ``version`` (recorded with a theta) is this code's ``FEATURE_VERSION``.

  A theta meta-trained against other features still loads and runs, but its
  updates are silently wrong; refusing it is the only safe default.
  """
  if isinstance(version, bool) or not isinstance(version, int):
    raise LearnedOptimizerError(
        f"{source}: feature version {version!r} is not an int; the file or table entry is "
        "corrupt. Re-export it with learned_opt.save().")
  if version != FEATURE_VERSION:
    raise LearnedOptimizerError(
        f"{source}: this theta was meta-trained with feature version {version} but this "
        f"learned-opt computes version {FEATURE_VERSION}; install a learned-opt release with "
        f"feature version {version} or meta-train again.")


def check_value(value: Any) -> None:
  if value is None:
    raise LearnedOptimizerError(
        "update() needs the current loss: call update(grads, state, params, value=loss) "
        "(with nnx: optimizer.update(model, grads, value=loss)).")


def check_theta(arch: LearnedOptimizer, theta: Theta) -> None:
  """Raises unless ``theta`` has the tree structure and shapes ``arch`` expects."""
  expected = jax.eval_shape(arch.init_meta, jax.random.key(0))
  if arch.structured_theta:
    theta = perturbed.shapes(theta)  # each structured leaf checked as the array it stands for
  exp_struct = jax.tree.structure(expected)
  got_struct = jax.tree.structure(theta)
  hint = ("Use the architecture the theta was made with: "
          "`arch, theta = learned_opt.load_meta(path)` restores both together.")
  if exp_struct != got_struct:
    raise LearnedOptimizerError(
        f"theta does not belong to architecture {arch.name!r} with hparams "
        f"{arch.hparams()}: expected tree {exp_struct}, got {got_struct}. {hint}")
  for (path, e), g in zip(jax.tree_util.tree_leaves_with_path(expected), jax.tree.leaves(theta)):
    if tuple(e.shape) != tuple(jnp.shape(g)):
      raise LearnedOptimizerError(
          f"theta{jax.tree_util.keystr(path)} has shape {tuple(jnp.shape(g))}, but architecture "
          f"{arch.name!r} with hparams {arch.hparams()} expects {tuple(e.shape)}. {hint}")
