"""K-FAC (Martens & Grosse 2015, "Optimizing Neural Networks with Kronecker-factored
Approximate Curvature") as a baseline, through DeepMind's kfac-jax.

K-FAC preconditions each dense layer's gradient with the inverse of a
Kronecker-factored block of the curvature, ``(A + pi sqrt(l) I)^-1 (x) (G + sqrt(l)/pi I)^-1``,
where ``A = E[a a^T]`` are the second moments of the layer's inputs (with a 1
for the bias), ``G = E[g g^T]`` those of the loss's curvature back-propagated to
the layer's pre-activations, and ``l`` the damping. It needs more of a task than
``task.loss``: the layers and the output loss as a named kind, which a dense
stack declares through ``task.dense_structure()`` (``tasks/dense.py``). The loss
K-FAC trains is rebuilt from that structure with :func:`tasks.dense.forward`
(equal to ``task.loss``, as ``tests/tasks/test_dense.py`` checks for every
declaring family), its output loss registered with kfac-jax at the task's
normalisation, and its layers found by kfac-jax's graph matcher.

Hyperparameters: Martens & Grosse's own tuning-free setting, one run. The
learning rate and momentum are chosen every step by minimising the damped
quadratic model on the batch, and the damping by the Levenberg-Marquardt rule
every 5 steps (decay 0.95 per step); the initial damping is their 150 for the
deep autoencoders, whose loss sums over outputs, divided by the number of
outputs for the per-output mean losses here (the damping follows the scale of
the objective); inverses every 5 steps, curvature EMA 0.95, 5 burn-in
curvature passes, kfac-jax's default GGN estimator (``ggn_curvature_prop``:
for these matching losses the GGN is the Fisher), no L2 (every baseline
optimises the task's own loss). See :data:`HPARAMS`.

kfac-jax is an optional extra (``pip install -e '.[kfac]'``): without it this
module still imports and the baseline stays registered, and a run says how to
install it. Its newest release (0.0.8) predates a JAX 0.9.2 change to
``Primitive.get_bind_params`` that breaks its graph matcher; the one function
affected is replaced here for that release only (see :func:`_eval_jaxpr_eqn`).
"""

from __future__ import annotations

import contextlib
import itertools
import time
import warnings
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import source_info_util

from meta_train.evaluation import runner
from meta_train.evaluation.base import EvalError, NotApplicable, Params, RunRecord, Setting
from meta_train.evaluation.baselines import register_baseline
from tasks import dense

try:
  import kfac_jax
except ImportError:  # the optional extra is not installed: kfac_run says how to add it
  kfac_jax = None


def _eval_jaxpr_eqn(eqn: Any, in_values: list[Any]) -> list[Any]:
  """kfac-jax's ``tag_graph_matcher.eval_jaxpr_eqn`` for JAX >= 0.9.2.

  That JAX folds a primitive's sub-functions into the params that
  ``get_bind_params`` returns (as ``jax._src.core.eval_jaxpr`` binds them), where
  kfac-jax 0.0.8, the newest release, still unpacks ``(subfuns, params)`` and
  fails with "ValueError: too many values to unpack (expected 2)" on its first
  trace. kfac-jax's main branch has the fix (its commit 222c299, unreleased).
  """
  params = eqn.primitive.get_bind_params(eqn.params)
  with source_info_util.user_context(eqn.source_info.traceback):
    out = eqn.primitive.bind(*in_values, **params)
  return out if isinstance(out, list) else [out]


def _jax_version() -> tuple[int, ...]:
  return tuple(int(x) for x in jax.__version__.split(".")[:3] if x.isdigit())


# Only the release known to need it, only on a JAX that breaks it: a later kfac-jax is used as is.
if kfac_jax is not None and kfac_jax.__version__ == "0.0.8" and _jax_version() >= (0, 9, 2):
  kfac_jax.tag_graph_matcher.eval_jaxpr_eqn = _eval_jaxpr_eqn

INSTALL = "pip install -e '.[kfac]'"
# The built-in families whose tasks declare a dense structure (tests/evaluation/test_kfac.py
# checks this against the registry, so the refusal's list stays true).
DENSE_FAMILIES = ("image_mlp", "autoencoder", "deep_autoencoder")
# Martens & Grosse's initial damping for the deep autoencoders, per example of a loss that
# sums over outputs; scaled to each task's loss by output_weight.
INITIAL_DAMPING = 150.0
HPARAMS = dict(
    use_adaptive_learning_rate=True, use_adaptive_momentum=True, use_adaptive_damping=True,
    damping_adaptation_interval=5, damping_adaptation_decay=0.95, min_damping=1e-5,
    max_damping=1e3, inverse_update_period=5, curvature_ema=0.95, num_burnin_steps=5,
    estimation_mode="ggn_curvature_prop", l2_reg=0.0)
# JAX's compile-time events: tracing, lowering to MLIR and the XLA compile.
_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")


def require_structure(task: Any) -> dense.DenseStructure:
  """``task.dense_structure()``, or :class:`NotApplicable` saying why K-FAC cannot run."""
  structure = task.dense_structure()
  if structure is None:
    raise NotApplicable(
        f"kfac: {task.name} declares no dense structure (task.dense_structure() is None: "
        "it is not a plain stack of dense layers with a named output loss, e.g. a "
        "convolution, a recurrence, attention, a quadratic or a wrapped task), and K-FAC "
        "needs each layer's inputs and the output loss. Families that declare one: "
        f"{', '.join(DENSE_FAMILIES)}.")
  return structure


def require_kfac_jax() -> Any:
  if kfac_jax is None:
    raise EvalError(f"the kfac baseline needs kfac-jax, which is not installed; run `{INSTALL}`.")
  return kfac_jax


def output_weight(kind: str, outputs: jax.Array) -> float:
  """What kfac-jax's per-example *sum* over outputs is multiplied by to give the task's loss.

  The elementwise losses are means over outputs too (``tasks.dense.output_loss``);
  softmax cross-entropy is one term per example.
  """
  return 1.0 if kind == "softmax_xent" else 1.0 / outputs.shape[-1]


def register_output_loss(kind: str, outputs: jax.Array, targets: jax.Array) -> None:
  """Tells kfac-jax the output loss of ``tasks.dense.output_loss(kind, ...)``."""
  weight = output_weight(kind, outputs)
  if kind == "mse":
    kfac_jax.register_squared_error_loss(outputs, targets, weight=weight)
  elif kind == "sigmoid_xent":
    kfac_jax.register_sigmoid_cross_entropy_loss(outputs, targets, weight=weight)
  elif kind == "softmax_xent":
    kfac_jax.register_softmax_cross_entropy_loss(outputs, targets, weight=weight)
  else:
    raise EvalError(f"kfac: no kfac-jax registration for output loss {kind!r}; valid: "
                    f"{list(dense.LOSS_KINDS)}.")


def registered_loss(structure: dense.DenseStructure) -> Callable[[Params, Any], jax.Array]:
  """``(params, batch) -> loss``: the structure's loss, its output registered with kfac-jax."""

  def loss(params: Params, batch: Any) -> jax.Array:
    targets = structure.targets(batch)
    outputs, _ = dense.forward(structure, params, structure.inputs(batch))
    register_output_loss(structure.loss, outputs, targets)
    return structure.loss_fn(outputs, targets)

  return loss


def make_optimizer(structure: dense.DenseStructure, initial_damping: float) -> Any:
  """kfac-jax's optimizer on the structure's loss, with :data:`HPARAMS`."""
  require_kfac_jax()
  return kfac_jax.Optimizer(
      value_and_grad_func=jax.value_and_grad(registered_loss(structure)),
      initial_damping=initial_damping, multi_device=False, **HPARAMS)


def check_registrations(structure: dense.DenseStructure, params: Params, batch: Any) -> None:
  """Every layer must be a Kronecker-factored dense block, not a generic (diagonal) fallback.

  Traced by a fresh estimator over the same loss: the optimizer's own is private.
  """
  estimator = kfac_jax.BlockDiagonalCurvature(registered_loss(structure))
  estimator.finalize((params, batch))
  kinds = [type(b).__name__ for b in estimator.blocks]
  if kinds != ["DenseTwoKroneckerFactored"] * len(structure.layers):
    raise EvalError(
        f"kfac: kfac-jax's graph matcher found blocks {kinds} for {len(structure.layers)} dense "
        "layers; tasks.dense.forward no longer matches its dense-layer pattern.")


@contextlib.contextmanager
def compile_clock() -> Iterator[list[float]]:
  """Collects the seconds JAX spends tracing, lowering and compiling inside the block.

  kfac-jax jits its step internally, so compilation cannot be separated ahead of time as
  ``runner`` does; JAX reports each compile's duration instead.
  """
  spent: list[float] = []

  def listen(event: str, seconds: float, **kwargs: Any) -> None:
    del kwargs
    if event in _COMPILE_EVENTS:
      spent.append(seconds)

  jax.monitoring.register_event_duration_secs_listener(listen)
  try:
    yield spent
  finally:
    jax.monitoring.unregister_event_duration_listener(listen)


@jax.jit
def _train_batch(task: Any, key: jax.Array, t: jax.Array) -> Any:
  # The batch runner._segment draws at step t: every method trains on the same batches.
  return task.sample_batch(jax.random.split(jax.random.fold_in(key, t))[0], "train")


_eval_loss = jax.jit(runner.eval_loss, static_argnames=("num_batches",))


def _loop(optimizer: Any, structure: dense.DenseStructure, task: Any, seed: int,
          setting: Setting, params: Params) -> tuple[np.ndarray, list[float], dict[str, float]]:
  """Trains for ``setting.num_steps``; returns per-step losses, eval losses, last stats."""
  _, k_train, k_eval = runner.run_keys(seed)
  # K-FAC's own randomness (curvature-propagation vectors, burn-in batches): a stream apart
  # from the shared training batches.
  k_curv, k_burnin, k_opt = jax.random.split(jax.random.fold_in(k_train, 2**31 - 1), 3)
  burnin = [_train_batch(task, k_burnin, jnp.int32(i))
            for i in range(HPARAMS["num_burnin_steps"])]
  first = _train_batch(task, k_train, jnp.int32(0))
  check_registrations(structure, params, first)
  state = optimizer.init(params, k_opt, first)
  eval_steps = set(setting.eval_steps())
  losses, evals, stats = [], [], {}
  for t in range(setting.num_steps):
    kw = (dict(data_iterator=itertools.chain(burnin, [first])) if t == 0 else
          dict(batch=_train_batch(task, k_train, jnp.int32(t))))
    params, state, stats = optimizer.step(params, state, jax.random.fold_in(k_curv, t),
                                          global_step_int=t, **kw)
    losses.append(float(stats["loss"]))
    if t + 1 in eval_steps:
      evals.append(float(_eval_loss(task, params, k_eval, num_batches=setting.eval_batches)))
  last = {k: float(stats[k]) for k in ("damping", "learning_rate", "momentum")}
  return np.asarray(losses), evals, last


@register_baseline(
    "kfac", "K-FAC (Martens & Grosse 2015) via kfac-jax on the task's dense structure: adaptive "
    "LR and momentum (damped quadratic model), Levenberg-Marquardt damping from 150 (per output "
    "for mean-over-outputs losses), "
    "inverses every 5 steps, curvature EMA 0.95, GGN estimate; dense tasks only "
    "(image_mlp, autoencoder, deep_autoencoder)",
    "1 run (adaptive LR, momentum and damping) + 5 burn-in curvature passes",
    unavailable="" if kfac_jax is not None else f"it needs kfac-jax: run `{INSTALL}`")
def kfac_run(task: Any, seed: int, setting: Setting) -> RunRecord:
  """One K-FAC run with the same init, batches, curve and evals as ``runner.run``."""
  structure = require_structure(task)
  require_kfac_jax()
  params = jax.jit(task.init)(runner.run_keys(seed)[0])
  outputs = jax.eval_shape(lambda p, b: dense.forward(structure, p, structure.inputs(b))[0],
                           params, task.batch_spec)
  damping = INITIAL_DAMPING * output_weight(structure.loss, outputs)
  optimizer = make_optimizer(structure, damping)
  t0 = time.perf_counter()
  # kfac-jax's internals rely on NumPy-style promotion, which the tests' strict modes reject.
  with compile_clock() as compiling, jax.numpy_dtype_promotion("standard"), \
      jax.numpy_rank_promotion("allow"), warnings.catch_warnings():
    # kfac-jax donates its batches, which XLA:CPU cannot always reuse; nothing is lost.
    warnings.filterwarnings("ignore", "Some donated buffers were not usable")
    losses, evals, last = _loop(optimizer, structure, task, seed, setting, params)
  wall = time.perf_counter() - t0
  compile_s = min(sum(compiling), wall)  # nested traces may be counted twice
  train, train_steps = runner.window_means(losses, setting.num_points)
  return RunRecord(
      train=train, train_steps=train_steps, eval=evals, eval_steps=list(setting.eval_steps()),
      steps=setting.num_steps + HPARAMS["num_burnin_steps"], compile_s=compile_s,
      run_s=wall - compile_s,
      extra={"initial_damping": damping, **{f"final_{k}": v for k, v in last.items()}})
