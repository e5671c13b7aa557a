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
of tensors. On non-finite input it departs from the reference, which turns
NaN for good: NaN gradient elements are zeroed and a step with a non-finite
loss or result is skipped (``skip_non_finite``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from learned_opt import base, empty_leaves, perturbed
from learned_opt import registry
from learned_opt.velo.layout import Layout, make_layout

# Widths of HyperV2's 14 per-parameter input groups (its first-layer blocks
# w0__0..w0__13), in the order the MLP concatenates them, with the default
# feature flags VeLO used.
INPUT_GROUP_WIDTHS = (1, 1, 1, 3, 1, 3, 1, 3, 1, 3, 3, 3, 3, 3)
NUM_MLP_INPUTS = sum(INPUT_GROUP_WIDTHS)  # 30
NUM_LSTM_INPUTS = 30  # fraction_left 9, loss 9, mean_rms 1, rank 5, var_m 3, var_rms 3
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

  mom: tuple[jax.Array, jax.Array, jax.Array]  # 3 x (num_blocks, block) momenta
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


def deviation_terms(mom, rms, centre, mask) -> list[jax.Array]:
  """6 (blocks, block) terms whose block sums are (m_d - centre_d)**2 and (rms - centre_d)**2.

  ``centre`` (blocks, 3) is each block's tensor mean of the momenta. Two passes
  (means first, then squared deviations) as the reference: one-pass
  E[x^2] - E[x]^2 cancels catastrophically when the mean dominates.
  Quirk: var_rms is centred on the *momentum* means, so it has 3 columns.
  """
  dev = lambda x, d: jnp.where(mask, jnp.square(x - centre[:, d, None]), 0.0)
  return [dev(m, d) for d, m in enumerate(mom)] + [dev(rms, d) for d in range(3)]


def lstm_inputs(layout: Layout, sum_p2, mean_m, mean_rms, deviations, fraction_trained,
                loss_feats):
  """(T, 30) LSTM inputs, in sorted feature-name order as the reference concatenates.

  Quirk: these use the accumulators from *before* this step's update (the MLP
  sees the updated ones). All features are of ``x * rsqrt(mean(p**2))``; the
  scale is applied to the per-tensor sums instead of to every element.
  ``deviations`` is ``deviation_terms`` summed per tensor, (T, 6).
  """
  n = jnp.asarray(layout.sizes)
  norm_mult = jax.lax.rsqrt(jnp.maximum(1e-9, sum_p2 / n))
  scale = (norm_mult * norm_mult / n)[:, None]
  var_m = _clip_log_abs(deviations[:, :3] * scale, 10.0)  # (T, 3)
  var_rms = _clip_log_abs(deviations[:, 3:] * scale, 10.0)
  mean_rms = _clip_log_abs((norm_mult * mean_rms)[:, None], 10.0)  # (T, 1)
  t = layout.num_tensors
  shared = jnp.concatenate([fraction_embedding(fraction_trained), loss_feats])
  return jnp.concatenate([
      jnp.broadcast_to(shared[None], (t, shared.shape[0])), mean_rms,
      jnp.asarray(layout.rank_one_hot), var_m, var_rms], axis=1)


def _linear(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
  # perturbed.matmul: an ES particle's weights may be theta plus parts (Velo.structured_theta).
  return perturbed.matmul(x, params["w"], precision=_HIGHEST) + perturbed.value(params["b"])[None]


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
  lr_mult = (perturbed.matmul(hidden, theta["step_size"]["w"], precision=_HIGHEST)
             + perturbed.value(theta["step_size"]["b"]))
  return controls, lr_mult, hidden, cell


# ----------------------------------------------------------------------------
# Accumulators (HyperV2's vec_rolling_mom / vec_rolling_rms / vec_factored_rolling).
# ----------------------------------------------------------------------------


def _ema(decay, old, new):
  return decay * old + (np.float32(1) - decay) * new


def _safe_rsqrt(x):
  return jax.lax.rsqrt(jnp.maximum(x, 1e-9))


def factored_grad_moments(layout: Layout, g):
  """Means of g**2 + 1e-30 over axis d0 (rows) and d1 (columns) of each factored tensor.

  ``g`` is the flat (num_blocks, block) gradient. Equal-shape tensors sit next
  to each other in it, so each run is sliced out, viewed in its natural shape
  and reduced with the same ``jnp.mean`` as the reference: the number of
  reductions grows with the number of distinct shapes, not of tensors (a
  flat scatter-add was 5x slower on CPU).
  """
  flat = g.reshape(-1)
  rows, cols = [], []
  for shape, d1, d0, first, count in layout.fac_groups:
    n = int(np.prod(shape))
    stride = -(-n // layout.block) * layout.block
    x = flat[first * layout.block:(first + count * stride // layout.block) * layout.block]
    x = x.reshape(count, stride)[:, :n].reshape((count,) + shape)
    gsq = x * x + 1e-30
    rows.append(jnp.mean(gsq, axis=d0 + 1).reshape(-1))
    cols.append(jnp.mean(gsq, axis=d1 + 1).reshape(-1))
  cat = lambda xs: jnp.concatenate(xs) if xs else jnp.zeros((0,), jnp.float32)
  return cat(rows), cat(cols)


def update_factored(layout: Layout, v_row, v_col, row_mean, col_mean):
  """New row/column moments (3, R), (3, C) and their Adafactor factors."""
  fd = FAC_DECAYS[:, None]
  v_row = _ema(fd, v_row, row_mean[None])
  v_col = _ema(fd, v_col, col_mean[None])
  # Quirk: the row statistics are normalised by their mean over the d1 axis
  # only (per slice of the other axes), the column ones not at all.
  groups = jnp.asarray(layout.row_group)
  row_mean = jax.ops.segment_sum(v_row.T, groups, len(layout.group_count)).T
  row_mean = row_mean / jnp.asarray(layout.group_count)[None]
  row_factor = _safe_rsqrt(v_row / (row_mean[:, groups] + 1e-9))
  col_factor = _safe_rsqrt(v_col)
  return v_row, v_col, row_factor, col_factor


class FactoredTables(NamedTuple):
  """Per decay, the factored tensors' row and column entries, (3, R) and (3, C).

  Elements of the factored blocks look them up by ``layout.row_idx``/``col_idx``.
  """

  row: jax.Array  # v_row
  col: jax.Array  # v_col
  row_factor: jax.Array
  col_factor: jax.Array


class ElementMoments(NamedTuple):
  """Per decay, the Adafactor values one element reads, each a list of 3 arrays."""

  row: list[jax.Array]  # second moment seen as "row" feature
  col: list[jax.Array]
  row_factor_g: list[jax.Array]  # multiplies g in fac_g
  row_factor_m: list[jax.Array]  # multiplies m in fac_mom_mult
  col_factor: list  # arrays, or 1.0 for an unfactored moment


def diag_moments(v) -> ElementMoments:
  """The values of the unfactored moments ``v`` (3 x (blocks, block)), elementwise.

  Quirk: an unfactored moment fills both the "row" and "column" slots, its
  column factor is 1, and fac_g uses safe_rsqrt(v + 1e-9) while fac_mom_mult
  uses v**-0.5.
  """
  return ElementMoments(row=list(v), col=list(v),
                        row_factor_g=[_safe_rsqrt(x + 1e-9) for x in v],
                        row_factor_m=[x ** -0.5 for x in v], col_factor=[1.0] * 3)


def factored_moments(tables: FactoredTables, row_idx, col_idx) -> ElementMoments:
  """The factored tables' entries read by the elements at ``row_idx``/``col_idx`` (blocks, block)."""
  row_factor = [t[row_idx] for t in tables.row_factor]
  return ElementMoments(row=[t[row_idx] for t in tables.row],
                        col=[t[col_idx] for t in tables.col],
                        row_factor_g=row_factor, row_factor_m=row_factor,
                        col_factor=[t[col_idx] for t in tables.col_factor])


# ----------------------------------------------------------------------------
# The per-parameter MLP.
# ----------------------------------------------------------------------------

# Input columns of the MLP (HyperV2's order): g, clip(g), p, m (3), rms,
# m*rsqrt(rms) (3), rsqrt(rms), fac_g (3), g*rsqrt(rms), row (3), col (3),
# rsqrt(row) (3), rsqrt(col) (3), fac_mom_mult (3).
_ELEMENT_COLUMNS = tuple(range(15)) + (27, 28, 29)


def mlp_inputs(g, p, mom, rms, moments: ElementMoments) -> list[jax.Array]:
  """The 30 per-parameter input columns, each (num_blocks, block)."""
  rsqrt = jax.lax.rsqrt(rms + 1e-6)
  fac_g = [g * r * c for r, c in zip(moments.row_factor_g, moments.col_factor)]
  mom_mult = [m * r * c for m, r, c in zip(mom, moments.row_factor_m, moments.col_factor)]
  row, col = moments.row, moments.col
  return ([g, jnp.clip(g, -0.1, 0.1), p, *mom, rms] + [m * rsqrt for m in mom] + [rsqrt]
          + fac_g + [g * rsqrt] + row + col + [jax.lax.rsqrt(x + 1e-8) for x in row]
          + [jax.lax.rsqrt(x + 1e-8) for x in col] + mom_mult)


def sumsq_terms(cols, mask) -> list[jax.Array]:
  """18 (blocks, block) terms whose block sums are the squares of the per-element input columns.

  Padding is zero in every element column except rsqrt(rms) (column 10).
  """
  return [jnp.square(jnp.where(mask, cols[c], 0.0) if c == 10 else cols[c])
          for c in _ELEMENT_COLUMNS]


def diag_sumsq_terms(v, mask) -> list[jax.Array]:
  """6 (blocks, block) terms whose block sums are the squares of v and rsqrt(v + 1e-8).

  On the diagonal blocks these are the row and also the column input columns
  (``diag_moments``); padding is masked.
  """
  square = lambda x: jnp.where(mask, jnp.square(x), 0.0)
  return [square(x) for x in v] + [square(jax.lax.rsqrt(x + 1e-8)) for x in v]


def lane_sums(terms: list[jax.Array]) -> jax.Array:
  """(blocks, len(terms)): each (blocks, block) term summed over its lanes.

  One variadic reduction, so XLA:CPU computes every term in a single loop;
  separate ``jnp.sum`` calls each become a kernel of their own that re-reads
  (and re-computes) its inputs, ~1.5x slower for these 24 sums.
  """
  sums = jax.lax.reduce(terms, [np.float32(0)] * len(terms),
                        lambda a, b: [x + y for x, y in zip(a, b)], (1,))
  return jnp.stack(sums, axis=-1)


def mlp_input_sumsq(layout: Layout, element_sums, diag_sums, tables: FactoredTables) -> jax.Array:
  """(T, 30) per-tensor sums of squares of the input columns.

  ``element_sums`` (T, 18) are ``sumsq_terms`` and ``diag_sums`` (T, 6)
  ``diag_sumsq_terms`` summed per tensor. The factored tensors' 12 row/column
  columns are summed on the small tables instead, each entry weighted by the
  number of elements that read it.
  """
  sums = {c: element_sums[:, i] for i, c in enumerate(_ELEMENT_COLUMNS)}
  t = layout.num_tensors

  def table_sum(values, owner, mult):
    return jax.ops.segment_sum(values * values * jnp.asarray(mult), jnp.asarray(owner), t)

  rt, rm = layout.row_table_tensor, layout.row_table_mult
  ct, cm = layout.col_table_tensor, layout.col_table_mult
  for d in range(3):
    v2, rsqrt2 = diag_sums[:, d], diag_sums[:, 3 + d]
    sums[15 + d] = v2 + table_sum(tables.row[d], rt, rm)
    sums[18 + d] = v2 + table_sum(tables.col[d], ct, cm)
    sums[21 + d] = rsqrt2 + table_sum(jax.lax.rsqrt(tables.row[d] + 1e-8), rt, rm)
    sums[24 + d] = rsqrt2 + table_sum(jax.lax.rsqrt(tables.col[d] + 1e-8), ct, cm)
  return jnp.stack([sums[c] for c in range(30)], axis=1)


def apply_mlp(cols: list[jax.Array], layers: list[tuple[jax.Array, jax.Array]]):
  """Runs per-block MLPs over lists of (nb, block) columns; returns (direction, magnitude).

  ``layers[l] = (w (nb, in, out), b (nb, out))``: each block's weights broadcast
  along the lane axis, so this is elementwise work that XLA fuses into a few
  loops (a batched matmul of these tiny shapes is far slower on CPU). The
  barriers stop XLA from re-slicing the weights and re-computing the inputs in
  every one of the fusions it splits this into: the weights and the first
  hidden layer are materialised once.
  """
  h = cols
  for li, (w, b) in enumerate(layers):
    last = li == len(layers) - 1
    n_out = 2 if last else w.shape[-1]  # the third output is unused by HyperV2
    wb = jnp.concatenate([w[:, :, :n_out].reshape(w.shape[0], -1), b[:, :n_out]], axis=1)
    wb = jax.lax.optimization_barrier(list(jnp.split(wb, wb.shape[1], axis=1)))
    out = []
    for j in range(n_out):
      acc = h[0] * wb[j]
      for c in range(1, len(h)):
        acc = acc + h[c] * wb[c * n_out + j]
      acc = acc + wb[len(h) * n_out + j]
      out.append(acc if last else jax.nn.relu(acc))
    h = jax.lax.optimization_barrier(out) if li == 0 else out
  return h[0], h[1]


def mixed_mlp_weights(theta, controls, input_scale):
  """Per-tensor MLP weights ``100 * mean_k(c_k W_k)``; input normalisation folded into w0."""
  k = controls.shape[1]
  mlp = theta["mlp"]
  layers = []
  for li in range(len(mlp) // 2):
    w = perturbed.matmul(controls, mlp[f"w{li}"], precision=_HIGHEST)  # tk,kio->tio
    b = perturbed.matmul(controls, mlp[f"b{li}"], precision=_HIGHEST)  # tk,ko->to
    w, b = 100.0 * (w / k), 100.0 * (b / k)
    if li == 0:
      w = w * input_scale[:, :, None]  # (x * s) @ W == x @ (s * W)
    layers.append((w, b))
  return layers


# ----------------------------------------------------------------------------
# The update.
# ----------------------------------------------------------------------------


MLP_CHUNKS = 4
SUMSQ_CHUNKS = 16  # both must divide layout.BLOCK_MULTIPLE (a small region runs as one chunk)


def map_blocks(fn, xs, num_chunks: int):
  """``fn`` over ``num_chunks`` slices of the leading (block) axis, as a loop.

  A loop, not one big expression, because XLA otherwise fuses the whole
  elementwise computation into each per-leaf slice of its consumers,
  compiling one copy of it per parameter tensor (21 s instead of 3 s at 128
  tensors). The loop's output is materialised, so the graph stays the same
  size for any number of tensors.
  """
  nb = jax.tree.leaves(xs)[0].shape[0]
  split = lambda x: x.reshape((num_chunks, nb // num_chunks) + x.shape[1:])
  out = jax.lax.map(fn, jax.tree.map(split, xs))
  return jax.tree.map(lambda y: y.reshape((nb,) + y.shape[2:]), out)


def map_regions(layout: Layout, diag_fn, fac_fn, xs, diag_xs, fac_xs, num_chunks: int):
  """``diag_fn`` over the diagonal blocks, ``fac_fn`` over the factored ones, into one output.

  Each is a loop of ``num_chunks`` calls ``fn(chunk of xs, chunk of its own
  xs)``: ``xs`` are (num_blocks, ...) arrays, ``diag_xs`` and ``fac_xs`` cover
  only their region. Two loops rather than one, so that diagonal elements read
  their own moments elementwise instead of through the factored tables'
  gathers, and the graph still does not grow with the number of tensors.
  Both must return the same structure. An empty region runs no loop.
  """
  nd, nb = layout.num_diag_blocks, layout.num_blocks
  regions = [(fn, lo, hi - lo, own) for fn, lo, hi, own
             in ((diag_fn, 0, nd, diag_xs), (fac_fn, nd, nb, fac_xs)) if hi > lo]
  take = lambda x, start, size: jax.lax.dynamic_slice_in_dim(x, start, size)
  # Both loops write into one buffer (in place) and read their chunks of xs
  # by dynamic slices, so neither the inputs nor the outputs are copied per region.
  chunks = lambda size: num_chunks if size % num_chunks == 0 else 1  # a small region
  fn0, _, size0, own0 = regions[0]
  chunk0 = size0 // chunks(size0)
  out_chunk = jax.eval_shape(lambda: fn0(jax.tree.map(lambda x: take(x, 0, chunk0), xs),
                                         jax.tree.map(lambda x: take(x, 0, chunk0), own0)))
  buf = jax.tree.map(lambda s: jnp.zeros((nb,) + s.shape[1:], s.dtype), out_chunk)
  for fn, lo, size, own in regions:
    chunk = size // chunks(size)

    def body(i, buf, fn=fn, lo=lo, chunk=chunk, own=own):
      start = i * chunk
      out = fn(jax.tree.map(lambda x: take(x, lo + start, chunk), xs),
               jax.tree.map(lambda x: take(x, start, chunk), own))
      return jax.tree.map(lambda b, o: jax.lax.dynamic_update_slice_in_dim(b, o, lo + start, 0),
                          buf, out)

    buf = jax.lax.fori_loop(0, size // chunk, body, buf)
  return buf


def tensor_means(layout: Layout, state: VeloState):
  """Per tensor: momentum means (T, 3) and rms mean (T,).

  The means are of the accumulators from *before* this step: they centre the
  LSTM's deviation features (see ``deviation_terms``).
  """
  n = jnp.asarray(layout.sizes)
  mean_m = jnp.stack([layout.per_tensor_sum(m) for m in state.mom], axis=1) / n[:, None]
  mean_rms = layout.per_tensor_sum(state.rms) / n
  return mean_m, mean_rms


def update_second_moments(layout: Layout, g, fac_moments, state: VeloState):
  """New Adafactor moments ``(v_diag, v_row, v_col)`` and the ``FactoredTables`` built on them.

  These come first because both element passes read them.
  """
  nd = layout.num_diag_blocks
  gsq_diag = g[:nd] * g[:nd] + 1e-30
  v_diag = _ema(FAC_DECAYS[:, None, None], state.v_diag, gsq_diag[None])
  v_row, v_col, row_factor, col_factor = update_factored(layout, state.v_row, state.v_col,
                                                         *fac_moments)
  return v_diag, v_row, v_col, FactoredTables(v_row, v_col, row_factor, col_factor)


def new_accumulators(g, mom, rms):
  """This step's momenta and rms (HyperV2's vec_rolling_mom / vec_rolling_rms)."""
  return tuple(_ema(d, m, g) for d, m in zip(MOM_DECAYS, mom)), _ema(RMS_DECAY, rms, g * g)


def accumulator_sums(layout: Layout, tables: FactoredTables, v_diag, g, p, state: VeloState,
                     centre):
  """Per-tensor sums (T, 6 + 18 + 6) for the LSTM and the MLP-input normalisation.

  ``v_diag`` are the new unfactored moments and ``centre`` (blocks, 3) each
  block's ``mean_m``. The first 6 sums are ``deviation_terms`` (of the old
  accumulators), the next 18 ``sumsq_terms`` (of the new ones; their third,
  sum(p**2), is also the LSTM's) and the last 6 ``diag_sumsq_terms`` (zero on
  factored tensors). The new accumulators are recomputed by ``mlp_step``
  rather than stored here: storing them cost more than the four multiply-adds.
  """

  def element_terms(xs, moments):
    g, p, mom, rms, mask, centre = xs
    deviations = deviation_terms(mom, rms, centre, mask)  # old accumulators: LSTM
    mom, rms = new_accumulators(g, mom, rms)
    return deviations + sumsq_terms(mlp_inputs(g, p, mom, rms, moments), mask)

  def diag_pass(xs, v):
    return lane_sums(element_terms(xs, diag_moments(v)) + diag_sumsq_terms(v, xs[4]))

  def fac_pass(xs, idx):
    sums = lane_sums(element_terms(xs, factored_moments(tables, *idx)))
    return jnp.pad(sums, ((0, 0), (0, 6)))

  # Loops over cache-sized chunks, so the 30 sums re-read data in cache.
  xs = (g, p, state.mom, state.rms, layout.lane_mask(), centre)
  idx = (jnp.asarray(layout.row_idx), jnp.asarray(layout.col_idx))
  block_sums = map_regions(layout, diag_pass, fac_pass, xs, tuple(v_diag), idx, SUMSQ_CHUNKS)
  return layout.sum_blocks(block_sums.T).T


def lstm_step(theta, layout: Layout, state: VeloState, tensor_stats, deviations, loss_feats,
              num_steps: int):
  """The per-tensor LSTM: (controls (T, K), lr_mult (T,), hidden, cell).

  ``tensor_stats`` is ``(sum_p2, *tensor_means)``, ``deviations`` the first 6
  columns of ``accumulator_sums`` and ``loss_feats`` this step's 9 loss
  features.
  """
  fraction = state.iteration.astype(jnp.float32) / jnp.float32(num_steps)
  x = lstm_inputs(layout, *tensor_stats, deviations, fraction, loss_feats)
  return run_lstm(theta, x, state.lstm_hidden, state.lstm_cell)


def mlp_step(theta, layout: Layout, tables: FactoredTables, v_diag, g, p, state: VeloState,
             sum_p2, input_sums, controls, lr_mult, keep):
  """The update and new accumulators from the per-tensor mixed MLPs, in chunked loops.

  ``input_sums`` are the last 24 columns of ``accumulator_sums``; ``controls``
  and ``lr_mult`` come from ``lstm_step``. ``keep`` (bool) is False on a step
  ``small_state_ok`` rejects: the accumulators then keep their old values
  (selected here, in the same pass, instead of in a pass of their own).
  Returns ``(update, mom, rms)``.
  """
  n = jnp.asarray(layout.sizes)
  bt = jnp.asarray(layout.block_tensor)
  # MLP weights per block, with the input normalisation folded in.
  sumsq = mlp_input_sumsq(layout, input_sums[:, :18], input_sums[:, 18:], tables)
  input_scale = jax.lax.rsqrt(1e-5 + sumsq / n[:, None])
  layers = [(w[bt], b[bt]) for w, b in mixed_mlp_weights(theta, controls, input_scale)]
  param_scale = jnp.sqrt(sum_p2 / n + 1e-9)

  def block_step(xs, moments):
    g, p, *old, layers, param_scale, lr_mult = xs
    mom, rms = new_accumulators(g, old[:3], old[3])
    cols = mlp_inputs(g, p, mom, rms, moments)
    direction, magnitude = apply_mlp(cols, layers)
    # direction * param_scale * exp(0.001 magnitude) * 0.001 * lr_mult, in the
    # reference's order of multiplication.
    step = direction * (param_scale[:, None] * jnp.exp(magnitude * EXP_MULT)) * STEP_MULT
    new = [jnp.where(keep, x, o) for x, o in zip((*mom, rms), old)]
    return [-(lr_mult[:, None] * step)] + new  # the update is -step

  xs = (g, p, *state.mom, state.rms, layers, param_scale[bt], lr_mult[bt])
  idx = (jnp.asarray(layout.row_idx), jnp.asarray(layout.col_idx))
  step, *acc = map_regions(layout, lambda xs, v: block_step(xs, diag_moments(v)),
                           lambda xs, idx: block_step(xs, factored_moments(tables, *idx)),
                           xs, tuple(v_diag), idx, MLP_CHUNKS)
  return step, tuple(acc[:3]), acc[3]


def velo_update(theta, layout: Layout, g, p, fac_moments, state: VeloState, value,
                num_steps: int):
  """One VeLO step on flat (nb, block) arrays of clipped grads and params.

  Returns (update, new state); the new params are ``p + update``. The LSTM
  reads statistics of the accumulators from before this step, the MLP the
  updated ones; both look up the updated Adafactor tables. A step with a
  non-finite loss, update or state is skipped (``skip_non_finite``).
  """
  bt = jnp.asarray(layout.block_tensor)
  mean_m, mean_rms = tensor_means(layout, state)
  v_diag, v_row, v_col, tables = update_second_moments(layout, g, fac_moments, state)
  tensor_sums = accumulator_sums(layout, tables, v_diag, g, p, state, mean_m[bt])
  sum_p2 = tensor_sums[:, 6 + 2]  # sumsq_terms' column of p
  # Loss history (shared by all tensors), then the LSTM and the MLP.
  means, running_min = update_loss_buffer(state.loss_means, state.loss_min, state.loss_decays,
                                          state.iteration, value)
  loss_feats = loss_features(means, running_min, state.loss_decays, state.iteration + 1)
  controls, lr_mult, hidden, cell = lstm_step(theta, layout, state, (sum_p2, mean_m, mean_rms),
                                              tensor_sums[:, :6], loss_feats, num_steps)
  new = state._replace(v_diag=v_diag, v_row=v_row, v_col=v_col, lstm_hidden=hidden,
                       lstm_cell=cell, loss_means=means, loss_min=running_min,
                       iteration=state.iteration + 1)
  ok = small_state_ok(value, new)
  step, mom, rms = mlp_step(theta, layout, tables, v_diag, g, p, state, sum_p2,
                            tensor_sums[:, 6:], controls, lr_mult, ok)
  return skip_non_finite(ok, step, new._replace(mom=mom, rms=rms), state)


def init_velo_state(theta, params, num_steps: int) -> VeloState:
  """Zero accumulators and theta's initial LSTM state, for the layout of ``params``."""
  leaves = jax.tree.leaves(params)
  layout = make_layout([jnp.shape(x) for x in leaves])
  nb, blk, nd = layout.num_blocks, layout.block, layout.num_diag_blocks
  zeros = lambda *s: jnp.zeros(s, jnp.float32)
  t = layout.num_tensors
  return VeloState(
      mom=(zeros(nb, blk), zeros(nb, blk), zeros(nb, blk)), rms=zeros(nb, blk),
      v_diag=zeros(3, nd, blk), v_row=zeros(3, layout.num_rows),
      v_col=zeros(3, layout.num_cols),
      lstm_hidden=jnp.tile(perturbed.value(theta["lstm_init"]["hidden"])[None], (t, 1)),
      lstm_cell=jnp.tile(perturbed.value(theta["lstm_init"]["cell"])[None], (t, 1)),
      loss_means=zeros(NUM_LOSS_DECAYS),
      loss_min=999999999999.0 * jnp.ones((NUM_LOSS_DECAYS,), jnp.float32),
      loss_decays=loss_decays(num_steps), iteration=jnp.zeros((), jnp.int32))


def small_state_ok(loss, new: VeloState) -> jax.Array:
  """True where the loss and the new LSTM, loss and row/column state are all finite."""
  ok = jnp.isfinite(loss)
  for x in (new.lstm_hidden, new.lstm_cell, new.loss_means, new.loss_min, new.v_row, new.v_col):
    ok = ok & jnp.all(jnp.isfinite(x))
  return ok


def skip_non_finite(ok, step, new: VeloState, old: VeloState):
  """``(step, new)``, or a zero step and the ``old`` state where ``ok`` or the step is not finite.

  Not in the reference, where one NaN or -inf loss makes the loss EMAs, then
  the LSTM state and every later update NaN for good. A step whose loss, update
  or LSTM/loss state is not finite is skipped instead (the step count stays
  too). ``ok`` is ``small_state_ok``, with which ``mlp_step`` has already kept
  the old momenta and rms. Those need no check of their own, as clipped,
  NaN-free gradients keep them finite; so, at the price of one pass fewer, they
  are the only state that advances on a step skipped for its update alone.
  On finite results this is the identity, so the reference agreement holds.
  """
  ok = ok & jnp.all(jnp.isfinite(step))
  keep = lambda n, o: jnp.where(ok, n, o)
  accumulators = new.mom, new.rms
  state = jax.tree.map(keep, new._replace(mom=old.mom, rms=old.rms), old)
  return jnp.where(ok, step, 0.0), state._replace(mom=accumulators[0], rms=accumulators[1])


def apply_velo(theta, updates, state: VeloState, params, value, *, num_steps: int,
               weight_decay: float):
  """VeLO's update on pytrees: flatten, weight decay, clip, ``velo_update``, unflatten.

  ``value`` is the float32 loss. Not jitted itself: ``scale_by_velo`` jits a
  closure over theta and the flags, so theta stays a compile-time constant.
  """
  g_leaves, treedef = jax.tree.flatten(updates)
  p_leaves = [jnp.asarray(x) for x in jax.tree.leaves(params)]
  layout = make_layout([jnp.shape(x) for x in p_leaves])
  g_leaves = [prepare_grad(g, p, weight_decay) for g, p in zip(g_leaves, p_leaves)]
  # Barrier: materialise the flat arrays once. XLA would otherwise fuse the
  # concatenation into consumers, each element access becoming a select
  # over all leaves.
  g, p = jax.lax.optimization_barrier((layout.flatten(g_leaves), layout.flatten(p_leaves)))
  loss = value
  if weight_decay:  # learned_optimization's WeightDecayWrapper
    loss = loss + jnp.sum(layout.per_tensor_sum(p * p) * jnp.float32(weight_decay))
  fac_moments = factored_grad_moments(layout, g)
  step, state = velo_update(theta, layout, g, p, fac_moments, state, loss, num_steps)
  out = layout.unflatten(step, [x.dtype for x in p_leaves])
  return jax.tree.unflatten(treedef, out), state


def prepare_grad(g, p, weight_decay: float) -> jax.Array:
  """One leaf's float32 gradient with weight decay, clipped and NaN-free.

  Per leaf, so that it fuses into ``Layout.flatten``'s copy instead of being a
  pass of its own. Weight decay (learned_optimization's WeightDecayWrapper)
  comes before the clip. Quirk: gradients are clipped to +-1000 before
  everything else. Guard (not in the reference): the clip maps +-inf to
  +-1000, and a NaN element is zeroed, as mlp does, so one NaN gradient
  cannot poison the moments.
  """
  g = jnp.asarray(g).astype(jnp.float32)
  if weight_decay:
    g = g + jnp.float32(weight_decay) * p.astype(jnp.float32)
  g = jnp.clip(g, -GRAD_CLIP, GRAD_CLIP)
  return jnp.where(jnp.isnan(g), 0.0, g)


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
    base.check_params(params, "velo init")
    return init_velo_state(theta, params, num_steps)

  def update_fn(updates, state, params=None, *, value=None, **extra_args):
    del extra_args  # e.g. a PRNG key: HyperV2 splits one but draws nothing from it.
    base.check_params(params, "velo update")
    base.check_grads(updates, params, "velo update")
    base.check_value(value)
    # One dtype for the loss, so Python floats and arrays share a compilation.
    return apply(updates, state, params, jnp.asarray(value).astype(jnp.float32))

  # Jitted so that eager calls compile once instead of dispatching hundreds of
  # ops; inside the caller's jit/vmap it is simply inlined.
  @jax.jit
  def apply(updates, state, params, value):
    return apply_velo(theta, updates, state, params, value, num_steps=num_steps,
                      weight_decay=weight_decay)

  return empty_leaves.skip_empty_leaves(
      optax.GradientTransformationExtraArgs(init_fn, update_fn), "velo")


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
  # Theta is read only through perturbed.matmul/value, so ES can hand it the
  # shared weights plus per-particle parts (learned_opt/perturbed.py).
  structured_theta: ClassVar[bool] = True

  def __post_init__(self):
    base.check_hparams(self, ints=("lstm_hidden_size", "param_inits", "ff_hidden_size"),
                       counts=("ff_hidden_layers",))

  def init_meta(self, key: base.PRNGKey) -> base.Theta:
    """Fresh theta: haiku-style random weights around a descent prior.

    learned_optimization's HyperV2.init is purely random, which makes a
    fresh theta an optimizer that diverges within tens of steps. Here the
    random part is kept (smaller) and every MLP in the bank also carries the
    same path ``direction = m_0.9 / sqrt(rms)`` (input column 7, through two
    relu units per sign), with controls near 0.01 (so the mixed MLP is that
    path) and a step-size head near 10. A fresh theta thus starts as a
    normalised momentum method with steps of ~1% of each tensor's RMS.
    Loaded checkpoints replace all of it.
    """
    h, k, ff = self.lstm_hidden_size, self.param_inits, self.ff_hidden_size
    f = NUM_LSTM_INPUTS
    keys = jax.random.split(key, 6 + self.ff_hidden_layers + 1)
    widths = [NUM_MLP_INPUTS] + [ff] * self.ff_hidden_layers + [3]
    mlp = {}
    for li in range(len(widths) - 1):
      std = 0.1 / np.sqrt(widths[li])
      shape = (k, widths[li], widths[li + 1])
      w = std * jax.random.truncated_normal(keys[6 + li], -2.0, 2.0, shape, jnp.float32)
      prior = np.zeros(shape[1:], np.float32)
      if li == 0:
        prior[7, 0], prior[7, 1] = 1.0, -1.0  # relu(x), relu(-x) of m_0.9 * rsqrt(rms)
      elif li < len(widths) - 2:
        prior[0, 0], prior[1, 1] = 1.0, 1.0
      else:
        prior[0, 0], prior[1, 0] = 1.0, -1.0  # direction = relu(x) - relu(-x)
      mlp[f"w{li}"] = w + jnp.asarray(prior)[None]
      mlp[f"b{li}"] = jnp.zeros((k, widths[li + 1]), jnp.float32)
    small = lambda lin: {"w": 0.01 * lin["w"], "b": lin["b"]}
    to_controls = small(_haiku_linear(keys[3], h, k))
    to_controls["b"] = jnp.full((k,), 0.01, jnp.float32)  # 100 * mean_k(0.01 W_k) = mean W_k
    step = small(_haiku_linear(keys[4], h, 1))
    return {
        "lstm_init": {"hidden": jnp.zeros((h,), jnp.float32), "cell": jnp.zeros((h,), jnp.float32)},
        "mix": _haiku_linear(keys[0], f, h),
        "lstm_in": _haiku_linear(keys[1], f, h),
        "lstm": _haiku_linear(keys[2], 2 * h, 4 * h),
        "to_controls": to_controls,
        "step_size": {"w": step["w"][:, 0], "b": jnp.float32(10.0)},
        "mlp": mlp,
    }

  def as_optax(self, theta: base.Theta, *, num_steps: int, weight_decay: float = 0.0
               ) -> optax.GradientTransformationExtraArgs:
    """VeLO for a run of ``num_steps`` steps (see ``scale_by_velo``)."""
    num_steps = base.check_num_steps(num_steps)
    base.check_theta(self, theta)
    try:
      wd = float(weight_decay)
    except (TypeError, ValueError):
      wd = math.nan
    if isinstance(weight_decay, (bool, str)) or not (math.isfinite(wd) and wd >= 0.0):
      raise base.LearnedOptimizerError(
          f"weight_decay must be a finite float >= 0, got {weight_decay!r}; pass e.g. "
          "weight_decay=1e-4, or 0.0 for none.")
    theta = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), theta)
    return scale_by_velo(theta, num_steps=num_steps, weight_decay=wd)
