"""``adam_hparams``: a learned controller of Adam's hyperparameters.

A small MLP reads the training-fraction embedding and loss features and emits
Adam's learning rate, beta1 and beta2 at every step. It is a learned schedule,
the learned counterpart of an LR range test plus SGDR, with few enough
meta-parameters that its ES gradient can be checked against ``jax.grad``.

Init: the output layer's bias encodes Adam(lr=``init_lr``, 0.9, 0.999) and its
weights are small (0.01), so an untrained theta *is* (nearly) Adam at
``init_lr`` and trains any model stably. State: Adam's two moments (2 floats per
parameter) plus a few scalars.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from learned_opt import base, features, perturbed
from learned_opt.registry import register

_IN = features.NUM_TIME_FEATURES + features.NUM_LOSS_FEATURES
LOG_LR_CLIP = (-20.0, 2.0)  # the controller's learning rates: e^-20 .. e^2


class AdamHParamsState(NamedTuple):
  count: jax.Array  # int32 step
  mu: optax.Updates
  nu: optax.Updates
  beta_prods: jax.Array  # (2,) running products of beta1, beta2 for bias correction
  loss: features.LossState


def _logit(p: float) -> float:
  return float(np.log(p / (1.0 - p)))


@register("adam_hparams")
@dataclasses.dataclass(frozen=True)
class AdamHParams(base.LearnedOptimizer):
  """Learned Adam schedule.

  Attributes:
    hidden_size: width of the controller's hidden layer.
    init_lr: learning rate an untrained theta uses.
    learn_betas: whether the controller may move beta1/beta2 from 0.9/0.999.
  """

  hidden_size: int = 16
  init_lr: float = 1e-3
  learn_betas: bool = True
  structured_theta: ClassVar[bool] = True

  def __post_init__(self):
    # The controller clips its log-LR to [-20, 2] (see ``controls``): an init_lr
    # outside that range would silently run at the clipped value instead.
    base.check_hparams(self, ints=("hidden_size",),
                       ranges={"init_lr": (float(np.exp(LOG_LR_CLIP[0])),
                                           float(np.exp(LOG_LR_CLIP[1])))},
                       bools=("learn_betas",))

  def init_meta(self, key: base.PRNGKey) -> base.Theta:
    k1, k2 = jax.random.split(key)
    h = self.hidden_size
    return {
        "w1": jax.random.normal(k1, (_IN, h), jnp.float32) / np.sqrt(_IN),
        "b1": jnp.zeros((h,), jnp.float32),
        "w2": 0.01 * jax.random.normal(k2, (h, 3), jnp.float32) / np.sqrt(h),
        "b2": jnp.array([np.log(self.init_lr), _logit(0.9), _logit(0.999)], jnp.float32),
    }

  def as_optax(self, theta: base.Theta, *, num_steps: int) -> optax.GradientTransformationExtraArgs:
    num_steps = base.check_num_steps(num_steps)
    base.check_theta(self, theta)
    return _scale_by_adam_hparams(self, theta, num_steps)


def controls(arch: AdamHParams, theta: base.Theta, inputs: jax.Array) -> jax.Array:
  """``(lr, beta1, beta2)`` from the controller inputs."""
  # Through perturbed.matmul/value, so ES can pass perturbations as parts.
  b2 = perturbed.value(theta["b2"])
  hid = jax.nn.relu(perturbed.matmul(inputs, theta["w1"]) + perturbed.value(theta["b1"]))
  out = perturbed.matmul(hid, theta["w2"]) + b2
  lr = jnp.exp(jnp.clip(out[0], *LOG_LR_CLIP))
  if not arch.learn_betas:
    out = b2
  # Keep beta2 away from 1 so bias correction stays well conditioned.
  return lr, jax.nn.sigmoid(out[1]), jnp.minimum(jax.nn.sigmoid(out[2]), 0.9999)


def adam_leaf(g: jax.Array, m: jax.Array, v: jax.Array, lr: jax.Array, b1: jax.Array,
              b2: jax.Array, prods: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """One Adam step of a leaf: ``(update, new m, new v)``; ``prods`` are this step's beta products.

  An element whose new moments or update would not be finite (a NaN or inf
  gradient, or one so large, like 1e30, that its square is inf in float32)
  keeps its old moments and gets a zero update: otherwise one such element is
  NaN for good, or its inf second moment freezes it at a zero step. Where all
  is finite this is plain Adam, bit for bit.
  """
  m_new = b1 * m + (1.0 - b1) * g
  v_new = b2 * v + (1.0 - b2) * jnp.square(g)
  u = -lr * (m_new / (1.0 - prods[0])) / (jnp.sqrt(v_new / (1.0 - prods[1])) + 1e-8)
  ok = jnp.isfinite(m_new) & jnp.isfinite(v_new) & jnp.isfinite(u)
  return jnp.where(ok, u, 0.0), jnp.where(ok, m_new, m), jnp.where(ok, v_new, v)


def _scale_by_adam_hparams(arch: AdamHParams, theta: base.Theta,
                           num_steps: int) -> optax.GradientTransformationExtraArgs:

  def init_fn(params):
    base.check_params(params, "adam_hparams init")
    zeros = lambda p: jnp.zeros(jnp.shape(p), jnp.float32)
    return AdamHParamsState(
        count=jnp.zeros([], jnp.int32), mu=jax.tree.map(zeros, params),
        nu=jax.tree.map(zeros, params), beta_prods=jnp.ones((2,), jnp.float32),
        loss=features.init_loss_state())

  def update_fn(updates, state, params=None, *, value=None, **extra_args):
    del extra_args
    base.check_params(params, "adam_hparams update")
    base.check_grads(updates, params, "adam_hparams update")
    base.check_value(value)
    loss_state, clean = features.update_loss_state(state.loss, value)
    inputs = jnp.concatenate([features.time_features(state.count, num_steps),
                              features.loss_features(loss_state, clean)])
    lr, b1, b2 = controls(arch, theta, inputs)
    prods = state.beta_prods * jnp.stack([b1, b2])
    leaf = lambda g, m, v: adam_leaf(g.astype(jnp.float32), m, v, lr, b1, b2, prods)
    out = jax.tree.map(leaf, updates, state.mu, state.nu)
    pick = lambda i: jax.tree.map(lambda _, o: o[i], params, out)
    new = jax.tree.map(lambda u, p: u.astype(jnp.result_type(p)), pick(0), params)
    return new, AdamHParamsState(count=state.count + 1, mu=pick(1), nu=pick(2),
                                 beta_prods=prods, loss=loss_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
