"""Inner training for evaluation: jitted ``lax.scan`` segments over steps.

A method is a ``make_tx(hparams, num_steps) -> optax transform`` (a hashable,
static function or frozen dataclass) plus ``hparams`` (a pytree of arrays, a
jit *argument*). The task is a jit argument too (tasks are pytrees). A run is
cut into equal segments (``Setting.chunk`` steps) whose start step is a traced
argument, so **one compiled program per (task, method) serves every segment,
seed, hparams value and run length** (the long tuned-Adam run and the LR range
test's ramp included); compilation, not computation, dominates on CPU.
:func:`run_many` vmaps the same segment over a batch of hparams (Adam's 14
learning rates run as one batched program).

Every method sees the same initial parameters, training batches and eval
batches for a given seed (common random numbers), so differences between
methods on a seed are not data noise.

Compilation is ahead of time (``jit(...).lower(...).compile()``) and cached
here by static arguments and argument shapes, so each run's wall time is split
honestly into compile and run seconds.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from meta_train.evaluation.base import HParams, Params, PRNGKey, RunRecord, Setting

MakeTx = Callable[[HParams, int], optax.GradientTransformation]
# step -> trainable top-level parameter groups (None: all); used by FreezeOut.
TrainableAt = Callable[[int], "tuple[str, ...] | None"]


def run_keys(seed: int) -> tuple[PRNGKey, PRNGKey, PRNGKey]:
  """``(init, train, eval)`` keys of a seed; shared by every method."""
  k_init, k_train, k_eval = jax.random.split(jax.random.key(seed), 3)
  return k_init, k_train, k_eval


def eval_loss(task: Any, params: Params, key: PRNGKey, num_batches: int) -> jax.Array:
  """Mean raw loss over ``num_batches`` fixed eval batches drawn from ``key``."""

  def one(k):
    k_batch, k_loss = jax.random.split(k)
    return task.loss(params, k_loss, task.sample_batch(k_batch, "eval"))

  return jnp.mean(jax.vmap(one)(jax.random.split(key, num_batches)))


def normalized(task: Any, loss: float) -> float:
  """``task.normalizer`` of a host float (NaN/inf: the normaliser's maximum)."""
  with jax.numpy_dtype_promotion("standard"):
    return float(task.normalizer(jnp.float32(loss if np.isfinite(loss) else np.inf)))


def _grads(task: Any, params: Params, key: PRNGKey, batch: Any,
           trainable: tuple[str, ...] | None) -> tuple[jax.Array, Params]:
  """Loss and gradient; with ``trainable``, only those top-level groups are differentiated.

  Frozen groups get zero gradients that are constants, so XLA drops their
  weight-gradient matmuls and the backward pass below the lowest trainable
  group: that is where FreezeOut's step-time saving comes from.
  """
  if trainable is None:
    return jax.value_and_grad(task.loss)(params, key, batch)
  active = {k: params[k] for k in trainable}
  loss, g = jax.value_and_grad(lambda a: task.loss({**params, **a}, key, batch))(active)
  return loss, {k: g[k] if k in g else jax.tree.map(jnp.zeros_like, v) for k, v in params.items()}


def _tx(make_tx: MakeTx, hparams: HParams, num_steps: int) -> optax.GradientTransformationExtraArgs:
  return optax.with_extra_args_support(make_tx(hparams, num_steps))


def _init(hparams: HParams, task: Any, key: PRNGKey, *, make_tx: MakeTx, num_steps: int):
  params = task.init(key)
  return params, _tx(make_tx, hparams, num_steps).init(params)


def _segment(hparams: HParams, task: Any, key: PRNGKey, params: Params, opt_state: Any,
             start: jax.Array, *, make_tx: MakeTx, num_steps: int, length: int,
             trainable: tuple[str, ...] | None):
  """Steps ``start .. start + length - 1``; returns ``(params, opt_state, losses (length,))``."""
  tx = _tx(make_tx, hparams, num_steps)

  def body(carry, t):
    params, opt_state = carry
    k_batch, k_loss = jax.random.split(jax.random.fold_in(key, t))
    loss, grads = _grads(task, params, k_loss, task.sample_batch(k_batch, "train"), trainable)
    updates, opt_state = tx.update(grads, opt_state, params, value=loss)
    return (optax.apply_updates(params, updates), opt_state), loss

  (params, opt_state), losses = jax.lax.scan(
      body, (params, opt_state), start + jnp.arange(length, dtype=jnp.int32))
  return params, opt_state, losses


def _init_vmapped(hparams, task, key, **kw):
  return jax.vmap(lambda h: _init(h, task, key, **kw))(hparams)


def _segment_vmapped(hparams, task, key, params, opt_state, start, **kw):
  # A vmapped run carries batched params/state, so the segment vmaps over them too.
  return jax.vmap(lambda h, p, s: _segment(h, task, key, p, s, start, **kw))(
      hparams, params, opt_state)


_STATIC_INIT = ("make_tx", "num_steps")
_STATIC_SEG = ("make_tx", "num_steps", "length", "trainable")
_init_one = jax.jit(_init, static_argnames=_STATIC_INIT)
_segment_one = jax.jit(_segment, static_argnames=_STATIC_SEG)
_init_many = jax.jit(_init_vmapped, static_argnames=_STATIC_INIT)
_segment_many = jax.jit(_segment_vmapped, static_argnames=_STATIC_SEG)
_eval_one = jax.jit(eval_loss, static_argnames=("num_batches",))
_eval_many = jax.jit(
    lambda task, params, key, *, num_batches: jax.vmap(
        lambda p: eval_loss(task, p, key, num_batches))(params),
    static_argnames=("num_batches",))

# ----------------------------------------------------------------------------
# Ahead-of-time compilation with a cache, so compile and run time are separate.
# ----------------------------------------------------------------------------

_COMPILED: dict[Any, Any] = {}


class Timer:
  """Accumulates compile and run seconds over the programs of one run."""

  def __init__(self):
    self.compile_s = 0.0
    self.run_s = 0.0

  def call(self, jitted: Any, statics: dict[str, Any], *args: Any) -> Any:
    leaves, treedef = jax.tree.flatten(args)
    sig = (id(jitted), tuple(sorted(statics.items(), key=lambda kv: kv[0])), treedef,
           tuple((jnp.shape(x), str(jnp.result_type(x))) for x in leaves))
    # Learned optimizers and optax's schedules use mixed-precision literals that the
    # strict promotion mode of the tests rejects; evaluation is not the place to police them.
    with jax.numpy_dtype_promotion("standard"):
      if sig not in _COMPILED:
        t0 = time.perf_counter()
        _COMPILED[sig] = jitted.lower(*args, **statics).compile()
        self.compile_s += time.perf_counter() - t0
      t0 = time.perf_counter()
      out = jax.block_until_ready(_COMPILED[sig](*args))
    self.run_s += time.perf_counter() - t0
    return out


def window_means(losses: np.ndarray, num_points: int) -> tuple[list, list[int]]:
  """Means of ``losses`` (last axis) over ``num_points`` consecutive windows, and window ends."""
  losses = np.asarray(losses, np.float64)
  n = losses.shape[-1]
  k = min(num_points, n)
  bounds = np.linspace(0, n, k + 1).round().astype(int)
  means = np.stack([losses[..., a:b].mean(-1) for a, b in zip(bounds[:-1], bounds[1:])], -1)
  return means.tolist(), bounds[1:].tolist()


def to_hparams(hparams: dict[str, Any]) -> HParams:
  """Python floats to float32 arrays (ints stay int32), so a new value never recompiles."""
  return jax.tree.map(
      lambda v: jnp.asarray(v, jnp.int32 if isinstance(v, int) else jnp.float32), hparams)


@dataclasses.dataclass
class RunOutput:
  """A run's record plus what some baselines need beyond it."""
  record: RunRecord
  losses: np.ndarray  # per-step minibatch losses, (steps,) or (batch, steps)
  params: Params
  kept: dict[int, Params]  # step -> params at the steps asked for in ``keep``


def run(make_tx: MakeTx, hparams: HParams, task: Any, seed: int, setting: Setting, *,
        num_chunks: int | None = None, keep: Sequence[int] = (),
        trainable_at: TrainableAt | None = None, timer: Timer | None = None) -> RunOutput:
  """Trains ``task`` with ``make_tx(hparams)`` for one seed.

  Args:
    make_tx: hashable ``(hparams, num_steps) -> optax transform``; it is built
      with ``setting.num_steps`` even when the run is longer or shorter.
    hparams: its arguments (arrays).
    task: a ``tasks.Task``.
    seed: the run seed (init, data and eval batches).
    setting: shared run settings.
    num_chunks: run length in segments (default ``setting.num_chunks``, i.e.
      ``num_steps``); evals happen at ``setting.eval_steps()`` within it.
    keep: segment-end steps whose params are returned (snapshots).
    trainable_at: FreezeOut's ``step -> trainable groups`` (checked per segment).
    timer: accumulates compile/run seconds across calls.
  """
  n, chunk = setting.num_steps, setting.chunk
  num_chunks = setting.num_chunks if num_chunks is None else num_chunks
  timer = timer or Timer()
  k_init, k_train, k_eval = run_keys(seed)
  params, opt_state = timer.call(_init_one, dict(make_tx=make_tx, num_steps=n),
                                 hparams, task, k_init)
  evals, eval_at, losses, kept, phase_s = [], [], [], {}, {}
  eval_steps = set(setting.eval_steps())
  for c in range(num_chunks):
    start = c * chunk
    trainable = trainable_at(start) if trainable_at else None
    before = timer.run_s
    params, opt_state, seg = timer.call(
        _segment_one, dict(make_tx=make_tx, num_steps=n, length=chunk, trainable=trainable),
        hparams, task, k_train, params, opt_state, jnp.int32(start))
    phase_s[str(trainable)] = phase_s.get(str(trainable), 0.0) + timer.run_s - before
    losses.append(np.asarray(seg))
    end = start + chunk
    if end in eval_steps:
      evals.append(float(timer.call(_eval_one, dict(num_batches=setting.eval_batches),
                                    task, params, k_eval)))
      eval_at.append(end)
    if end in keep:
      kept[end] = params
  losses = np.concatenate(losses)
  points = max(1, setting.num_points * num_chunks // setting.num_chunks)
  train, train_steps = window_means(losses, points)
  record = RunRecord(train=train, train_steps=train_steps, eval=evals, eval_steps=eval_at,
                     steps=num_chunks * chunk, compile_s=timer.compile_s, run_s=timer.run_s,
                     extra={"run_s_by_trainable": phase_s} if trainable_at else {})
  return RunOutput(record, losses, params, kept)


def run_many(make_tx: MakeTx, hparams: HParams, task: Any, seed: int, setting: Setting, *,
             timer: Timer | None = None) -> list[RunRecord]:
  """:func:`run` for a batch of hparams (leading axis), as one vmapped program."""
  n, chunk = setting.num_steps, setting.chunk
  timer = timer or Timer()
  k_init, k_train, k_eval = run_keys(seed)
  params, opt_state = timer.call(_init_many, dict(make_tx=make_tx, num_steps=n),
                                 hparams, task, k_init)
  evals, losses = [], []
  eval_steps = setting.eval_steps()
  for c in range(setting.num_chunks):
    params, opt_state, seg = timer.call(
        _segment_many, dict(make_tx=make_tx, num_steps=n, length=chunk, trainable=None),
        hparams, task, k_train, params, opt_state, jnp.int32(c * chunk))
    losses.append(np.asarray(seg))
    if (c + 1) * chunk in eval_steps:
      evals.append(np.asarray(timer.call(
          _eval_many, dict(num_batches=setting.eval_batches), task, params, k_eval)))
  train, train_steps = window_means(np.concatenate(losses, axis=-1), setting.num_points)
  evals = np.stack(evals, -1).tolist()
  size = len(train)
  return [RunRecord(train=train[i], train_steps=train_steps, eval=evals[i],
                    eval_steps=list(eval_steps), steps=n, compile_s=timer.compile_s / size,
                    run_s=timer.run_s / size)
          for i in range(size)]
