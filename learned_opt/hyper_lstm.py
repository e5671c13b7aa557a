"""``hyper_lstm``: a VeLO-style hypernetwork learned optimizer.

After VeLO (Metz, Harrison et al. 2022): a per-tensor LSTM reads tensor-level
statistics (training-fraction embedding, loss features, log-RMS of the
parameters, gradients and momentum, and a one-hot of the rank) and emits, per
tensor, (a) mixing coefficients over a bank of ``bank_size`` small
per-parameter MLPs, giving that tensor's own MLP, and (b) a log learning-rate
multiplier. The mixed MLP maps each parameter's features to its step.

Efficient by design: all tensors form one LSTM batch, per-tensor statistics
are segment reductions over one flat vector, and the mixed per-tensor MLP is
applied with gathers fused into one loop (see :mod:`per_param_mlp`), so the
compiled graph does not grow with the number of tensors.

Init: mixing coefficients start at ``1/bank_size`` (the bank average), the
bank's output layers are x0.01 and the LR head is zero, so an untrained
optimizer is the Adam-direction skip at ``step_mult`` and trains stably.
State: as ``mlp`` plus an LSTM state of ``2 * lstm_size`` floats per tensor.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from learned_opt import base, features, flat, per_param_mlp
from learned_opt.registry import register

_LSTM_IN = features.NUM_TIME_FEATURES + features.NUM_LOSS_FEATURES + features.NUM_TENSOR_FEATURES


def lstm_cell(w: jax.Array, b: jax.Array, x: jax.Array, h: jax.Array,
              c: jax.Array) -> tuple[jax.Array, jax.Array]:
  """A standard LSTM cell on a batch of rows; +1 forget bias keeps memory at init."""
  i, g, f, o = jnp.split(jnp.concatenate([x, h], axis=1) @ w + b[None], 4, axis=1)
  c = jax.nn.sigmoid(f + 1.0) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
  return jax.nn.sigmoid(o) * jnp.tanh(c), c


@register("hyper_lstm")
@dataclasses.dataclass(frozen=True)
class HyperLSTM(base.LearnedOptimizer):
  """Per-tensor LSTM hypernetwork over a bank of per-parameter MLPs.

  Attributes:
    lstm_size: LSTM hidden size (VeLO: 512).
    bank_size: number of per-parameter MLPs in the bank (VeLO: 256).
    mlp_hidden: hidden width of the per-parameter MLPs (VeLO: 4).
    mlp_layers: hidden layers of the per-parameter MLPs (VeLO: 2).
    step_mult: base step size.
  """

  lstm_size: int = 64
  bank_size: int = 16
  mlp_hidden: int = 4
  mlp_layers: int = 1
  step_mult: float = 1e-3

  def __post_init__(self):
    base.check_hparams(self, ints=("lstm_size", "bank_size", "mlp_hidden", "mlp_layers"),
                       positive=("step_mult",))

  def init_meta(self, key: base.PRNGKey) -> base.Theta:
    k_lstm, k_bank, k_ctl = jax.random.split(key, 3)
    h, k = self.lstm_size, self.bank_size
    sizes = (features.NUM_ELEMENT_FEATURES,) + (self.mlp_hidden,) * self.mlp_layers + (2,)
    return {
        "lstm_w": jax.random.normal(k_lstm, (_LSTM_IN + h, 4 * h), jnp.float32)
                  / np.sqrt(_LSTM_IN + h),
        "lstm_b": jnp.zeros((4 * h,), jnp.float32),
        "lstm_init": jnp.zeros((2, h), jnp.float32),
        "controls_w": 0.01 * jax.random.normal(k_ctl, (h, k), jnp.float32) / np.sqrt(h),
        "controls_b": jnp.full((k,), 1.0 / k, jnp.float32),
        "lr_w": jnp.zeros((h, 1), jnp.float32),
        "lr_b": jnp.zeros((1,), jnp.float32),
        "bank": per_param_mlp.init_layers(k_bank, sizes, lead=(k,)),
    }

  def as_optax(self, theta: base.Theta, *, num_steps: int) -> optax.GradientTransformationExtraArgs:
    num_steps = base.check_num_steps(num_steps)
    base.check_theta(self, theta)

    def init_extra(layout: flat.Layout, p: jax.Array):
      del p
      t = layout.num_tensors
      return (jnp.broadcast_to(theta["lstm_init"][0], (t, self.lstm_size)),
              jnp.broadcast_to(theta["lstm_init"][1], (t, self.lstm_size)))

    def step_fn(layout, extra, stats, x, time, loss_feats, g, p):
      del g, p
      t = layout.num_tensors
      glob = jnp.broadcast_to(jnp.concatenate([time, loss_feats]), (t, time.shape[0] + loss_feats.shape[0]))
      inp = jnp.concatenate([glob, features.tensor_features(layout, stats)], axis=1)
      hid, cell = lstm_cell(theta["lstm_w"], theta["lstm_b"], inp, *extra)
      mix = hid @ theta["controls_w"] + theta["controls_b"][None]  # (T, K)
      layers = jax.tree.map(lambda w: jnp.tensordot(mix, w, axes=1), theta["bank"])
      out = per_param_mlp.apply(layers, x, layout=layout)
      log_lr = jnp.clip(hid @ theta["lr_w"] + theta["lr_b"][None], -10.0, 3.0)[:, 0]
      lr = self.step_mult * flat.to_blocks(layout, jnp.exp(log_lr))
      return per_param_mlp.step_from_outputs(out, x, lr), (hid, cell)

    return per_param_mlp.flat_transform("hyper_lstm", num_steps, init_extra, step_fn)
