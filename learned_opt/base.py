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
from typing import Any, ClassVar

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

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


def check_hparams(arch: Any, *, ints: tuple[str, ...] = (),
                  positive: tuple[str, ...] = ()) -> None:
  """Raises unless the named fields are ints >= 1 / numbers > 0 (for ``__post_init__``)."""
  for f in ints:
    v = getattr(arch, f)
    if isinstance(v, bool) or not (isinstance(v, int) and v >= 1):
      raise LearnedOptimizerError(f"{type(arch).__name__}.{f} must be an int >= 1, got {v!r}.")
  for f in positive:
    v = getattr(arch, f)
    if isinstance(v, bool) or not (isinstance(v, (int, float)) and v > 0):
      raise LearnedOptimizerError(f"{type(arch).__name__}.{f} must be a number > 0, got {v!r}.")


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
