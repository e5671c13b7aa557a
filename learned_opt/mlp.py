"""``mlp``: a per-parameter MLP learned optimizer (small_fc_lopt style).

Metz et al. 2022, "Practical tradeoffs between memory, compute, and performance
in learned optimizers". One MLP, shared by all parameters, reads each
parameter's features (gradient, value, 3 momenta, normalised momenta, an
Adafactor-normalised gradient; see :func:`features.element_features`) plus the
training-fraction and loss features (folded into its first bias, so they cost
nothing per element) and outputs a direction and a log-magnitude.

Init: He init for hidden layers, output layer x``out_init`` (0.01), ``log_lr = 0`` and the
Adam-direction skip of :mod:`per_param_mlp`: untrained, it behaves like a
per-tensor-normalised Adam at ``step_mult`` (1e-3) and trains stably.
State: 3 momenta + 1 second moment per parameter + factored rows/columns
(~4 floats per parameter on an MLP; see docs/benchmarks.md).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from learned_opt import base, features, per_param_mlp, step_scale
from learned_opt.registry import register

_GLOBAL = features.NUM_TIME_FEATURES + features.NUM_LOSS_FEATURES


@register("mlp")
@dataclasses.dataclass(frozen=True)
class MLPLOpt(base.LearnedOptimizer):
  """Per-parameter MLP.

  Attributes:
    hidden_size: width of each hidden layer.
    hidden_layers: number of hidden layers.
    step_mult: base step size; with ``step_scale="fixed"`` the untrained
      optimizer's effective Adam LR, otherwise a multiplier of that scale.
    step_scale: what the step is relative to (:mod:`learned_opt.step_scale`):
      "fixed", "param_rms" (each tensor's parameter RMS), "distance"
      (Prodigy's online estimate of the distance to the solution) or
      "prodigy" (a learned residual on Prodigy's own update: untrained, with
      ``step_mult=1``, it is ``optax.contrib.prodigy``; 4 more floats/param) or
      "prodigy_muon" (the same with Muon's orthogonalised direction on matrices).
    schedule: a learned global step multiplier from the time and loss
      features (adds ``theta["schedule_w"]``).
    schedule_inputs: what the learned schedule reads: "time_loss" (the
      training-fraction and loss features, the shipped thetas) or "time" (the
      training fraction only: a learned LR schedule that cannot react to the
      loss; ``theta["schedule_w"]`` then has ``NUM_TIME_FEATURES`` entries).
      v7's loss inputs lower the step on ill-conditioned quadratics, whose loss
      falls fast against its averages (docs/pretrained.md, tenth round).
    split_d: with a Prodigy ``step_scale``, one ``d`` estimate for the matrices
      and one for every other tensor instead of one for all (2 more floats of
      state in all). A bias then steps by what Prodigy finds for the biases,
      not by the matrices' distance; a tree with no matrices (a quadratic) gets
      plain Prodigy exactly (tested).
    vector_step: a learned step multiplier ``exp(theta["vector_log_lr"])`` on
      every tensor that is not a matrix (biases, scales, and a quadratic's
      parameter vector), 1 at init. Muon's users give those tensors their own
      Adam LR; here Prodigy's one ``d`` serves both, and the held-out-style
      quadratics want about 2x it while image nets do not (docs/pretrained.md,
      ninth round).
    decay: a fixed decay of the step over the run, "none", "cosine" or
      "wsd" (constant, then linear over the last 20%; both reach 0 at
      ``num_steps``; with a Prodigy scale, untrained and at ``out_init=0``,
      the rule is Prodigy with that LR schedule).
    out_init: scale of the last layer at init (times He's). 0 starts the rule
      exactly at its base: with step_scale "prodigy"/"prodigy_muon", the
      LR-free rule itself, which scores better untrained than the default's
      small random residual (docs/pretrained.md).
    learn_direction: where the MLP adds a learned direction to the base one:
      "all" (the shipped thetas), "matrices" (dense and conv kernels only) or
      "none" (it keeps only its log-magnitude head, one output, so the step
      is the base direction times a learned per-element size). Where the
      MLP adds none, the step vanishes where the base direction does (a
      first step from a zero gradient is zero; tested). The additive
      direction does not: its bias and global-feature terms are a drift that
      does not vanish at a minimum, and an ill-conditioned quadratic's flat
      directions amplify a drift by 1/curvature (it stalled
      `mlp-prodigy-muon-cosine-cpu-v4`, which learned it on every tensor, at
      35x tuned Adam's loss; docs/pretrained.md, sixth round).
  """

  hidden_size: int = 16
  hidden_layers: int = 1
  step_mult: float = 1e-3
  step_scale: str = "fixed"
  schedule: bool = False
  out_init: float = 0.01
  decay: str = "none"
  learn_direction: str = "all"
  vector_step: bool = False
  vector_step_init: float = 0.0
  split_d: bool = False
  schedule_inputs: str = "time_loss"

  def __post_init__(self):
    base.check_hparams(self, ints=("hidden_size", "hidden_layers"), positive=("step_mult",),
                       bools=("schedule", "vector_step", "split_d"),
                       ranges={"out_init": (0.0, 1.0), "vector_step_init": (-3.0, 3.0)},
                       choices={"step_scale": step_scale.STEP_SCALES, "decay": step_scale.DECAYS,
                                "learn_direction": step_scale.DIRECTIONS,
                                "schedule_inputs": step_scale.SCHEDULE_INPUTS})
    if self.vector_step_init != 0.0 and not self.vector_step:
      raise base.LearnedOptimizerError(
          f"mlp.vector_step_init={self.vector_step_init!r} needs vector_step=True (it is the "
          "init of theta['vector_log_lr'], which only vector_step adds); set both or neither.")
    if self.split_d and self.step_scale not in step_scale.PRODIGY_SCALES:
      raise base.LearnedOptimizerError(
          f"mlp.split_d=True splits Prodigy's d estimate, but step_scale={self.step_scale!r} has "
          f"none; use step_scale in {step_scale.PRODIGY_SCALES} or split_d=False.")

  def init_meta(self, key: base.PRNGKey) -> base.Theta:
    k1, k2 = jax.random.split(key)
    sizes = (features.NUM_ELEMENT_FEATURES,) + (self.hidden_size,) * self.hidden_layers + (
        (1,) if self.learn_direction == "none" else (2,))
    theta = {
        "mlp": per_param_mlp.init_layers(k1, sizes, out_scale=self.out_init),
        "global_w": jax.random.normal(k2, (_GLOBAL, self.hidden_size), jnp.float32)
                    * np.sqrt(1.0 / _GLOBAL),
        "log_lr": jnp.zeros([], jnp.float32),
    }
    if self.schedule:
      n = _GLOBAL if self.schedule_inputs == "time_loss" else features.NUM_TIME_FEATURES
      theta["schedule_w"] = jnp.zeros((n,), jnp.float32)
    if self.vector_step:
      theta["vector_log_lr"] = jnp.full([], self.vector_step_init, jnp.float32)
    return theta

  def as_optax(self, theta: base.Theta, *, num_steps: int) -> optax.GradientTransformationExtraArgs:
    num_steps = base.check_num_steps(num_steps)
    base.check_theta(self, theta)
    lr = self.step_mult * jnp.exp(theta["log_lr"])

    def init_extra(layout, p):
      del layout
      if self.step_scale in step_scale.PRODIGY_SCALES:
        return step_scale.init_prodigy(p, split=self.split_d)
      return step_scale.init_distance(p) if self.step_scale == "distance" else ()

    def step_fn(layout, extra, stats, x, time, loss_feats, g, p):
      # 1.0 on matrix elements: a trace-time constant, built once for the options that use it.
      mat = (step_scale.matrix_mask(layout) if self.split_d or self.vector_step
             or self.learn_direction == "matrices" else None)
      bias = jnp.concatenate([time, loss_feats]) @ theta["global_w"]
      out = per_param_mlp.apply(theta["mlp"], x, first_bias=bias)
      if self.learn_direction == "none":  # the one output is the magnitude
        out = [jnp.zeros_like(out[0]), out[0]]
      elif self.learn_direction == "matrices":
        out = [out[0] * mat, out[1]]
      sched = step_scale.decay(self.decay, time[0])  # time[0] is the training fraction
      scale, skip = lr * sched, None
      if self.step_scale == "param_rms":
        scale = scale * step_scale.param_rms(layout, stats[:, 1])
      elif self.step_scale == "distance":
        extra = step_scale.update_distance(extra, g, p)
        scale = scale * extra.d
      elif self.step_scale in step_scale.PRODIGY_SCALES:
        # Prodigy's direction (Muon's on matrices) replaces the Adam-direction skip.
        extra, d, skip = step_scale.update_prodigy(extra, g, p, sched,
                                                   mat if self.split_d else None)
        if self.step_scale == "prodigy_muon":
          skip = step_scale.muon_direction(layout, extra.m, skip)
        scale = scale * d
      if self.schedule:
        scale = scale * step_scale.schedule(
            theta["schedule_w"], time, loss_feats if self.schedule_inputs == "time_loss" else None)
      if self.vector_step:
        scale = scale * jnp.exp(theta["vector_log_lr"] * (1.0 - mat))
      return per_param_mlp.step_from_outputs(out, x, scale, skip), extra

    return per_param_mlp.flat_transform("mlp", num_steps, init_extra, step_fn)
