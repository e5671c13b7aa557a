"""LocoProp (Amid, Anil & Warmuth, AISTATS 2022) as a registered baseline.

"LocoProp: Enhancing BackProp via Local Loss Optimization". One forward and
backward pass gives, for every dense layer ``z = a @ W + b`` with output
``f(z)``, a *target* one gradient step away on the loss ``l``::

    target = f(z_t) - gamma * dl/dz_t            (per example)

and each layer then solves its own problem, all layers in parallel from that
same pass::

    min_W  mean_n D_F(z_n(W), f^-1(target_n)) + 1/(2 eta) ||W - W_t||^2

by ``inner_steps`` first-order steps from ``W_t``. ``D_F`` is the Bregman
divergence of ``F``, the convex integral of the transfer ``f`` (the *matching
loss*, LocoProp-M), whose gradient in ``z`` is ``f(z) - target``. So the first
inner gradient step is BackProp's gradient times ``gamma``; later steps differ
because each layer refits its own target with its inputs fixed, which is where
LocoProp gets curvature information (for a linear layer and squared loss the
exact minimiser is ``W_t`` minus a gradient preconditioned by the inputs'
second moment, ``(a a^T / N + I / eta)^-1``). LocoProp-S is the squared loss
``1/2 ||z - (z_t - gamma dl/dz_t)||^2`` on every layer's pre-activations.

The last layer of a classifier is linear and feeds a cross-entropy; its matched
transfer is then the loss's own link (softmax / sigmoid), so its local loss is
the cross-entropy to the target distribution. Activations with no convex
integral (gelu, swish are not monotone) get the squared pre-activation loss.

Defaults (:class:`LocopropConfig`) follow the authors' released code
(google-research ``locoprop/locoprop_training.ipynb``): 10 inner RMSProp steps
(decay 0.9) whose statistics carry over between outer steps, the inner LR
decaying within an outer step as ``lr * max(1 - k / K, 0.25)``, and no explicit
proximity term (``eta = inf``: the few decaying steps keep ``W`` near ``W_t``).
See the config for where this code departs from it, and why.

LocoProp needs the batch and the network's layers inside the update, so it is
not an optax transform (whose update sees only gradients): it has its own
jitted step and segment loop, with :mod:`runner`'s keys, batches, eval and
curves, so its records mean exactly what the other baselines' do.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from meta_train.evaluation import runner
from meta_train.evaluation.base import EvalError, NotApplicable, Params, RunRecord, Setting
from meta_train.evaluation import baselines
from meta_train.evaluation.baselines import ADAM_GRID, register_baseline
from tasks import dense

# Families whose tasks declare ``dense_structure()`` (tests/tasks/test_dense.py).
DENSE_FAMILIES = ("image_mlp", "autoencoder", "deep_autoencoder")


@dataclasses.dataclass(frozen=True)
class LocopropConfig:
  """LocoProp's fixed hyperparameters (hashable: a static jit argument).

  Attributes:
    variant: ``"m"`` (matching losses, LocoProp-M) or ``"s"`` (squared loss on
      pre-activations, LocoProp-S).
    gamma: the target step ``target = f(z) - gamma dl/dz``, with ``l`` the
      task's per-example loss (so gamma does not depend on the batch size).
      1 won a pilot over {0.1, 1, 10} (200 steps, image_mlp and autoencoder
      examples, inner LR tuned); the released code's 10 multiplies a batch-mean
      loss summed over 784 pixels, not comparable units.
    eta: the proximity weight ``1 / (2 eta) ||W - W_t||^2`` (bias included);
      ``inf`` drops it, as the released code does.
    inner_steps: K, the local steps per outer step (released code: 10).
    inner_opt: ``"rmsprop"`` (released code) or ``"gd"``.
    decay: RMSProp's second-moment decay (released code: 0.9). The released
      code also passes momentum 0.999 to TF's RMSProp, carried across outer
      steps; we use none, so each outer step solves the current local problems
      rather than integrating ~100 outer steps' worth of past ones.
    eps: added to RMSProp's root. The released code puts 1e-5 inside the root
      of *batch-summed* gradients; ours are batch means (N times smaller), so
      a smaller eps keeps it from turning RMSProp into plain GD.
    lr_floor: the inner LR decays as ``max(1 - k / K, lr_floor)``.
  """

  variant: str = "m"
  gamma: float = 1.0
  eta: float = math.inf
  inner_steps: int = 10
  inner_opt: str = "rmsprop"
  decay: float = 0.9
  eps: float = 1e-8
  lr_floor: float = 0.25

  def check(self) -> "LocopropConfig":
    if self.variant not in ("m", "s"):
      raise EvalError(f"LocoProp variant must be 'm' or 's', got {self.variant!r}.")
    if self.inner_opt not in ("rmsprop", "gd"):
      raise EvalError(f"LocoProp inner_opt must be 'rmsprop' or 'gd', got {self.inner_opt!r}.")
    if not (self.gamma > 0 and self.eta > 0 and self.inner_steps >= 1):
      raise EvalError(f"LocoProp needs gamma > 0, eta > 0 and inner_steps >= 1, got {self}.")
    return self


# ----------------------------------------------------------------------------
# Matching losses: a transfer f and its convex integral F (F' = f).
# ----------------------------------------------------------------------------


def _logcosh(z):
  # log cosh z = |z| + log(1 + e^{-2|z|}) - log 2, without overflow for large |z|.
  a = jnp.abs(z)
  return a + jax.nn.softplus(-2.0 * a) - math.log(2.0)


def _elu_integral(z):
  return jnp.where(z > 0, 0.5 * z**2, jnp.expm1(jnp.minimum(z, 0.0)) - z)


# Elementwise potentials F, summed over units; "softmax" is row-wise (logsumexp).
_POTENTIALS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "linear": lambda z: 0.5 * jnp.sum(z**2, -1),
    "relu": lambda z: 0.5 * jnp.sum(jax.nn.relu(z)**2, -1),
    "tanh": lambda z: jnp.sum(_logcosh(z), -1),
    "sigmoid": lambda z: jnp.sum(jax.nn.softplus(z), -1),
    "elu": lambda z: jnp.sum(_elu_integral(z), -1),
    "softmax": lambda z: jax.nn.logsumexp(z, -1),
}
MATCHED = tuple(_POTENTIALS)


def transfer(kind: str) -> Callable[[jax.Array], jax.Array]:
  """The transfer function whose integral is ``kind``'s potential."""
  if kind == "softmax":
    return jax.nn.softmax
  return dense.activation(kind)


def matching_loss(kind: str, z: jax.Array, target: jax.Array) -> jax.Array:
  """Per-example ``D_F(z, f^-1(target))`` up to a constant in ``z``: ``F(z) - <target, z>``.

  Its gradient in ``z`` is ``f(z) - target`` (shape ``(N, d)``); the result has
  shape ``(N,)``. The dropped constant ``F*(target)`` needs ``f^-1(target)``,
  which need not exist (a target of 1.2 for tanh), and does not move ``W``.
  """
  return _POTENTIALS[kind](z) - jnp.sum(target * z, -1)


def local_kinds(structure: dense.DenseStructure, variant: str) -> tuple[str, ...]:
  """Each layer's matching loss: its activation's, the output loss's link on a linear
  last layer, and the squared loss where the activation has no convex integral."""
  if variant == "s":
    return ("linear",) * len(structure.layers)
  kinds = [l.activation if l.activation in _POTENTIALS else "linear" for l in structure.layers]
  link = {"softmax_xent": "softmax", "sigmoid_xent": "sigmoid"}.get(structure.loss)
  if link and structure.layers[-1].activation == "linear":
    kinds[-1] = link
  return tuple(kinds)


# ----------------------------------------------------------------------------
# Targets: one forward and backward pass.
# ----------------------------------------------------------------------------


class Trace(NamedTuple):
  """Per layer (lists, input to output): inputs ``a``, pre-activations ``z``, ``dl/dz``."""
  loss: jax.Array
  inputs: list
  pre: list
  grads: list  # of the batch-mean loss


def trace(structure: dense.DenseStructure, params: Params, batch: Any) -> Trace:
  """The batch loss, and every layer's inputs, pre-activations and their loss gradients.

  The gradients come from zero offsets added to each pre-activation (the
  gradient in an offset is the gradient in ``z``), so one reverse pass serves
  all layers, as one BackProp pass does.
  """
  x, y = structure.inputs(batch), structure.targets(batch)

  def loss_of(offsets):
    h, inputs, pre = x, [], []
    for layer, off in zip(structure.layers, offsets):
      p = params[layer.name]
      z = h @ p["kernel"] + p["bias"][None, :] + off
      inputs.append(h)
      pre.append(z)
      h = dense.activation(layer.activation)(z)
    return structure.loss_fn(h, y), (inputs, pre)

  offsets = [jnp.zeros((x.shape[0], params[l.name]["bias"].shape[0]), x.dtype)
             for l in structure.layers]
  (loss, (inputs, pre)), grads = jax.value_and_grad(loss_of, has_aux=True)(offsets)
  return Trace(loss, inputs, pre, grads)


def targets(kinds: tuple[str, ...], tr: Trace, gamma: float) -> list[jax.Array]:
  """``f(z) - gamma dl_n/dz`` per layer; ``l_n`` is example n's loss (N x the batch mean's)."""
  n = tr.inputs[0].shape[0]
  return [transfer(k)(z) - (gamma * n) * g for k, z, g in zip(kinds, tr.pre, tr.grads)]


# ----------------------------------------------------------------------------
# The local problem of one layer, and its inner steps.
# ----------------------------------------------------------------------------


def layer_objective(p: Params, a: jax.Array, target: jax.Array, p0: Params, *, kind: str,
                    eta: float) -> jax.Array:
  """``mean_n matching_loss(z_n) + 1/(2 eta) ||p - p0||^2`` for ``p = {"kernel", "bias"}``."""
  z = a @ p["kernel"] + p["bias"][None, :]
  value = jnp.mean(matching_loss(kind, z, target))
  if math.isfinite(eta):
    sq = sum(jnp.sum((u - v)**2) for u, v in zip(jax.tree.leaves(p), jax.tree.leaves(p0)))
    value = value + (0.5 / eta) * sq
  return value


class InnerState(NamedTuple):
  """RMSProp's second moments of one layer, and the inner steps taken so far."""
  nu: Params
  count: jax.Array  # int32, for the bias correction of nu


def inner_init(p: Params) -> InnerState:
  return InnerState(jax.tree.map(jnp.zeros_like, p), jnp.zeros((), jnp.int32))


def inner_step(p: Params, state: InnerState, a: jax.Array, target: jax.Array, p0: Params,
               lr: jax.Array, *, kind: str, config: LocopropConfig) -> tuple[Params, InnerState]:
  """One local step on ``layer_objective``: GD, or RMSProp with a bias-corrected moment."""
  g = jax.grad(layer_objective)(p, a, target, p0, kind=kind, eta=config.eta)
  if config.inner_opt == "gd":
    return jax.tree.map(lambda u, d: u - lr * d, p, g), state
  count = state.count + 1
  nu = jax.tree.map(lambda v, d: config.decay * v + (1 - config.decay) * d**2, state.nu, g)
  # Debiased as Adam's second moment, so the first steps from nu = 0 are not ~3x too long.
  debias = 1.0 - config.decay ** count.astype(jnp.float32)
  p = jax.tree.map(lambda u, d, v: u - lr * d / (jnp.sqrt(v / debias) + config.eps), p, g, nu)
  return p, InnerState(nu, count)


def inner_lr_factors(config: LocopropConfig) -> np.ndarray:
  """The released code's within-step decay, ``max(1 - k / K, floor)`` for ``k < K``."""
  k = np.arange(config.inner_steps)
  return np.maximum(1.0 - k / config.inner_steps, config.lr_floor).astype(np.float32)


def solve_layer(p0: Params, state: InnerState, a: jax.Array, target: jax.Array, lr: jax.Array,
                *, kind: str, config: LocopropConfig) -> tuple[Params, InnerState]:
  """``config.inner_steps`` local steps from ``p0``."""
  factors = jnp.asarray(inner_lr_factors(config))

  def body(k, carry):
    p, s = carry
    return inner_step(p, s, a, target, p0, lr * factors[k], kind=kind, config=config)

  return jax.lax.fori_loop(0, config.inner_steps, body, (p0, state))


# ----------------------------------------------------------------------------
# The optimizer: (init, update) over explicit state.
# ----------------------------------------------------------------------------


class LocopropState(NamedTuple):
  """Per layer name, that layer's inner optimizer state."""
  inner: dict[str, InnerState]


def init(params: Params) -> LocopropState:
  return LocopropState({k: inner_init(v) for k, v in params.items()})


def update(params: Params, state: LocopropState, batch: Any, lr: jax.Array, *,
           structure: dense.DenseStructure,
           config: LocopropConfig) -> tuple[Params, LocopropState, jax.Array]:
  """One LocoProp step on ``batch``: ``(new params, new state, loss at the old params)``.

  Every layer's problem uses the same forward pass and none reads another's new
  weights, so the layers are independent programs (parallel, as in the paper).
  """
  tr = trace(structure, params, batch)
  kinds = local_kinds(structure, config.variant)
  new, inner = dict(params), dict(state.inner)
  for layer, kind, a, t in zip(structure.layers, kinds, tr.inputs,
                               targets(kinds, tr, config.gamma)):
    new[layer.name], inner[layer.name] = solve_layer(
        params[layer.name], state.inner[layer.name], a, t, lr, kind=kind, config=config)
  return new, LocopropState(inner), tr.loss


# ----------------------------------------------------------------------------
# Runs: runner's segments, keys and curves, with LocoProp's step.
# ----------------------------------------------------------------------------


def dense_structure(task: Any) -> dense.DenseStructure:
  """The task's dense structure, or an :class:`EvalError` saying why LocoProp cannot run.

  A task with no structure raises :class:`NotApplicable` (LocoProp cannot run on
  it by design), so an evaluation records the reason and goes on.
  """
  structure = task.dense_structure()
  if structure is None:
    raise NotApplicable(
        f"locoprop needs the task's network as a stack of dense layers (task.dense_structure()) "
        f"to set per-layer targets and local losses, and {task.name} declares none (convolutions, "
        "recurrences, attention, reparameterised wrappers and the quadratic are not dense "
        f"stacks). Families that declare one: {', '.join(DENSE_FAMILIES)}; run locoprop on "
        "those, or return a tasks.dense.DenseStructure from your task's dense_structure().")
  names = {l.name for l in structure.layers}
  groups = set(jax.eval_shape(task.init, jax.random.key(0)))
  if names != groups:
    raise EvalError(f"{task.name}'s dense structure names layers {sorted(names)} but its "
                    f"parameters are {sorted(groups)}; LocoProp updates every parameter through "
                    "its layer, so the two must match (fix dense_structure()).")
  return structure


def _init(lrs, task, key):
  params = jax.vmap(lambda _: task.init(key))(lrs)
  return params, jax.vmap(init)(params)


def _segment(lrs, task, key, params, state, start, *, config, length):
  """Steps ``start .. start + length - 1`` for each LR (leading axis) of the grid."""
  structure = task.dense_structure()

  def one(lr, params, state):
    def body(carry, t):
      # The same batch keys as runner._segment: common random numbers with every baseline.
      k_batch, _ = jax.random.split(jax.random.fold_in(key, t))
      params, state, loss = update(*carry, task.sample_batch(k_batch, "train"), lr,
                                   structure=structure, config=config)
      return (params, state), loss

    (params, state), losses = jax.lax.scan(body, (params, state),
                                           start + jnp.arange(length, dtype=jnp.int32))
    return params, state, losses

  return jax.vmap(one)(lrs, params, state)


_init_many = jax.jit(_init)
_segment_many = jax.jit(_segment, static_argnames=("config", "length"))
_eval_many = jax.jit(lambda task, params, key, *, num_batches: jax.vmap(
    lambda p: runner.eval_loss(task, p, key, num_batches))(params),
                     static_argnames=("num_batches",))


def run_grid(task: Any, seed: int, setting: Setting, lrs: list[float],
             config: LocopropConfig = LocopropConfig()) -> list[RunRecord]:
  """One LocoProp run per inner LR in ``lrs``, as one vmapped program (as ``runner.run_many``).

  Each record is one run: ``steps = num_steps``, the time split evenly.
  """
  dense_structure(task)
  config.check()
  timer = runner.Timer()
  k_init, k_train, k_eval = runner.run_keys(seed)
  hp = jnp.asarray(lrs, jnp.float32)
  params, state = timer.call(_init_many, {}, hp, task, k_init)
  losses, evals = [], []
  for c in range(setting.num_chunks):
    params, state, seg = timer.call(_segment_many, dict(config=config, length=setting.chunk),
                                    hp, task, k_train, params, state, jnp.int32(c * setting.chunk))
    losses.append(np.asarray(seg))
    if (c + 1) * setting.chunk in setting.eval_steps():
      evals.append(np.asarray(timer.call(_eval_many, dict(num_batches=setting.eval_batches),
                                         task, params, k_eval)))
  train, train_steps = runner.window_means(np.concatenate(losses, -1), setting.num_points)
  evals = np.stack(evals, -1).tolist()
  return [RunRecord(train=train[i], train_steps=train_steps, eval=evals[i],
                    eval_steps=list(setting.eval_steps()), steps=setting.num_steps,
                    compile_s=timer.compile_s / len(lrs), run_s=timer.run_s / len(lrs))
          for i in range(len(lrs))]


def best_of(records: list[RunRecord], lrs: list[float], setting: Setting,
            config: LocopropConfig, structure: dense.DenseStructure) -> RunRecord:
  """The run of lowest final training loss, charged for the whole grid (``baselines.best_run``)."""
  rec = baselines.best_run(records, lrs, setting)
  rec.extra = {"inner_lr": rec.extra["lr"], "trials": rec.extra["trials"],
               "local_losses": dict(zip([l.name for l in structure.layers],
                                        local_kinds(structure, config.variant))),
               "config": dataclasses.asdict(config)}
  return rec


@register_baseline(
    "locoprop", "LocoProp-M (Amid et al. 2022): per-layer targets f(z) - gamma dl/dz "
    "(gamma 1, per-example loss) from one forward/backward pass, each layer's matching "
    "(Bregman) loss of its transfer (softmax/sigmoid link on a linear output layer; squared "
    "pre-activation loss for gelu/swish) solved in parallel by 10 RMSProp steps (decay 0.9, "
    "LR decaying to 0.25x within a step; the released code's schedule), no proximity term "
    "(eta = inf, as released); best inner LR of Adam's 14-point grid by final training loss. "
    "Dense-stack tasks only (image_mlp, autoencoder, deep_autoencoder)",
    "14 runs (inner-LR grid)")
def locoprop_baseline(task: Any, seed: int, setting: Setting) -> RunRecord:
  structure, config, lrs = dense_structure(task), LocopropConfig(), list(ADAM_GRID)
  return best_of(run_grid(task, seed, setting, lrs, config), lrs, setting, config, structure)
