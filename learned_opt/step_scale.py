"""Step scales that adapt to the task: the base size of a learned optimizer's step.

A learned rule with a fixed base step (``step_mult``) takes steps that are too
small on tasks whose best Adam LR is 1e-2 or more and cannot adapt (docs/
pretrained.md). These are the options of ``mlp``'s ``step_scale``, as small
pure functions over the flat blocked arrays of :mod:`learned_opt.flat`:

* ``"fixed"``: ``step_mult`` (the shipped optimizers);
* ``"param_rms"``: ``step_mult`` times each tensor's parameter RMS (floored),
  so a reparameterised or differently scaled tensor gets a matching step
  (VeLO's and Celo's ``param_scale_mult``);
* ``"distance"``: ``step_mult`` times an online estimate ``d`` of the
  distance to the solution, Prodigy's (Mishchenko and Defazio, 2023; after
  D-Adaptation, Defazio and Mishchenko, 2023)::

      r <- b r + (1 - b) d^2 <g, x0 - x>        s <- b s + (1 - b) d^2 g
      d <- max(d, r / |s|_1),                   b = sqrt(0.999), d_0 = 1e-6

  It grows until steps of size ``d`` stop making progress along
  ``x0 - x``, which is what lets Prodigy run with no LR;

* ``"prodigy"``: the rule is a learned *residual* on Prodigy's own update
  (``optax.contrib.prodigy``: Adam moments of ``d * g`` with bias correction,
  ``d`` estimated as above with Prodigy's bias-corrected weights). The step is
  ``step_mult * (prodigy_direction + mlp_direction) * exp(mlp_magnitude)``
  times ``d``, so with the MLP's outputs at 0 it *is* Prodigy: an untrained
  rule starts at the LR-free baseline instead of below it. (``"distance"``
  scales a direction built from moments of raw ``g``, which over- or
  under-steps while ``d`` grows; see docs/pretrained.md.)

* ``"prodigy_muon"``: ``"prodigy"`` with Muon's direction (Jordan et al. 2024)
  on every tensor with a matrix view (leading dims x last dim, both > 1):
  Prodigy's first moment orthogonalised by a quintic Newton-Schulz iteration,
  scaled to RMS ``MUON_RMS`` (Moonlight's matching of Adam's update RMS, Liu et
  al. 2025), so Prodigy's ``d`` keeps its meaning as an Adam-scale LR; vectors
  keep Prodigy's direction. Orthogonalised directions are what made tuned Muon
  the baseline with the largest median speedup on the held-out suite
  (docs/evaluation.md); here they come with no LR to tune.

and a learned global **schedule**: ``exp(w . [time, loss features])``, Celo's
step-size controller reduced to its linear core, zero (a multiplier of 1) at
init; and a fixed **decay** of the step over the run (``mlp``'s ``decay``):
``"cosine"`` multiplies it by ``(1 + cos(pi t)) / 2`` at training fraction
``t``; ``"wsd"`` keeps it at 1 until ``t = 0.8``, then decays it linearly
to 0. With a Prodigy base it enters Prodigy's ``d`` estimate as an LR
schedule does in optax, so the untrained rule is ``optax.contrib.prodigy``
with that schedule (``optax.cosine_decay_schedule(1.0, num_steps)``): the LR-free baseline that
scored best at 2,000 held-out steps (docs/pretrained.md), which a rule
without a decay loses to at long horizons.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from learned_opt import features, flat

STEP_SCALES = ("fixed", "param_rms", "distance", "prodigy", "prodigy_muon")
DECAYS = ("none", "cosine", "wsd")
# "wsd": warmup-stable-decay without the warmup (Hagele et al. 2024, "Scaling laws and
# compute-optimal training beyond fixed training durations"): constant, then linear to 0
# over the last WSD_COOLDOWN of the run. A cosine halves the step by mid-run, while the loss
# of a slow task (an ill-conditioned quadratic) is still limited by the step's size; Prodigy's
# d itself settles early there (docs/pretrained.md, seventh round).
WSD_COOLDOWN = 0.2
# Where the MLP adds a learned direction to the base one (``mlp``'s ``learn_direction``).
DIRECTIONS = ("all", "matrices", "none")
SCHEDULE_INPUTS = ("time_loss", "time")  # what the learned schedule reads (``mlp``'s ``schedule_inputs``)
PRODIGY_SCALES = ("prodigy", "prodigy_muon")  # the scales that carry a ProdigyState
PARAM_RMS_FLOOR = 1e-3  # zero-initialised tensors (biases) still get a step
DISTANCE_DECAY = math.sqrt(0.999)
DISTANCE_INIT = 1e-6
PRODIGY_BETAS = (0.9, 0.999)  # optax.contrib.prodigy's defaults
PRODIGY_EPS = 1e-8
# Muon: the quintic Newton-Schulz coefficients (Jordan et al. 2024), its steps, and
# the update RMS that matches Adam's (Liu et al. 2025, "Muon is scalable for LLM training").
NS_COEFFS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5
MUON_RMS = 0.2
SCHEDULE_CLIP = (-10.0, 3.0)  # exp() range of the learned schedule: e^-10 .. e^3


class DistanceState(NamedTuple):
  """Prodigy's running estimate: x0, the weighted gradient sum s, numerator r and d.

  ``r`` and ``d`` are scalars, or ``[2]`` (matrices, the rest) for a split estimate.
  """

  x0: jax.Array  # blocked initial parameters
  s: jax.Array  # blocked
  r: jax.Array  # scalar or [2]
  d: jax.Array  # scalar or [2]


def init_distance(p: jax.Array, split: bool = False) -> DistanceState:
  shape = (2,) if split else ()
  return DistanceState(x0=p, s=jnp.zeros_like(p), r=jnp.zeros(shape, jnp.float32),
                       d=jnp.full(shape, DISTANCE_INIT, jnp.float32))


def _group_sum(x: jax.Array, mask: jax.Array | None) -> jax.Array:
  """``sum(x)``, or with a 0/1 blocked ``mask`` its sums over the 1s and the 0s, ``[2]``."""
  if mask is None:
    return jnp.sum(x)
  return jnp.stack([jnp.sum(x * mask), jnp.sum(x * (1.0 - mask))])


def _per_element(v: jax.Array, mask: jax.Array | None) -> jax.Array:
  """A per-group value (``[2]``) spread onto the blocked elements; a scalar as it is."""
  return v if mask is None else jnp.where(mask > 0, v[0], v[1])


def update_distance(state: DistanceState, g: jax.Array, p: jax.Array) -> DistanceState:
  """One step of the estimate with the (finite) blocked gradient ``g`` at params ``p``.

  ``d`` never shrinks, and a non-finite estimate (a diverged inner task) keeps the old ``d``.
  """
  return _advance_distance(state, (1.0 - DISTANCE_DECAY) * jnp.square(state.d), g, p)


def _advance_distance(state: DistanceState, w: jax.Array, g: jax.Array,
                      p: jax.Array, mask: jax.Array | None = None) -> DistanceState:
  """The estimate's step with weight ``w`` on this gradient (``update_distance``'s or Prodigy's).

  With a ``mask``, ``w`` and the estimate are per group: each group's ``d`` is Prodigy's
  estimate over that group's elements alone. An empty group keeps ``DISTANCE_INIT``.
  """
  r = DISTANCE_DECAY * state.r + w * _group_sum(g * (state.x0 - p), mask)
  s = DISTANCE_DECAY * state.s + _per_element(w, mask) * g
  est = r / (_group_sum(jnp.abs(s), mask) + 1e-30)
  d = jnp.where(jnp.isfinite(est), jnp.maximum(state.d, est), state.d)
  return state._replace(s=s, r=jnp.where(jnp.isfinite(r), r, state.r), d=d)


def param_rms(layout: flat.Layout, mean_p2: jax.Array) -> jax.Array:
  """Each tensor's parameter RMS (floored), as ``(nb, 1)`` block columns."""
  rms = jnp.maximum(jnp.sqrt(mean_p2), PARAM_RMS_FLOOR)
  return flat.to_blocks(layout, rms)


def decay(name: str, frac: jax.Array) -> jax.Array:
  """The fixed step multiplier at training fraction ``frac`` in [0, 1]."""
  if name == "cosine":  # optax.cosine_decay_schedule(1.0, n) at count frac * n
    return 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
  if name == "wsd":
    return jnp.clip((1.0 - frac) / WSD_COOLDOWN, 0.0, 1.0)
  return jnp.ones([], jnp.float32)


def schedule(w: jax.Array, time: jax.Array, loss_feats: jax.Array | None) -> jax.Array:
  """The learned global multiplier ``exp(w . [time, loss])``, clipped; ``exp(w . time)``
  without loss features."""
  inputs = time if loss_feats is None else jnp.concatenate([time, loss_feats])
  return jnp.exp(jnp.clip(inputs @ w, *SCHEDULE_CLIP))


class ProdigyState(NamedTuple):
  """Prodigy's state on the blocked arrays: its Adam moments of d*g, and the d estimate."""

  m: jax.Array  # blocked EMA of d * g
  v: jax.Array  # blocked EMA of (d * g)^2
  distance: DistanceState
  count: jax.Array  # steps taken, for the bias correction


def init_prodigy(p: jax.Array, split: bool = False) -> ProdigyState:
  return ProdigyState(m=jnp.zeros_like(p), v=jnp.zeros_like(p),
                      distance=init_distance(p, split), count=jnp.zeros([], jnp.int32))


def update_prodigy(state: ProdigyState, g: jax.Array, p: jax.Array, lr: jax.Array = 1.0,
                   mask: jax.Array | None = None):
  """Prodigy's step with the blocked gradient ``g`` at ``p``: ``(new state, d, direction)``.

  ``lr * d * direction`` is ``optax.contrib.prodigy(lr)``'s update with the sign
  flipped (this module's steps are subtracted); ``lr`` (this step's value of an
  LR schedule) also weighs the gradient in the ``d`` estimate, as in optax.
  Like Prodigy, the step uses the d of *before* this gradient; a non-finite
  estimate keeps the old one. A state from ``init_prodigy(p, split=True)`` takes
  the blocked ``matrix_mask`` and keeps one ``d`` for matrices and one for the
  rest (``mlp``'s ``split_d``); ``d`` is then returned per element.
  """
  b1, b2 = PRODIGY_BETAS  # Prodigy's beta3 = sqrt(b2) is DISTANCE_DECAY
  d_group, t = state.distance.d, (state.count + 1).astype(jnp.float32)
  if (mask is None) != (d_group.ndim == 0):  # trace time: a [2] d spread with no mask is wrong
    raise ValueError("update_prodigy: a split state (init_prodigy(p, split=True)) needs the "
                     "matrix mask, and an unsplit one takes none.")
  d = _per_element(d_group, mask)
  bc = jnp.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
  dg = d * g
  m = b1 * state.m + (1.0 - b1) * dg
  v = b2 * state.v + (1.0 - b2) * jnp.square(dg)
  # Prodigy's weights d*bc*d/d0 are common to s and r, so d0 cancels in r/|s|.
  dist = _advance_distance(state.distance, lr * d_group * bc * d_group, g, p, mask)
  direction = bc * m / (jnp.sqrt(v) + _per_element(dist.d, mask) * PRODIGY_EPS)
  return ProdigyState(m=m, v=v, distance=dist, count=state.count + 1), d, direction


def newton_schulz(x: jax.Array, steps: int = NS_STEPS) -> jax.Array:
  """An approximate ``U V^T`` of each matrix ``x[..., :, :] = U S V^T`` (Muon's iteration).

  The quintic pushes every singular value of the Frobenius-normalised matrix
  into roughly [0.7, 1.2] in 5 steps (it trades exactness for speed, as Muon
  does; directions below ~1e-3 of the largest singular value stay small). Works
  on the shorter side's Gram matrix; a zero matrix stays zero.
  """
  a, b, c = NS_COEFFS
  wide = x.shape[-2] <= x.shape[-1]
  x = x if wide else jnp.swapaxes(x, -1, -2)
  # No additive eps: Prodigy's m is an EMA of d * g with d from 1e-6, so its norm
  # starts near 1e-10, where Muon's usual +1e-7 would shrink the direction 1000x.
  norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=(-2, -1), keepdims=True))
  x = x / jnp.maximum(norm, 1e-30)
  for _ in range(steps):
    gram = x @ jnp.swapaxes(x, -1, -2)
    x = a * x + (b * gram + c * gram @ gram) @ x
  return x if wide else jnp.swapaxes(x, -1, -2)


def is_matrix(shape: tuple[int, ...]) -> bool:
  """Whether Muon orthogonalises this tensor: Adafactor's matrix view with both sides > 1."""
  rows, cols = features.matrix_shape(shape)  # rank 0/1 is a (size, 1) column
  return rows > 1 and cols > 1


def matrix_mask(layout: flat.Layout) -> jax.Array:
  """Blocked 1.0 on the elements of matrices (dense and conv kernels), 0.0 elsewhere."""
  return flat.flatten_groups(layout, [
      jnp.full((len(g),) + layout.shapes[g[0]], float(is_matrix(layout.shapes[g[0]])))
      for g in layout.groups])


def muon_direction(layout: flat.Layout, m: jax.Array, direction: jax.Array) -> jax.Array:
  """``direction`` with every matrix's part replaced by its orthogonalised ``m``.

  One batched Newton-Schulz per shape group (same-shaped tensors are one slab,
  :func:`flat.group_slab`); scaled by ``MUON_RMS * sqrt(max(rows, cols))``,
  which gives an orthogonal matrix the element RMS ``MUON_RMS``.
  """
  slabs = []
  for gi, group in enumerate(layout.groups):
    shape = layout.shapes[group[0]]
    if not is_matrix(shape):
      slabs.append(flat.group_slab(layout, direction, gi))
      continue
    rows, cols = features.matrix_shape(shape)
    mat = flat.group_slab(layout, m, gi).reshape(len(group), rows, cols)
    slabs.append(newton_schulz(mat) * (MUON_RMS * math.sqrt(max(rows, cols))))
  return flat.flatten_groups(layout, slabs)
