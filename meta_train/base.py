"""meta_train's contract: the estimator protocol, hyperparameters, state containers and aliases.

An *estimator* turns perturbed unrolls into a meta-gradient. It is an
``Estimator`` record of pure functions over explicit state, in evosax's
ask/eval/tell shape::

    state = est.init(key, arch, hparams, theta, pool)
    population, state = est.ask(key, state, hparams, theta, num_slots=B)
    fitness, state = est.evaluate(key, arch, hparams, population, pool, state)
    grad, state, metrics = est.tell(population, fitness, state, hparams, theta)

Estimators are registered by name in ``meta_train/estimators.py``; the engine,
the config and the job look them up there and never test which one they hold.

Hyperparameters are frozen dataclasses (hashable, so they are static under
``jax.jit``); state is NamedTuples of arrays. The two are kept apart, as evosax
splits ``Params`` from ``State``: a jitted step takes ``(hparams, state)`` and
returns a new state, and nothing is mutated.

Array axes used throughout (sizes per *task group*, see ``engine.py``):

* ``B``: task slots (the meta-batch; the axis sharded across devices);
* ``P``: antithetic pairs per task;
* ``2``: the sign of the perturbation (+, -);
* ``M``: candidate tasks per slot (the pool a slot draws from at each reset).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Literal, NamedTuple, Protocol

import jax

Theta = Any  # pytree of float32 meta-parameters
Params = Any  # pytree of task parameters
Task = Any  # a tasks.Task pytree; a *pool* has leading axes [B, M]
KeyData = jax.Array  # uint32 [..., 2]: raw PRNG key data, so state checkpoints as plain arrays
HParams = Any  # an estimator's frozen hyperparameter dataclass
State = Any  # an estimator's state pytree (per task group; () if it has none)
Population = Any  # what ask hands evaluate: perturbed thetas and whatever tell needs
Fitness = Any  # what evaluate hands tell: the particles' meta-losses
Metrics = dict[str, jax.Array]  # scalars; always has "meta_loss"

Shaping = Literal["raw", "sign"]
MetaLoss = Literal["final", "mean"]
Noise = Literal["normal", "rademacher"]
NOISES = ("normal", "rademacher")
Perturbation = Literal["dense", "implicit", "lowrank"]
PERTURBATIONS = ("dense", "implicit", "lowrank")


class EstimatorError(ValueError):
  """A bad estimator hyperparameter or registration; the message names the fix.

  ``field`` is the hyperparameter at fault (None if none is), so the config can
  name the flag that fixes it (``--config.pes.sigma=...``).
  """

  def __init__(self, message: str, field: str | None = None):
    super().__init__(message)
    self.field = field


# ----------------------------------------------------------------------------
# The estimator protocol
# ----------------------------------------------------------------------------


class InitFn(Protocol):

  def __call__(self, key: jax.Array, arch: Any, hparams: HParams, theta: Theta,
               pool: Task) -> State:
    """The state of one task group's ``B`` slots (pool leaves ``[B, M, ...]``)."""


class AskFn(Protocol):

  def __call__(self, key: jax.Array, state: State, hparams: HParams, theta: Theta, *,
               num_slots: int) -> tuple[Population, State]:
    """Perturbations of ``theta`` for ``num_slots`` slots.

    ``theta`` is an argument, not part of the state, because it lives in the
    outer state (it is what the outer optimizer updates); the estimator's state
    holds only what the estimator itself carries between steps.
    """


class EvaluateFn(Protocol):

  def __call__(self, key: jax.Array, arch: Any, hparams: HParams, population: Population,
               pool: Task, state: State) -> tuple[Fitness, State]:
    """Runs the inner trainings of every particle and scores them.

    ``key`` is the same step key that ``ask`` got (so that every step has one
    key, and a run's trajectory is a function of its config): an estimator that
    draws in both must split it, as ``es`` does.
    """


class TellFn(Protocol):

  def __call__(self, population: Population, fitness: Fitness, state: State,
               hparams: HParams, theta: Theta) -> tuple[Theta, State, Metrics]:
    """The meta-gradient estimate (shaped like theta), the next state and scalar metrics."""


@dataclasses.dataclass(frozen=True)
class Estimator:
  """A meta-gradient estimator: its hyperparameter type and pure ask/evaluate/tell.

  One record per algorithm, registered under a name with
  ``meta_train.estimators.register_estimator``; see docs/meta_train.md,
  "Adding an estimator".

  Attributes:
    hparams: the frozen dataclass of its hyperparameters. Every field needs a
      default: the config's sub-dict ``config.<name>`` is generated from its
      fields (``dataclasses.fields``), so the two cannot drift.
    init, ask, evaluate, tell: see ``InitFn``, ``AskFn``, ``EvaluateFn``, ``TellFn``.
    inner_steps: ``hparams -> int``, the inner training steps one task slot runs
      in an outer step, all its particles together (``2 * num_pairs * T`` for
      antithetic pairs over ``T`` steps); the job reports throughput with it.
    has_state: False if ``init`` returns ``()`` and the state stays ``()``: the
      job then skips compiling ``init``, and checkpoints hold ``()`` per group.
  """

  hparams: type
  init: InitFn
  ask: AskFn
  evaluate: EvaluateFn
  tell: TellFn
  inner_steps: Callable[[HParams], int]
  has_state: bool = True


# ----------------------------------------------------------------------------
# Hyperparameters of the shipped estimators
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ESHParams:
  """Antithetic full-unroll ES (VeLO's estimator, Metz et al. 2022).

  Attributes:
    sigma: perturbation scale; theta +- sigma * eps, eps ~ N(0, I).
    num_pairs: antithetic pairs per task (they share the task and its batches).
    horizon: inner steps of the whole unroll.
    shaping: "raw" uses (f+ - f-) / (2 sigma); "sign" uses sign(f+ - f-) as VeLO.
    meta_loss: "final" = normalised loss after the last step, on
      ``num_eval_batches`` fresh batches; "mean" = mean over the unroll.
    num_eval_batches: fresh batches that the final loss is averaged over.
    eval_split: split the meta-loss batches come from.
    noise: distribution of eps: "normal" (N(0, I)) or "rademacher" (+-1 per
      coordinate, also E[eps eps^T] = I). Rademacher needs 1 random bit per
      meta-parameter instead of 32, which matters on CPU for VeLO-size theta.
    perturbation: how particles get their theta. "dense" writes a perturbed
      copy of theta per particle. "implicit" keeps theta once and each pair's
      eps once: an architecture with ``structured_theta`` computes
      ``x @ W + s*sigma*(x @ E)``, so W is read once for all particles (the
      same estimate as "dense", up to rounding). "lowrank" draws eps of every
      weight of rank >= 2 as ``A @ B.T / sqrt(rank)`` (EGGROLL), so the noise
      and its products cost ``rank * (m + n)`` per matrix instead of ``m * n``;
      eps still has identity covariance, so the estimate stays unbiased to
      first order, with different (non-Gaussian) higher moments.
    rank: rank of the "lowrank" perturbations (ignored otherwise).
  """

  sigma: float = 0.01
  num_pairs: int = 1
  horizon: int = 100
  shaping: Shaping = "raw"
  meta_loss: MetaLoss = "final"
  num_eval_batches: int = 1
  eval_split: str = "train"
  noise: Noise = "normal"
  perturbation: Perturbation = "dense"
  rank: int = 1

  def __post_init__(self):
    _check_common(self.sigma, self.num_pairs, self.noise, self.perturbation, self.rank)
    _positive_int("horizon", self.horizon)
    _positive_int("num_eval_batches", self.num_eval_batches)
    _one_of("shaping", self.shaping, ("raw", "sign"))
    _one_of("meta_loss", self.meta_loss, ("final", "mean"))
    _one_of("eval_split", self.eval_split, ("train", "eval"))


@dataclasses.dataclass(frozen=True)
class TruncatedHParams:
  """The fields of the truncated estimators; use ``PESHParams`` or ``TESHParams``.

  Attributes:
    sigma: perturbation scale per truncation.
    num_pairs: antithetic pairs per task.
    truncation_length: inner steps per outer step (T).
    min_horizon, max_horizon: episode lengths are drawn log-uniformly in this
      range; each slot draws its own, so resets are staggered.
    num_steps: the run length the learned optimizer is told. 0 (the default)
      tells each episode its own drawn horizon (a traced ``num_steps``, so the
      training-fraction features are right for every particle under vmap); an
      int > 0 tells every episode that fixed length instead.
    stagger: cut each slot's first episode short by a random amount.
    eval_split: split the per-step meta-loss batch comes from.
    noise: "normal" or "rademacher", as for ``ESHParams``.
    perturbation, rank: as for ``ESHParams``. PES's per-pair ``accum`` is a
      sum of one draw per truncation, so it stays a full theta per pair.
  """

  sigma: float = 0.01
  num_pairs: int = 1
  truncation_length: int = 10
  min_horizon: int = 50
  max_horizon: int = 200
  num_steps: int = 0
  stagger: bool = True
  eval_split: str = "train"
  noise: Noise = "normal"
  perturbation: Perturbation = "dense"
  rank: int = 1

  def __post_init__(self):
    _check_common(self.sigma, self.num_pairs, self.noise, self.perturbation, self.rank)
    _positive_int("truncation_length", self.truncation_length)
    _positive_int("min_horizon", self.min_horizon)
    _positive_int("max_horizon", self.max_horizon)
    if self.max_horizon < self.min_horizon:
      raise EstimatorError(f"max_horizon ({self.max_horizon}) must be >= min_horizon "
                           f"({self.min_horizon}); raise max_horizon or lower min_horizon.",
                           "max_horizon")
    if isinstance(self.num_steps, bool) or not isinstance(self.num_steps, int) or (
        self.num_steps < 0):
      raise EstimatorError(f"num_steps must be an int >= 0 (0: each episode's horizon), "
                           f"got {self.num_steps!r}.", "num_steps")
    if not isinstance(self.stagger, bool):
      raise EstimatorError(f"stagger must be True or False, got {self.stagger!r}.", "stagger")
    _one_of("eval_split", self.eval_split, ("train", "eval"))

  @property
  def optimizer_num_steps(self) -> int | None:
    """What ``unroll`` tells the optimizer: a fixed int, or None for each episode's horizon."""
    return self.num_steps or None


@dataclasses.dataclass(frozen=True)
class PESHParams(TruncatedHParams):
  """Truncated Persistent ES (Vicol et al., ICML 2021): unbiased; fields as ``TruncatedHParams``."""


@dataclasses.dataclass(frozen=True)
class TESHParams(TruncatedHParams):
  """Truncated ES: forgets the noise of earlier truncations, so it is biased towards
  greedy, short-horizon behaviour; fields as ``TruncatedHParams``.

  Its own type (not ``PESHParams`` with a mode flag) so that hyperparameters
  say which estimator they belong to, and ``config.tes`` cannot be set to PES.
  """


@dataclasses.dataclass(frozen=True)
class NRESHParams(TruncatedHParams):
  """Noise-reuse ES (Li et al., NeurIPS 2023): one perturbation per pair for a whole episode.

  Attributes (beyond ``TruncatedHParams``):
    shaping: "raw" uses (f+ - f-) / (2 sigma); "sign" uses sign(f+ - f-), as
      VeLO, so that no task group with large losses dominates the step.
  """

  shaping: Shaping = "raw"

  def __post_init__(self):
    super().__post_init__()
    _one_of("shaping", self.shaping, ("raw", "sign"))


# ----------------------------------------------------------------------------
# State
# ----------------------------------------------------------------------------


class InnerState(NamedTuple):
  """The persistent inner trainings of one task group.

  ``params``/``opt_state`` have leading axes ``[B, P, 2]``; the rest ``[B]``
  (all particles of a slot share its task, horizon and batches: common random
  numbers make the antithetic difference low-variance).
  """

  params: Params
  opt_state: Any
  step: jax.Array  # int32 [B]: step within the current episode
  horizon: jax.Array  # int32 [B]: length of the current episode
  task_index: jax.Array  # int32 [B]: which of the slot's M pool tasks is live
  key: KeyData  # [B, 2]: the episode's key; batches and the next episode derive from it


class PESState(NamedTuple):
  """PES/TES state: inner trainings plus each pair's perturbation since its last reset."""

  inner: InnerState
  accum: Theta  # leaves [B, P, ...]: sum of sigma*eps of the + particle since its reset


class NRESState(NamedTuple):
  """NRES state: inner trainings plus the key of each pair's episode perturbation."""

  inner: InnerState
  keys: jax.Array  # uint32 key data [B, P, 2]: eps of the pair's current episode
  fresh: jax.Array  # bool [B]: the slot's episode began, draw new keys at the next ask


# ----------------------------------------------------------------------------
# Validation helpers (each error names its field, so the config can name the flag)
# ----------------------------------------------------------------------------


def _check_common(sigma: Any, num_pairs: Any, noise: Any, perturbation: Any,
                  rank: Any) -> None:
  if (isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0
      or not math.isfinite(sigma)):
    raise EstimatorError(f"sigma must be a finite float > 0 (e.g. 0.01), got {sigma!r}.",
                         "sigma")
  _positive_int("num_pairs", num_pairs)
  _one_of("noise", noise, NOISES)
  _one_of("perturbation", perturbation, PERTURBATIONS)
  _positive_int("rank", rank)


def _positive_int(name: str, v: Any) -> None:
  if isinstance(v, bool) or not isinstance(v, int) or v < 1:
    raise EstimatorError(f"{name} must be an int >= 1, got {v!r}.", name)


def _one_of(name: str, v: Any, valid: tuple[str, ...]) -> None:
  if v not in valid:
    raise EstimatorError(f"{name} must be one of {list(valid)}, got {v!r}.", name)
