"""VeLO: learned_optimization's ``HyperV2`` as a fused Optax transformation.

Metz et al., 2022, "VeLO: Training Versatile Learned Optimizers by Scaling Up"
(arXiv:2211.09760). A per-tensor LSTM reads tensor statistics and the loss
history and emits, for every tensor, K mixing coefficients and a step-size
multiplier; the coefficients mix a bank of K small per-parameter MLPs into one
MLP per tensor, which maps 30 per-parameter features to a step.

This computes the same function as ``HyperV2(lstm_hidden_size=H,
param_inits=K, use_bugged_loss_features=False)`` at learned_optimization
commit 32186aa, with all other arguments at their defaults, including the
quirks that change its outputs (each is marked ``Quirk:`` where it lives).
Unlike the reference, all tensors are processed together in one flat blocked
layout (``layout.py``), so the compiled graph does not grow with the number
of tensors.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from learned_opt import base
from learned_opt import registry
from learned_opt.velo import checkpoint
from learned_opt.velo.layout import Layout, make_layout

# Accumulator decays: HyperV2's defaults, fixed (not meta-learned) in VeLO.
MOM_DECAYS = np.asarray([0.9, 0.99, 0.999], np.float32)
RMS_DECAY = np.float32(0.999)
FAC_DECAYS = np.asarray([0.9, 0.99, 0.999], np.float32)
NUM_LOSS_DECAYS = 10
# Output scales of the per-parameter MLP (HyperV2's exp_mult, step_mult).
EXP_MULT = 0.001
STEP_MULT = 0.001
GRAD_CLIP = 1000.0
_HIGHEST = jax.lax.Precision.HIGHEST  # the reference ran float32 matmuls at full precision


class VeloState(NamedTuple):
  """VeLO's optimizer state, in the flat layout of ``layout.py`` (no params)."""

  mom: jax.Array  # (3, num_blocks, block) momenta
  rms: jax.Array  # (num_blocks, block) second moment
  v_diag: jax.Array  # (3, num_diag_blocks, block) unfactored Adafactor moments
  v_row: jax.Array  # (3, R) factored Adafactor row moments
  v_col: jax.Array  # (3, C) factored Adafactor column moments
  lstm_hidden: jax.Array  # (T, H)
  lstm_cell: jax.Array  # (T, H)
  loss_means: jax.Array  # (10,) EMAs of the loss
  loss_min: jax.Array  # (10,) running min of the bias-corrected EMAs
  loss_decays: jax.Array  # (10,)
  iteration: jax.Array  # () int32


# ----------------------------------------------------------------------------
# Loss history (HyperV2's BufferLossAccumulators).
# ----------------------------------------------------------------------------


def loss_decays(num_steps: int) -> jax.Array:
  """EMA decays with half-lives log-spaced from 10 steps to ``num_steps``."""
  halflife = jnp.logspace(1, jnp.log10(num_steps), NUM_LOSS_DECAYS)
  return jnp.exp(-1.0 / halflife)


def _bias_corrected(means: jax.Array, decays: jax.Array, count: jax.Array) -> jax.Array:
  # float base, int32 exponent: the lax.pow that jnp.power uses for this case.
  return means / (1 - jax.lax.pow(decays, count))


def update_loss_buffer(means, running_min, decays, iteration, loss):
  """One step of the loss EMAs; returns (means, running_min)."""
  approx_max = jnp.max(_bias_corrected(means, decays, iteration + 1))
  approx_max = jnp.where(iteration == 0, loss, approx_max)
  # Quirk: a loss spike is clipped to twice the largest bias-corrected EMA.
  loss = jnp.minimum(jnp.abs(approx_max) * 2, loss)
  means = means * decays + loss * (1.0 - decays)
  running_min = jnp.minimum(running_min, _bias_corrected(means, decays, iteration + 1))
  return means, running_min


def loss_features(means, running_min, decays, iteration):
  """9 features: each EMA's place between its running min and the next longer EMA."""
  cor_mean = _bias_corrected(means, decays, iteration)
  approx_max, cor_mean, running_min = cor_mean[1:], cor_mean[:-1], running_min[:-1]
  den = jnp.maximum(1e-8, approx_max - running_min)
  feature = jnp.clip((cor_mean - running_min) / den - 1.0, -1, 1)
  # The first two steps' features are noise; the reference zeroes them.
  return jnp.where(iteration <= 2, feature * 0, feature)


# ----------------------------------------------------------------------------
# Per-tensor LSTM.
# ----------------------------------------------------------------------------


def fraction_embedding(fraction_trained: jax.Array) -> jax.Array:
  """9 tanh bumps of the training fraction; they saturate at +1 past ~1.2."""
  timescales = jnp.asarray([0.03, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 1.1], jnp.float32)
  return jnp.tanh((fraction_trained - timescales) * 10)


def _clip_log_abs(v: jax.Array, scale: float) -> jax.Array:
  return jnp.clip(jnp.log(1e-8 + jnp.abs(v * scale)), -5, 5) * 0.5


def lstm_inputs(layout: Layout, p, mom, rms, mask, fraction_trained, loss_feats) -> jax.Array:
  """(T, 30) LSTM inputs, in sorted feature-name order as the reference concatenates.

  Quirk: these use the accumulators from *before* this step's update (the MLP
  sees the updated ones).
  """
  n = jnp.asarray(layout.sizes)
  mean_p2 = layout.per_tensor_sum(p * p) / n
  norm_mult = jax.lax.rsqrt(jnp.maximum(1e-9, mean_p2))  # features are scale-free in p
  mean_m = layout.per_tensor_sum(mom) / n[None]  # (3, T)
  mean_rms = layout.per_tensor_sum(rms) / n  # (T,)
  centre = layout.to_blocks(mean_m)  # (3, nb, 1)
  sq_m = layout.per_tensor_sum(jnp.where(mask[None], jnp.square(mom - centre), 0.0))
  # Quirk: var_rms is centred on the *momentum* mean, so it has 3 columns.
  sq_rms = layout.per_tensor_sum(jnp.where(mask[None], jnp.square(rms[None] - centre), 0.0))
  nm2 = (norm_mult * norm_mult / n)[None]
  var_m = _clip_log_abs((nm2 * sq_m).T, 10.0)  # (T, 3)
  var_rms = _clip_log_abs((nm2 * sq_rms).T, 10.0)
  mean_rms = _clip_log_abs((norm_mult * mean_rms)[:, None], 10.0)  # (T, 1)
  t = layout.num_tensors
  shared = jnp.concatenate([fraction_embedding(fraction_trained), loss_feats])
  return jnp.concatenate([
      jnp.broadcast_to(shared, (t, shared.shape[0])), mean_rms,
      jnp.asarray(layout.rank_one_hot), var_m, var_rms], axis=1)


def _linear(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
  return jnp.dot(x, params["w"], precision=_HIGHEST) + params["b"][None]


def run_lstm(theta, x, hidden, cell):
  """Mixing layers + LSTM + heads. Returns (controls (T,K), lr_mult (T,), hidden, cell)."""
  # Quirk: HyperV2 builds a first mixing Linear ("linear") and overwrites its
  # output; only "linear_1" feeds the max over tensors. The unused layer is
  # not part of our theta.
  pooled = jnp.max(jax.nn.relu(_linear(theta["mix"], x)), axis=0, keepdims=True)
  x = _linear(theta["lstm_in"], x) + pooled
  gates = _linear(theta["lstm"], jnp.concatenate([x, hidden], axis=1))
  i, g, f, o = jnp.split(gates, 4, axis=1)  # haiku's gate order
  # Quirk: haiku's LSTM adds +1 to the forget gate pre-activation.
  cell = jax.nn.sigmoid(f + 1) * cell + jax.nn.sigmoid(i) * jnp.tanh(g)
  hidden = jax.nn.sigmoid(o) * jnp.tanh(cell)
  controls = _linear(theta["to_controls"], hidden)
  lr_mult = jnp.dot(hidden, theta["step_size"]["w"], precision=_HIGHEST) + theta["step_size"]["b"]
  return controls, lr_mult, hidden, cell


# ----------------------------------------------------------------------------
# Accumulators (HyperV2's vec_rolling_mom / vec_rolling_rms / vec_factored_rolling).
# ----------------------------------------------------------------------------


def _ema(decay, old, new):
  return decay * old + (np.float32(1) - decay) * new


def _safe_rsqrt(x):
  return jax.lax.rsqrt(jnp.maximum(x, 1e-9))


def update_factored(layout: Layout, v_row, v_col, gsq_fac):
  """New row/column moments and the Adafactor factors, all on the small tables."""
  fd = FAC_DECAYS[:, None]
  r, c = len(layout.row_count), len(layout.col_count)
  row_sum = jax.ops.segment_sum(gsq_fac.reshape(-1), jnp.asarray(layout.row_pos).reshape(-1), r)
  col_sum = jax.ops.segment_sum(gsq_fac.reshape(-1), jnp.asarray(layout.col_pos).reshape(-1), c)
  v_row = _ema(fd, v_row, (row_sum / jnp.asarray(layout.row_count))[None])
  v_col = _ema(fd, v_col, (col_sum / jnp.asarray(layout.col_count))[None])
  # Quirk: the row statistics are normalised by their mean over the d1 axis
  # only (per slice of the other axes), the column ones not at all.
  groups = jnp.asarray(layout.row_group)
  row_mean = jax.ops.segment_sum(v_row.T, groups, len(layout.group_count)).T
  row_mean = row_mean / jnp.asarray(layout.group_count)[None]
  row_factor = _safe_rsqrt(v_row / (row_mean[:, groups] + 1e-9))
  col_factor = _safe_rsqrt(v_col)
  return v_row, v_col, row_factor, col_factor


# ----------------------------------------------------------------------------
# The per-parameter MLP.
# ----------------------------------------------------------------------------


def _common_inputs(g, p, m, rms):
  """The 11 input columns shared by both kinds of tensors."""
  rsqrt = jax.lax.rsqrt(rms + 1e-6)
  return ([g, jnp.clip(g, -0.1, 0.1), p, *m, rms] + [mi * rsqrt for mi in m] + [rsqrt])


def diag_inputs(g, p, m, rms, v):
  """30 input columns for tensors of rank < 2 (unfactored second moments)."""
  common = _common_inputs(g, p, m, rms)
  fac_g = [g * _safe_rsqrt(vi + 1e-9) for vi in v]
  rs = [jax.lax.rsqrt(vi + 1e-8) for vi in v]
  # Quirk: the unfactored moment fills both the "row" and "column" slots, and
  # the momentum is scaled by v**-0.5 here but by safe_rsqrt(v + 1e-9) in fac_g.
  mom_mult = [mi * vi ** -0.5 for mi, vi in zip(m, v)]
  return (common + fac_g + [g * common[10]] + list(v) + list(v) + rs + rs + mom_mult)


def factored_inputs(g, p, m, rms, row, col, row_factor, col_factor):
  """30 input columns for factored tensors (row/col tables already gathered)."""
  common = _common_inputs(g, p, m, rms)
  fac_g = [g * rf * cf for rf, cf in zip(row_factor, col_factor)]
  mom_mult = [mi * rf * cf for mi, rf, cf in zip(m, row_factor, col_factor)]
  return (common + fac_g + [g * common[10]] + list(row) + list(col)
          + [jax.lax.rsqrt(x + 1e-8) for x in row] + [jax.lax.rsqrt(x + 1e-8) for x in col]
          + mom_mult)


def _block_sumsq(cols: list[jax.Array], mask: jax.Array) -> jax.Array:
  """(num_blocks_in_region, 30): per-block sums of squares of each column."""
  return jnp.stack([jnp.sum(jnp.where(mask, c * c, 0.0), axis=-1) for c in cols], axis=-1)


def apply_mlp(cols: list[jax.Array], layers: list[tuple[jax.Array, jax.Array]]):
  """Runs per-block MLPs over lists of (nb, block) columns; returns (direction, magnitude).

  ``layers[l] = (w (nb, in, out), b (nb, out))``: each block's weights broadcast
  along the lane axis, so this is pure elementwise work XLA fuses.
  """
  h = cols
  for li, (w, b) in enumerate(layers):
    last = li == len(layers) - 1
    n_out = 2 if last else w.shape[-1]  # the third output is unused by HyperV2
    out = []
    for j in range(n_out):
      acc = h[0] * w[:, 0, j, None]
      for c in range(1, len(h)):
        acc = acc + h[c] * w[:, c, j, None]
      acc = acc + b[:, j, None]
      out.append(acc if last else jax.nn.relu(acc))
    h = out
  return h[0], h[1]


def mixed_mlp_weights(theta, controls, input_scale):
  """Per-tensor MLP weights ``100 * mean_k(c_k W_k)``; input normalisation folded into w0."""
  k = controls.shape[1]
  mlp = theta["mlp"]
  n_layers = len(mlp) // 2
  layers = []
  for li in range(n_layers):
    w = jnp.einsum("tk,kio->tio", controls, mlp[f"w{li}"], precision=_HIGHEST)
    b = jnp.einsum("tk,ko->to", controls, mlp[f"b{li}"], precision=_HIGHEST)
    w, b = 100.0 * (w / k), 100.0 * (b / k)
    if li == 0:
      w = w * input_scale[:, :, None]  # (x * s) @ W == x @ (s * W)
    layers.append((w, b))
  return layers


# ----------------------------------------------------------------------------
# The update.
# ----------------------------------------------------------------------------


def _gather(table, pos):
  return [table[d][pos] for d in range(table.shape[0])]


def velo_update(theta, layout: Layout, g, p, state: VeloState, value, num_steps: int):
  """One VeLO step on flat (nb, block) arrays; returns (step, new state). p_new = p - step."""
  mask = layout.lane_mask()
  nd = layout.num_diag_blocks
  g = jnp.clip(g, -GRAD_CLIP, GRAD_CLIP)

  # Loss history and LSTM (per tensor).
  means, running_min = update_loss_buffer(state.loss_means, state.loss_min, state.loss_decays,
                                          state.iteration, value)
  loss_feats = loss_features(means, running_min, state.loss_decays, state.iteration + 1)
  fraction = state.iteration.astype(jnp.float32) / jnp.float32(num_steps)
  x = lstm_inputs(layout, p, state.mom, state.rms, mask, fraction, loss_feats)
  controls, lr_mult, hidden, cell = run_lstm(theta, x, state.lstm_hidden, state.lstm_cell)

  # Accumulators (per element).
  mom = _ema(MOM_DECAYS[:, None, None], state.mom, g[None])
  rms = _ema(RMS_DECAY, state.rms, g * g)
  gsq = g * g + 1e-30
  v_diag = _ema(FAC_DECAYS[:, None, None], state.v_diag, gsq[None, :nd])
  gsq_fac = jnp.where(mask[nd:], gsq[nd:], 0.0)
  v_row, v_col, row_factor, col_factor = update_factored(layout, state.v_row, state.v_col, gsq_fac)

  # MLP inputs of both regions, then their per-tensor second moments.
  regions = []
  if nd:
    regions.append(diag_inputs(g[:nd], p[:nd], list(mom[:, :nd]), rms[:nd], list(v_diag)))
  if layout.num_blocks > nd:
    row_pos, col_pos = jnp.asarray(layout.row_pos), jnp.asarray(layout.col_pos)
    regions.append(factored_inputs(
        g[nd:], p[nd:], list(mom[:, nd:]), rms[nd:], _gather(v_row, row_pos),
        _gather(v_col, col_pos), _gather(row_factor, row_pos), _gather(col_factor, col_pos)))
  masks = [mask[:nd], mask[nd:]] if nd else [mask]
  block_sq = jnp.concatenate([_block_sumsq(c, m) for c, m in zip(regions, masks)], axis=0)
  input_scale = jax.lax.rsqrt(1e-5 + layout.sum_blocks(block_sq.T).T / jnp.asarray(layout.sizes)[:, None])
  layers = mixed_mlp_weights(theta, controls, input_scale)

  # Step = direction * param_scale * exp(0.001 magnitude) * 0.001 * lr_mult.
  n = jnp.asarray(layout.sizes)
  param_scale = jnp.sqrt(layout.per_tensor_sum(p * p) / n + 1e-9)
  bt = jnp.asarray(layout.block_tensor)
  steps, start = [], 0
  for cols in regions:
    stop = start + cols[0].shape[0]
    blocks = bt[start:stop]
    direction, magnitude = apply_mlp(cols, [(w[blocks], b[blocks]) for w, b in layers])
    scale = param_scale[blocks][:, None]
    step = direction * (scale * jnp.exp(magnitude * EXP_MULT)) * STEP_MULT
    steps.append(lr_mult[blocks][:, None] * step)
    start = stop
  step = jnp.concatenate(steps, axis=0) if len(steps) > 1 else steps[0]

  new_state = VeloState(mom=mom, rms=rms, v_diag=v_diag, v_row=v_row, v_col=v_col,
                        lstm_hidden=hidden, lstm_cell=cell, loss_means=means,
                        loss_min=running_min, loss_decays=state.loss_decays,
                        iteration=state.iteration + 1)
  return step, new_state


def scale_by_velo(theta, *, num_steps: int, weight_decay: float = 0.0
                  ) -> optax.GradientTransformationExtraArgs:
  """VeLO as an Optax transformation: ``update(grads, state, params, value=loss)``.

  Args:
    theta: meta-parameters in our layout (see ``Velo.init_meta``).
    num_steps: length of the training run; sets the training-fraction input
      and the loss-EMA half-lives.
    weight_decay: L2 coefficient, applied as learned_optimization's prefab
      does (``WeightDecayWrapper``): ``weight_decay * p`` is added to the
      gradient and ``weight_decay * sum(p**2)`` to the loss the LSTM sees.

  Returns:
    The transformation; its updates are ``new_params - params``.
  """

  def init_fn(params):
    leaves = jax.tree.leaves(params)
    layout = make_layout([jnp.shape(x) for x in leaves])
    nb, blk, nd = layout.num_blocks, layout.block, layout.num_diag_blocks
    zeros = lambda *s: jnp.zeros(s, jnp.float32)
    t = layout.num_tensors
    decays = loss_decays(num_steps)
    return VeloState(
        mom=zeros(3, nb, blk), rms=zeros(nb, blk), v_diag=zeros(3, nd, blk),
        v_row=zeros(3, len(layout.row_count)), v_col=zeros(3, len(layout.col_count)),
        lstm_hidden=jnp.tile(theta["lstm_init"]["hidden"][None], (t, 1)),
        lstm_cell=jnp.tile(theta["lstm_init"]["cell"][None], (t, 1)),
        loss_means=zeros(NUM_LOSS_DECAYS),
        loss_min=999999999999.0 * jnp.ones((NUM_LOSS_DECAYS,), jnp.float32),
        loss_decays=decays, iteration=jnp.zeros((), jnp.int32))

  def update_fn(updates, state, params=None, *, value=None, **extra_args):
    del extra_args  # e.g. a PRNG key: HyperV2 splits one but draws nothing from it.
    base.check_params(params, "velo update")
    base.check_value(value)
    g_leaves, treedef = jax.tree.flatten(updates)
    p_leaves = jax.tree.leaves(params)
    layout = make_layout([jnp.shape(x) for x in p_leaves])
    g, p = layout.flatten(g_leaves), layout.flatten(p_leaves)
    loss = jnp.asarray(value).astype(jnp.float32)
    if weight_decay:
      g = g + jnp.float32(weight_decay) * p
      l2 = layout.per_tensor_sum(p * p) * jnp.float32(weight_decay)
      loss = loss + jnp.sum(l2)
    step, state = velo_update(theta, layout, g, p, state, loss, num_steps)
    out = layout.unflatten(-step, [jnp.result_type(x) for x in p_leaves])
    return jax.tree.unflatten(treedef, out), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _haiku_linear(key, n_in: int, n_out: int) -> dict[str, jax.Array]:
  std = 1.0 / np.sqrt(n_in)
  w = std * jax.random.truncated_normal(key, -2.0, 2.0, (n_in, n_out), jnp.float32) / 0.87962566
  return {"w": w, "b": jnp.zeros((n_out,), jnp.float32)}


@registry.register("velo")
@dataclasses.dataclass(frozen=True)
class Velo(base.LearnedOptimizer):
  """VeLO (HyperV2). Defaults are VeLO's sizes; smaller HyperV2 checkpoints set their own.

  Attributes:
    lstm_hidden_size: H, width of the per-tensor LSTM.
    param_inits: K, number of per-parameter MLPs mixed per tensor.
    ff_hidden_size: width of the per-parameter MLP.
    ff_hidden_layers: hidden layers of the per-parameter MLP.
  """

  lstm_hidden_size: int = 512
  param_inits: int = 256
  ff_hidden_size: int = 4
  ff_hidden_layers: int = 2

  def init_meta(self, key: base.PRNGKey) -> base.Theta:
    """Fresh theta, initialised as HyperV2.init does (haiku defaults)."""
    h, k, ff = self.lstm_hidden_size, self.param_inits, self.ff_hidden_size
    f = checkpoint.NUM_LSTM_INPUTS
    keys = jax.random.split(key, 6 + self.ff_hidden_layers + 1)
    step = _haiku_linear(keys[4], h, 1)
    widths = [checkpoint.NUM_MLP_INPUTS] + [ff] * self.ff_hidden_layers + [3]
    mlp = {}
    for li in range(len(widths) - 1):
      std = 1.0 / np.sqrt(widths[li])
      shape = (k, widths[li], widths[li + 1])
      mlp[f"w{li}"] = std * jax.random.truncated_normal(
          keys[6 + li], -2.0, 2.0, shape, jnp.float32) / 0.87962566
      mlp[f"b{li}"] = jnp.zeros((k, widths[li + 1]), jnp.float32)
    return {
        "lstm_init": {"hidden": jnp.zeros((h,), jnp.float32), "cell": jnp.zeros((h,), jnp.float32)},
        "mix": _haiku_linear(keys[0], f, h),
        "lstm_in": _haiku_linear(keys[1], f, h),
        "lstm": _haiku_linear(keys[2], 2 * h, 4 * h),
        "to_controls": _haiku_linear(keys[3], h, k),
        "step_size": {"w": step["w"][:, 0], "b": step["b"][0]},
        "mlp": mlp,
    }

  def as_optax(self, theta: base.Theta, *, num_steps: int, weight_decay: float = 0.0
               ) -> optax.GradientTransformationExtraArgs:
    """VeLO for a run of ``num_steps`` steps (see ``scale_by_velo``)."""
    num_steps = base.check_num_steps(num_steps)
    base.check_theta(self, theta)
    if not weight_decay >= 0.0:
      raise base.LearnedOptimizerError(
          f"weight_decay must be a float >= 0, got {weight_decay!r}.")
    theta = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), theta)
    return scale_by_velo(theta, num_steps=num_steps, weight_decay=float(weight_decay))
