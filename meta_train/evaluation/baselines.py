"""Hand-designed baselines, each a small named function in one registry.

Every baseline is built from optax pieces (:mod:`schedules`) and run by
:mod:`runner`; ``fn(task, seed, setting) -> RunRecord``. ``RunRecord.steps`` is
the method's full cost in training steps, tuning included, and ``budget`` says
in words what was tuned. Hyperparameters that are not tuned are fixed defaults
a researcher would try first, stated in ``summary``; they are the same on every
task (the same tuning budget for every task, Lindauer & Hutter 2020).

References: Kingma & Ba 2015 (Adam); Loshchilov & Hutter 2019 (AdamW) and 2017
(SGDR); Smith 2017 (cyclical LRs, LR range test) and Smith & Topin 2019
(one-cycle); Howard & Ruder 2018 (discriminative LRs, factor 2.6); Huang et al.
2017 (snapshot ensembles); Brock et al. 2017 (FreezeOut); Metz et al. 2022
(VeLO: tuned Adam = best of 14 log-spaced LRs by final training loss).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from meta_train.evaluation import runner, schedules
from meta_train.evaluation.base import EvalError, HParams, Params, RunRecord, Setting

BaselineFn = Callable[[Any, int, Setting], RunRecord]
ADAM_GRID = tuple(float(x) for x in np.logspace(-4, 0, 14))
BASE_LR = 3e-3  # the fixed Adam peak LR of the schedule baselines


@dataclasses.dataclass(frozen=True)
class Baseline:
  name: str
  summary: str
  budget: str  # the tuning budget, in words
  fn: BaselineFn
  # Why it cannot run in this install ("" if it can): a baseline from an optional extra
  # (K-FAC needs kfac-jax) is left out of "all" and refused by name with the fix.
  unavailable: str = ""


_BASELINES: dict[str, Baseline] = {}


def register_baseline(name: str, summary: str, budget: str, *,
                      unavailable: str = "") -> Callable[[BaselineFn], BaselineFn]:
  """Decorator: registers ``fn`` as baseline ``name``; duplicates raise.

  ``unavailable``: why it cannot run in this install, naming the fix (e.g. the
  optional extra to install); "" if it can.
  """

  def wrap(fn: BaselineFn) -> BaselineFn:
    if name in _BASELINES:
      raise EvalError(f"baseline {name!r} is already registered; pick another name.")
    _BASELINES[name] = Baseline(name, summary, budget, fn, unavailable)
    return fn

  return wrap


def baselines(*, available_only: bool = False) -> list[str]:
  """Names of the registered baselines, in registration order (only those that can run
  in this install with ``available_only``)."""
  return [n for n, b in _BASELINES.items() if not (available_only and b.unavailable)]


def get_baseline(name: str) -> Baseline:
  if name not in _BASELINES:
    raise EvalError(f"unknown baseline {name!r}; valid baselines: {baselines()} "
                    "(or 'all', or 'none').")
  return _BASELINES[name]


# ----------------------------------------------------------------------------
# Shared pieces.
# ----------------------------------------------------------------------------


def adam_hparams(lrs: np.ndarray, wd: float = 0.0) -> HParams:
  return {"lrs": jnp.asarray(lrs, jnp.float32), "wd": jnp.asarray(wd, jnp.float32)}


def _adam_run(schedule: schedules.Schedule, task: Any, seed: int, setting: Setting, *,
              wd: float = 0.0, **kw: Any) -> runner.RunOutput:
  lrs = schedules.as_array(schedule, setting.num_steps)
  return runner.run(schedules.scheduled_adamw, adam_hparams(lrs, wd), task, seed, setting, **kw)


def final_loss(record: RunRecord) -> float:
  """The last training-curve point; NaN/inf count as +inf (diverged)."""
  x = record.train[-1]
  return float(x) if np.isfinite(x) else float("inf")


def _layer_labels(order: tuple[str, ...]) -> Callable[[Params], Params]:
  """``params -> labels``: each top-level group labelled by its index in ``order``."""
  return lambda params: {k: jax.tree.map(lambda _: order.index(k), v) for k, v in params.items()}


@dataclasses.dataclass(frozen=True)
class LayerwiseAdam:
  """Adam per layer (``optax.partition``); layer i (input = 0) at ``hparams["layer_lrs"][i]``.

  ``order`` is the task's ``layer_order`` (a static, hashable tuple), so one
  program serves every LR vector.
  """
  order: tuple[str, ...]

  def __call__(self, hparams: HParams, num_steps: int) -> optax.GradientTransformation:
    del num_steps
    lrs = hparams["layer_lrs"]
    return optax.partition({i: optax.adam(lrs[i]) for i in range(lrs.shape[0])},
                           _layer_labels(self.order))


@dataclasses.dataclass(frozen=True)
class FreezeoutAdam:
  """Adam per layer with FreezeOut's per-layer cosine, reaching 0 at ``t_i * num_steps``.

  The initial LR of layer i is scaled by ``1 / t_i`` (Brock et al.'s "scaled"
  variant), so each layer's summed LR matches a full-length cosine.
  """
  order: tuple[str, ...]

  def __call__(self, hparams: HParams, num_steps: int) -> optax.GradientTransformation:
    t_freeze = hparams["t_freeze"]

    def schedule(i):
      def lr(count):
        frac = jnp.minimum(count / (t_freeze[i] * num_steps), 1.0)
        return 0.5 * hparams["lr"] / t_freeze[i] * (1.0 + jnp.cos(jnp.pi * frac))
      return lr

    return optax.partition({i: optax.adam(schedule(i)) for i in range(t_freeze.shape[0])},
                           _layer_labels(self.order))


def layer_order(task: Any) -> tuple[str, ...]:
  """The task's top-level parameter groups, input to output (``Task.layer_order``)."""
  return tuple(task.layer_order(jax.eval_shape(task.init, jax.random.key(0))))


# ----------------------------------------------------------------------------
# Tuned Adam and random search.
# ----------------------------------------------------------------------------


def _best_of(task: Any, seed: int, setting: Setting, lrs: list[float]) -> tuple[int, list]:
  lr_arrays = np.stack([schedules.as_array(schedules.constant(lr), setting.num_steps)
                        for lr in lrs])
  hp = {"lrs": jnp.asarray(lr_arrays), "wd": jnp.zeros((len(lrs),), jnp.float32)}
  records = runner.run_many(schedules.scheduled_adamw, hp, task, seed, setting)
  return best_index(records), records


def best_index(records: list[RunRecord]) -> int:
  """The run of lowest final training loss (diverged runs count as +inf)."""
  return int(np.argmin([final_loss(r) for r in records]))


def best_run(records: list[RunRecord], lrs: list[float], setting: Setting) -> RunRecord:
  """The best of a grid of runs, one per LR in ``lrs``, charged for every run of the grid.

  The tuning rule every LR-tuned baseline shares (Adam, Muon, Shampoo, LocoProp's inner LR).
  """
  return _select(records, best_index(records), lrs, len(records), setting)


def _select(records: list[RunRecord], best: int, lrs: list[float], budget_runs: int,
            setting: Setting) -> RunRecord:
  rec = records[best]
  rec.steps = budget_runs * setting.num_steps
  rec.compile_s = sum(r.compile_s for r in records)
  rec.run_s = sum(r.run_s for r in records)
  rec.extra = {"lr": lrs[best], "trials": {f"{lr:.3g}": final_loss(r) for lr, r in
                                           zip(lrs, records)}}
  return rec


@register_baseline(
    "adam_tuned", "Adam (b1=.9, b2=.999), constant LR, best of 14 log-spaced LRs in [1e-4, 1] "
    "by final training loss (VeLO's baseline); then run on to speedup_cap x steps to measure "
    "speedups", "14 runs (LR grid)")
def adam_tuned(task: Any, seed: int, setting: Setting) -> RunRecord:
  best, records = _best_of(task, seed, setting, list(ADAM_GRID))
  rec = _select(records, best, list(ADAM_GRID), len(ADAM_GRID), setting)
  # The long run re-uses the segment program; its first num_steps steps repeat the grid run.
  long = _adam_run(schedules.constant(ADAM_GRID[best]), task, seed, setting,
                   num_chunks=setting.speedup_cap * setting.num_chunks)
  rec.extra.update(long_train=long.record.train, long_train_steps=long.record.train_steps,
                   measurement_steps=long.record.steps)
  rec.compile_s += long.record.compile_s
  rec.run_s += long.record.run_s
  return rec


@register_baseline(
    "adam_random_search", "Adam, constant LR, best of 14 LRs drawn log-uniformly from [1e-4, 1] "
    "(seeded by the run seed) by final training loss", "14 runs (random LR search)")
def adam_random_search(task: Any, seed: int, setting: Setting) -> RunRecord:
  rng = np.random.default_rng(10_000 + seed)
  lrs = [float(x) for x in 10.0 ** rng.uniform(-4, 0, len(ADAM_GRID))]
  _, records = _best_of(task, seed, setting, lrs)
  return best_run(records, lrs, setting)


@register_baseline("adam_default", "Adam at the default LR 1e-3, constant", "1 run (none)")
def adam_default(task: Any, seed: int, setting: Setting) -> RunRecord:
  return _adam_run(schedules.constant(1e-3), task, seed, setting).record


# ----------------------------------------------------------------------------
# Schedules.
# ----------------------------------------------------------------------------


@register_baseline("adamw_cosine", "AdamW (wd 1e-4), linear warmup over 5% of steps to 3e-3, "
                   "cosine decay to 0", "1 run (none)")
def adamw_cosine(task: Any, seed: int, setting: Setting) -> RunRecord:
  n = setting.num_steps
  sched = optax.warmup_cosine_decay_schedule(0.0, BASE_LR, max(1, n // 20), n, 0.0)
  return _adam_run(sched, task, seed, setting, wd=1e-4).record


@register_baseline("sgd_momentum", "SGD, heavy-ball momentum 0.9, constant LR 0.01",
                   "1 run (none)")
def sgd_momentum(task: Any, seed: int, setting: Setting) -> RunRecord:
  lrs = schedules.as_array(schedules.constant(1e-2), setting.num_steps)
  hp = {"lrs": jnp.asarray(lrs), "momentum": jnp.float32(0.9)}
  return runner.run(schedules.scheduled_sgd, hp, task, seed, setting).record


def lr_range_test(losses: np.ndarray, lrs: np.ndarray, *, rule: str = "steepest",
                  beta: float | None = None, diverge_factor: float = 4.0) -> float:
  """Picks an LR from a range test's per-step ``losses`` at ``lrs`` (fastai's lr_find).

  The losses are smoothed by a bias-corrected EMA (``beta``; default
  ``min(0.98, 1 - 10 / len(losses))``) and cut where the smoothed
  loss first exceeds ``diverge_factor`` times its minimum (divergence).
  ``rule="steepest"``: the LR where the smoothed loss falls fastest per step
  of log-LR, at or below the min-loss LR and past the first 10% of the ramp; ``rule="min/10"``: the min-loss LR / 10.
  """
  if rule not in ("steepest", "min/10"):
    raise EvalError(f"unknown range-test rule {rule!r}; use 'steepest' or 'min/10'.")
  # fastai's 0.98 suits its 100-step ramp; a shorter ramp needs a shorter EMA, or the lag
  # shifts every pick towards too-high LRs. Default: a timescale of 1/10 of the ramp.
  beta = min(0.98, 1.0 - 10.0 / len(losses)) if beta is None else beta
  losses = np.where(np.isfinite(losses), losses, np.inf)
  smooth, avg = np.empty(len(losses)), 0.0
  for i, x in enumerate(losses):
    avg = beta * avg + (1 - beta) * min(x, 1e30)
    smooth[i] = avg / (1 - beta ** (i + 1))
  best = int(np.argmin(smooth))
  above = np.nonzero(smooth[best:] > diverge_factor * smooth[best])[0]
  stop = best + int(above[0]) if len(above) else len(smooth)
  if rule == "min/10":
    return float(lrs[best] / 10.0)
  slope = np.gradient(smooth[:stop], np.log(lrs[:stop]))
  # Skip the first 10% as fastai does (skip_start): there the EMA is still warming up and its
  # slope says nothing about the LR.
  skip = min(len(losses) // 10, best)
  return float(lrs[skip + int(np.argmin(slope[skip:best + 1]))])


def range_test_steps(setting: Setting) -> int:
  """The ramp's length: ~10% of the run, in whole segments."""
  return setting.chunk * max(1, setting.num_chunks // 10)


@register_baseline(
    "lr_range_test", "LR range test: Adam with an exponential LR ramp 1e-6 -> 10 over ~10% of "
    "the steps, pick the LR of steepest descent of the smoothed loss, then constant Adam at it",
    "1 ramp (~0.1 run) + 1 run")
def lr_range_test_baseline(task: Any, seed: int, setting: Setting) -> RunRecord:
  ramp_steps = range_test_steps(setting)
  ramp = schedules.exponential_ramp(1e-6, 10.0, ramp_steps)
  # The ramp uses the same program as every Adam run (an array of num_steps LRs, padded).
  ramp_out = _adam_run(ramp, task, seed, setting, num_chunks=ramp_steps // setting.chunk)
  lrs = schedules.as_array(ramp, ramp_steps)
  lr = lr_range_test(ramp_out.losses, lrs)
  rec = _adam_run(schedules.constant(lr), task, seed, setting).record
  rec.steps += ramp_steps
  rec.compile_s += ramp_out.record.compile_s
  rec.run_s += ramp_out.record.run_s
  rec.extra = {"lr": lr, "ramp_steps": ramp_steps}
  return rec


def _cyclic(task: Any, seed: int, setting: Setting, *, halve: bool) -> RunRecord:
  step_size = max(1, setting.num_steps // 8)  # four full cycles
  sched = schedules.triangular(BASE_LR / 10, BASE_LR, step_size, halve=halve)
  return _adam_run(sched, task, seed, setting).record


@register_baseline("clr_triangular", "Adam with Smith's triangular cyclical LR between 3e-4 and "
                   "3e-3, 4 cycles", "1 run (none)")
def clr_triangular(task: Any, seed: int, setting: Setting) -> RunRecord:
  return _cyclic(task, seed, setting, halve=False)


@register_baseline("clr_triangular2", "as clr_triangular, the amplitude halved every cycle",
                   "1 run (none)")
def clr_triangular2(task: Any, seed: int, setting: Setting) -> RunRecord:
  return _cyclic(task, seed, setting, halve=True)


@register_baseline("sgdr", "Adam with SGDR (optax.sgdr_schedule): cosine from 3e-3 to 3e-5, "
                   "restarts with cycle lengths doubling (n/7, 2n/7, 4n/7)", "1 run (none)")
def sgdr(task: Any, seed: int, setting: Setting) -> RunRecord:
  n = setting.num_steps
  first = n // 7
  sched = schedules.cosine_cycles(BASE_LR, [first, 2 * first, n - 3 * first], end_frac=0.01)
  return _adam_run(sched, task, seed, setting).record


@register_baseline("one_cycle", "Adam with optax.cosine_onecycle_schedule, peak 1e-2 at 30%, "
                   "start peak/25, end peak/25e4", "1 run (none)")
def one_cycle(task: Any, seed: int, setting: Setting) -> RunRecord:
  sched = optax.cosine_onecycle_schedule(setting.num_steps, 1e-2)
  return _adam_run(sched, task, seed, setting).record


@register_baseline("discriminative", "Adam per layer (optax.partition), top layer at 3e-3, each "
                   "layer below divided by 2.6 (ULMFiT)", "1 run (none)")
def discriminative(task: Any, seed: int, setting: Setting) -> RunRecord:
  order = layer_order(task)
  lrs = BASE_LR / 2.6 ** np.arange(len(order) - 1, -1, -1)
  hp = {"layer_lrs": jnp.asarray(lrs, jnp.float32)}
  rec = runner.run(LayerwiseAdam(order), hp, task, seed, setting).record
  rec.extra = {"layer_lrs": lrs.tolist()}
  return rec


# ----------------------------------------------------------------------------
# Snapshot ensembles and FreezeOut.
# ----------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("num_batches",))
def _ensemble_stats(task: Any, snapshots: Params, key: jax.Array, *,
                    num_batches: int) -> dict[str, jax.Array]:
  """NLL and accuracy of the ensemble (mean of the snapshots' probabilities) and of the last."""

  def one(k):
    batch = task.sample_batch(jax.random.split(k)[0], "eval")
    # The same eval batches as runner.eval_loss.
    logits, labels = jax.vmap(lambda p: task.predict(p, batch))(snapshots)
    labels = labels[0]
    logp = jax.nn.log_softmax(logits)  # (M, ..., classes)
    ens = jax.nn.logsumexp(logp, axis=0) - jnp.log(logp.shape[0])
    pick = lambda lp: -jnp.mean(jnp.take_along_axis(lp, labels[..., None], -1))
    acc = lambda lp: jnp.mean((jnp.argmax(lp, -1) == labels).astype(jnp.float32))
    return {"ensemble_nll": pick(ens), "ensemble_acc": acc(ens),
            "last_nll": pick(logp[-1]), "last_acc": acc(logp[-1])}

  stats = jax.vmap(one)(jax.random.split(key, num_batches))
  return jax.tree.map(jnp.mean, stats)


@register_baseline(
    "snapshot_ensemble", "Adam with M=snapshot_cycles equal cosine cycles from 3e-3 "
    "(restarts), a snapshot at the end of each; ensemble = mean of the snapshots' predicted "
    "probabilities on the eval batches", "1 run (none)")
def snapshot_ensemble(task: Any, seed: int, setting: Setting) -> RunRecord:
  m, n = setting.snapshot_cycles, setting.num_steps
  sched = schedules.cosine_cycles(BASE_LR, [n // m] * m)
  keep = [n * (i + 1) // m for i in range(m)]
  out = _adam_run(sched, task, seed, setting, keep=keep)
  rec = out.record
  if task.has_predictions:
    snaps = jax.tree.map(lambda *xs: jnp.stack(xs), *[out.kept[s] for s in keep])
    with jax.numpy_dtype_promotion("standard"):
      stats = _ensemble_stats(task, snaps, runner.run_keys(seed)[2],
                              num_batches=setting.eval_batches)
    rec.extra = {k: float(v) for k, v in stats.items()}
  else:
    rec.extra = {"note": "the task exposes no predictive distribution, so the ensemble's loss "
                 "is undefined (averaging parameters is not an ensemble); the curves are the "
                 "last snapshot's"}
  rec.extra["snapshots"] = m
  return rec


def freeze_fractions(num_layers: int, t0: float = 0.5) -> np.ndarray:
  """FreezeOut's cubic schedule: layer i stops at ``t0 + (1 - t0) (i / (L - 1))^3``; the top at 1."""
  if num_layers == 1:
    return np.ones(1)
  return t0 + (1 - t0) * (np.arange(num_layers) / (num_layers - 1)) ** 3


@register_baseline(
    "freezeout", "FreezeOut: Adam per layer with a per-layer cosine from 3e-3/t_i to 0 at "
    "t_i (cubic t_i from 0.5 to 1, rounded up to segment ends); frozen layers are not "
    "differentiated", "1 run (none)")
def freezeout(task: Any, seed: int, setting: Setting) -> RunRecord:
  groups = layer_order(task)
  n, chunk = setting.num_steps, setting.chunk
  # Freeze on segment ends, so each phase is whole segments of one program.
  stops = np.ceil(freeze_fractions(len(groups)) * n / chunk) * chunk
  fracs = stops / n
  trainable_at = lambda step: tuple(g for g, s in zip(groups, stops) if s > step) or None
  hp = {"lr": jnp.float32(BASE_LR), "t_freeze": jnp.asarray(fracs, jnp.float32)}
  out = runner.run(FreezeoutAdam(groups), hp, task, seed, setting, trainable_at=trainable_at)
  rec = out.record
  by = rec.extra.pop("run_s_by_trainable")
  full_key = str(trainable_at(0))
  chunks_full = int(min(stops) // chunk)
  full_chunk_s = by[full_key] / max(chunks_full, 1)
  rec.extra = {"freeze_fractions": fracs.tolist(), "groups": list(groups),
               "measured_step_time_saving": 1.0 - sum(by.values()) / (setting.num_chunks
                                                                     * full_chunk_s),
               "frozen_layer_step_fraction": float(np.mean(1.0 - fracs))}
  return rec
