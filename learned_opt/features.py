"""Features of a training run, as small pure functions.

Three groups, each with its own state where it needs one:

* **time**: an embedding of the training fraction ``step / num_steps``
  (learned optimizers that know the run length can learn schedules;
  Metz et al. 2022 "Practical tradeoffs...", VeLO);
* **loss**: the current loss relative to exponential moving averages of past
  losses (VeLO's loss features), robust to NaN/inf and loss spikes;
* **moments**: flat momenta, second moment and Adafactor-style factored
  statistics per element (see :mod:`learned_opt.flat`), and the per-element
  input features of a per-parameter MLP, normalised per tensor.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from learned_opt import flat

# ----------------------------------------------------------------------------
# Time
# ----------------------------------------------------------------------------

# Smooth steps at these fractions of training let a network express schedules
# (warm-up, decay, a late drop) with a few weights.
_TIME_ANCHORS = np.array([0.05, 0.2, 0.4, 0.6, 0.8, 0.95], np.float32)
NUM_TIME_FEATURES = 2 + len(_TIME_ANCHORS)


def training_fraction(step: Int[Array, ""], num_steps: int | Int[Array, ""]) -> Float[Array, ""]:
  """``step / num_steps``, saturating at 1 past the planned horizon."""
  return jnp.minimum(step.astype(jnp.float32) / jnp.asarray(num_steps, jnp.float32), 1.0)


def time_features(step: Int[Array, ""], num_steps: int | Int[Array, ""]) -> Float[Array, "time_features"]:
  """Embedding of the training fraction, shape ``(NUM_TIME_FEATURES,)``."""
  frac = training_fraction(step, num_steps)
  total = jnp.asarray(num_steps, jnp.float32)
  steps_left = jnp.log1p(jnp.maximum(total - step.astype(jnp.float32), 0.0))
  return jnp.concatenate([
      jnp.stack([frac, steps_left / 10.0]),
      jnp.tanh(10.0 * (frac - _TIME_ANCHORS)),
  ])


# ----------------------------------------------------------------------------
# Loss
# ----------------------------------------------------------------------------

LOSS_DECAYS = np.array([0.5, 0.9, 0.99], np.float32)
NUM_LOSS_FEATURES = 2 * len(LOSS_DECAYS) + 1


class LossState(NamedTuple):
  """Bias-corrected EMAs of the (clipped) loss at ``LOSS_DECAYS``."""

  ema: jax.Array  # (k,) un-corrected EMA
  count: jax.Array  # int32, losses seen


def init_loss_state() -> LossState:
  return LossState(ema=jnp.zeros(len(LOSS_DECAYS), jnp.float32), count=jnp.zeros([], jnp.int32))


def _corrected(state: LossState) -> jax.Array:
  c = jnp.maximum(state.count, 1).astype(jnp.float32)
  return state.ema / (1.0 - LOSS_DECAYS ** c)


def update_loss_state(state: LossState,
                      loss: jax.typing.ArrayLike) -> tuple[LossState, Float[Array, ""]]:
  """Folds in ``loss``; returns the new state and the loss actually used.

  A NaN/inf loss is replaced by the current average, and a spike is clipped to
  twice the largest average (as VeLO does), so one bad batch cannot wreck the
  statistics that steer the step size.
  """
  loss = jnp.asarray(loss, jnp.float32)
  avg = _corrected(state)
  seen = state.count > 0
  ref = jnp.where(seen, jnp.max(jnp.abs(avg)), jnp.inf)
  clean = jnp.where(jnp.isfinite(loss), loss, jnp.where(seen, avg[-1], 0.0))
  clean = jnp.minimum(clean, 2.0 * ref)
  ema = LOSS_DECAYS * state.ema + (1.0 - LOSS_DECAYS) * clean
  return LossState(ema=ema, count=state.count + 1), clean


def loss_features(state: LossState, loss: Float[Array, ""]) -> Float[Array, "loss_features"]:
  """Relative position of ``loss`` against its averages, ``(NUM_LOSS_FEATURES,)``.

  ``state`` is the state *after* folding in ``loss``.
  """
  avg = _corrected(state)
  scale = jnp.abs(avg) + 1e-8
  rel = jnp.clip((loss - avg) / scale, -1.0, 1.0)
  trend = jnp.clip((avg - avg[-1]) / scale[-1], -1.0, 1.0)  # short vs long average
  finite = jnp.isfinite(loss).astype(jnp.float32)
  return jnp.concatenate([rel, trend, finite[None]])


# ----------------------------------------------------------------------------
# Moments (flat, blocked; see learned_opt.flat)
# ----------------------------------------------------------------------------

MOMENTUM_DECAYS = np.array([0.5, 0.9, 0.99], np.float32)
RMS_DECAY = np.float32(0.999)
FACTORED_DECAY = np.float32(0.99)
GRAD_CLIP = 1000.0  # guards the accumulators against a single exploding gradient


class MomentState(NamedTuple):
  """3 momenta + 1 second moment per element; Adafactor rows/columns per tensor."""

  mom: tuple[jax.Array, ...]  # 3 x (num_blocks, BLOCK); separate arrays, so no slice copies
  rms: jax.Array  # (num_blocks, BLOCK)
  row: tuple[jax.Array, ...]  # per shape group (tensors, rows)
  col: tuple[jax.Array, ...]  # per shape group (tensors, cols)


def matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
  """Adafactor's matrix view: leading dims x last dim; rank 0/1 is a column."""
  size = int(np.prod(shape, dtype=np.int64))
  if len(shape) < 2:
    return size, 1
  return size // shape[-1], shape[-1]


def init_moments(layout: flat.Layout) -> MomentState:
  shape = (layout.num_blocks, flat.BLOCK)
  mats = [(len(g),) + matrix_shape(layout.shapes[g[0]]) for g in layout.groups]
  return MomentState(
      mom=tuple(jnp.zeros(shape, jnp.float32) for _ in MOMENTUM_DECAYS),
      rms=jnp.zeros(shape, jnp.float32),
      row=tuple(jnp.zeros((n, r), jnp.float32) for n, r, _ in mats),
      col=tuple(jnp.zeros((n, c), jnp.float32) for n, _, c in mats))


def update_moments(layout: flat.Layout, state: MomentState, g: jax.Array,
                   token: jax.Array) -> tuple[MomentState, jax.Array]:
  """One step of every accumulator with the blocked gradient ``g``.

  ``token`` is a runtime int32 >= 0 (the step count), see :func:`flat.materialize`.

  Returns the new state and Adafactor's factored second-moment estimate
  ``v_ij = r_i c_j / mean(r)`` in blocked form. Rows and columns do not align
  with blocks, so the factored statistics are computed per *shape group*: the
  same-shaped tensors form one contiguous slab handled by batched ops, so the
  graph grows with the number of distinct shapes (a handful in a deep
  network), not with the number of tensors.
  """
  g2 = jnp.square(g)
  mom = tuple(d * m + (1.0 - d) * g for d, m in zip(MOMENTUM_DECAYS, state.mom))
  rms = RMS_DECAY * state.rms + (1.0 - RMS_DECAY) * g2
  rows, cols, estimates = [], [], []
  for k, (r, c, group) in enumerate(zip(state.row, state.col, layout.groups)):
    mat = matrix_shape(layout.shapes[group[0]])
    # The epsilon keeps all-zero rows (e.g. unused embeddings) from dividing by 0.
    m = flat.group_slab(layout, g2, k).reshape((len(group),) + mat) + 1e-30
    r = FACTORED_DECAY * r + (1.0 - FACTORED_DECAY) * jnp.mean(m, axis=2)
    # A column mean as a matrix-vector product: XLA:CPU's strided reductions
    # over a non-minor axis are ~20x slower than its dot.
    col_mean = jnp.einsum("grc,r->gc", m, jnp.full((mat[0],), 1.0 / mat[0], jnp.float32))
    c = FACTORED_DECAY * c + (1.0 - FACTORED_DECAY) * col_mean
    rows.append(r)
    cols.append(c)
    estimates.append(r[:, :, None] * c[:, None, :] / jnp.mean(r, axis=1)[:, None, None])
  fac = flat.materialize(flat.flatten_groups(layout, estimates), token)
  return MomentState(mom=mom, rms=rms, row=tuple(rows), col=tuple(cols)), fac


NUM_ELEMENT_FEATURES = 9
ADAM_DIRECTION_FEATURE = 6  # index of m_0.9 / sqrt(v): the feature an untrained lopt follows


def element_features(
    layout: flat.Layout, state: MomentState, fac: Float[Array, "blocks lanes"],
    g: Float[Array, "blocks lanes"], p: Float[Array, "blocks lanes"],
) -> tuple[list[jax.Array], Float[Array, "tensors 6"]]:
  """Per-element MLP inputs (``NUM_ELEMENT_FEATURES`` blocked arrays) and tensor stats.

  Features: g, p and the 3 momenta, each divided by its per-tensor RMS (as
  learned_optimization's small_fc_lopt does), so one MLP serves tensors whose
  gradients differ by orders of magnitude; then the 3 momenta / sqrt(second
  moment) and g / sqrt(factored second moment), which are scale-free already
  and only clipped. Normalising only the raw-scale features keeps the other
  four out of the reduction, so XLA computes them inside the MLP's fused loop
  instead of materialising each (measured ~2x faster end to end).

  Returns the feature list and the per-tensor means ``(T, 6)`` of g^2, p^2,
  the 3 squared momenta and the second moment (reused by
  :func:`tensor_features`). Kept as lists, never stacked: a stacked ``(9, N)``
  array costs a full extra write and read.
  """
  raw = [g, p, *state.mom]
  stats = tensor_mean_list(layout, [jnp.square(v) for v in raw] + [state.rms])
  scale = flat.to_blocks(layout, jax.lax.rsqrt(stats[:, :len(raw)] + 1e-12))  # (5, nb, 1)
  rsqrt_v = jax.lax.rsqrt(state.rms + 1e-12)
  rsqrt_f = jax.lax.rsqrt(fac + 1e-12)
  x = ([v * scale[i] for i, v in enumerate(raw)]
       + [jnp.clip(m * rsqrt_v, -SCALE_FREE_CLIP, SCALE_FREE_CLIP) for m in state.mom]
       + [jnp.clip(g * rsqrt_f, -SCALE_FREE_CLIP, SCALE_FREE_CLIP)])
  return x, stats


SCALE_FREE_CLIP = 20.0  # bounds m/sqrt(v) in the first steps, when v is tiny
NUM_TENSOR_FEATURES = 3 + 5  # log-RMS of p, v, m_0.9 and a rank one-hot


def tensor_mean_list(layout: flat.Layout, xs: list[jax.Array]) -> jax.Array:
  """Per-tensor means of several blocked arrays, ``(T, len(xs))``; one reduction each."""
  return flat.tensor_mean(layout, jnp.stack([jnp.sum(v, axis=-1) for v in xs])[..., None])


def tensor_features(layout: flat.Layout,
                    stats: Float[Array, "tensors 6"]) -> Float[Array, "tensors tensor_features"]:
  """Per-tensor statistics, ``(T, NUM_TENSOR_FEATURES)``.

  log RMS of the parameters, the gradient's second moment and its 0.9
  momentum (the scale of the tensor and of its gradients; from the ``stats``
  of :func:`element_features`) and a one-hot of the rank (0..3, >=4).
  """
  chosen = jnp.stack([stats[:, 1], stats[:, 5], stats[:, 3]], axis=1)
  log_rms = 0.5 * jnp.log(chosen + 1e-16) / 10.0
  rank = jax.nn.one_hot(np.minimum(layout.ranks, 4), 5, dtype=jnp.float32)
  return jnp.concatenate([log_rms, rank], axis=1)

