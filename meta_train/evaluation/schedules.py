"""Learning-rate schedules as arrays, and the two optax transforms every baseline uses.

A schedule is built with optax's own schedule functions (``sgdr_schedule``,
``cosine_onecycle_schedule``, ``warmup_cosine_decay_schedule``) or, for Smith's
cyclical rates that optax lacks, a small pure function; it is then evaluated at
steps ``0 .. num_steps-1`` into an array. The array is a jit *argument* of
:func:`scheduled_adamw` / :func:`scheduled_sgd`, so every schedule-based
baseline on a task shares one compiled program.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from meta_train.evaluation.base import HParams

Schedule = Callable[[jax.Array], jax.Array]


def as_array(schedule: Schedule, num_steps: int) -> np.ndarray:
  """``schedule`` evaluated at steps ``0 .. num_steps-1``, float32, shape ``(num_steps,)``."""
  with jax.numpy_dtype_promotion("standard"):
    return np.asarray(jax.vmap(schedule)(jnp.arange(num_steps)), np.float32)


def _lookup(lrs: jax.Array) -> Schedule:
  # Past the end (the long tuned-Adam run) the last value holds.
  return lambda count: lrs[jnp.minimum(count, lrs.shape[0] - 1)]


def scheduled_adamw(hparams: HParams, num_steps: int) -> optax.GradientTransformation:
  """AdamW with LR ``hparams["lrs"][step]`` and decoupled ``hparams["wd"]`` (0: Adam)."""
  del num_steps
  return optax.adamw(_lookup(hparams["lrs"]), weight_decay=hparams["wd"])


def scheduled_sgd(hparams: HParams, num_steps: int) -> optax.GradientTransformation:
  """SGD with heavy-ball ``hparams["momentum"]`` (0: plain GD) and LR ``hparams["lrs"][step]``."""
  del num_steps
  return optax.sgd(_lookup(hparams["lrs"]), momentum=hparams["momentum"])


def constant(lr: float) -> Schedule:
  return optax.constant_schedule(lr)


def exponential_ramp(lr_min: float, lr_max: float, num_steps: int) -> Schedule:
  """The LR range test's ramp: ``lr_min`` at step 0 to ``lr_max`` at the last step."""
  return lambda t: lr_min * (lr_max / lr_min) ** (t / max(num_steps - 1, 1))


def triangular(base_lr: float, max_lr: float, step_size: int, *, halve: bool) -> Schedule:
  """Smith (2017), "Cyclical Learning Rates": a triangle wave between the two LRs.

  ``step_size`` is the half-cycle. With ``halve`` (``triangular2``) the
  amplitude halves after every full cycle.
  """

  def schedule(t):
    cycle = jnp.floor(1 + t / (2 * step_size))
    x = jnp.abs(t / step_size - 2 * cycle + 1)
    scale = 0.5 ** (cycle - 1) if halve else 1.0
    return base_lr + (max_lr - base_lr) * jnp.maximum(0.0, 1 - x) * scale

  return schedule


def cosine_cycles(peak_lr: float, cycle_steps: list[int], *, end_frac: float = 0.0) -> Schedule:
  """Loshchilov & Hutter (2017), SGDR: cosine decay restarted after each cycle (optax)."""
  return optax.sgdr_schedule([
      dict(init_value=peak_lr, peak_value=peak_lr, warmup_steps=0, decay_steps=int(d),
           end_value=peak_lr * end_frac) for d in cycle_steps])
