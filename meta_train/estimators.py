"""The estimator registry: name -> ``Estimator``, and one outer step's estimate.

The shipped estimators are registered at the bottom of this file, in one
place; a plug-in registers its own with one ``register_estimator`` call (see
docs/meta_train.md, "Adding an estimator"). The engine, the config and the job
look an estimator up by the name in ``config.estimator``; each registered name
also gets a config sub-dict of its hyperparameters (``config.pes.sigma``).

Examples:
  >>> from meta_train import estimators
  >>> estimators.estimators()
  ('es', 'nres', 'pes', 'tes')
  >>> estimators.get_estimator("pes").hparams.__name__
  'PESHParams'
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from meta_train import es, nres, pes
from meta_train.base import Estimator, EstimatorError, HParams, Metrics, State, Task, Theta

_ESTIMATORS: dict[str, Estimator] = {}


def register_estimator(name: str, estimator: Estimator) -> Estimator:
  """Registers ``estimator`` under ``name`` (a Python identifier); duplicates raise.

  The name is also the config sub-dict of its hyperparameters, so it must be
  an identifier (``--config.NAME.FIELD=...``).
  """
  if not isinstance(name, str) or not name.isidentifier():
    raise EstimatorError(f"estimator name {name!r} must be a Python identifier "
                         "(it names the config sub-dict, --config.NAME.FIELD=...).")
  if name in _ESTIMATORS:
    raise EstimatorError(f"estimator {name!r} is already registered; pick another name "
                         "(or import the module that registers it only once).")
  if not isinstance(estimator, Estimator):
    raise EstimatorError(f"register_estimator({name!r}, ...) takes a meta_train.base.Estimator "
                         f"record, got {type(estimator).__name__}.")
  _check_hparams_type(name, estimator.hparams)
  _ESTIMATORS[name] = estimator
  return estimator


def _check_hparams_type(name: str, cls: Any) -> None:
  """The config sub-dict is built from ``cls()``: a frozen dataclass with every default."""
  params = getattr(cls, "__dataclass_params__", None)
  if not isinstance(cls, type) or params is None or not params.frozen:
    raise EstimatorError(f"estimator {name!r}: hparams must be a frozen dataclass type "
                         "(@dataclasses.dataclass(frozen=True)), so it is static under jit.")
  try:
    cls()
  except TypeError as e:
    raise EstimatorError(f"estimator {name!r}: {cls.__name__}() fails ({e}); give every "
                         "field a default (the config sub-dict starts from them).") from e


def get_estimator(name: str) -> Estimator:
  """The estimator registered as ``name``; a miss lists the valid names."""
  if name not in _ESTIMATORS:
    raise EstimatorError(f"unknown estimator {name!r}; registered: {list(estimators())}. "
                         "Register it with meta_train.estimators.register_estimator (or "
                         "--import the module that does).")
  return _ESTIMATORS[name]


def estimators() -> tuple[str, ...]:
  """Names of the registered estimators, sorted."""
  return tuple(sorted(_ESTIMATORS))


def hparams_fields(name: str) -> tuple[str, ...]:
  """The hyperparameter fields of estimator ``name``: its config sub-dict's keys."""
  return tuple(f.name for f in dataclasses.fields(get_estimator(name).hparams))


def estimate(estimator: Estimator, arch, hp: HParams, theta: Theta, pool: Task, state: State,
             key: jax.Array) -> tuple[Theta, State, Metrics]:
  """ask -> evaluate -> tell for one outer step on one task group (pool leaves ``[B, M, ...]``).

  Returns ``(grad, state, metrics)``; ``metrics`` has at least ``"meta_loss"``.
  """
  if not isinstance(hp, estimator.hparams):
    raise EstimatorError(f"hyperparameters {type(hp).__name__} do not belong to this "
                         f"estimator; pass a {estimator.hparams.__name__}.")
  leaves = jax.tree.leaves(pool)
  num_slots = leaves[0].shape[0] if leaves else 1
  population, state = estimator.ask(key, state, hp, theta, num_slots=num_slots)
  fitness, state = estimator.evaluate(key, arch, hp, population, pool, state)
  grad, state, metrics = estimator.tell(population, fitness, state, hp, theta)
  if "meta_loss" not in metrics:
    raise EstimatorError("an estimator's tell must return metrics with 'meta_loss' (the mean "
                         "meta-loss the job logs and the progress bar shows).")
  return grad, state, metrics


# ----------------------------------------------------------------------------
# The shipped estimators: the whole table, in one place.
# ----------------------------------------------------------------------------

register_estimator("es", es.ESTIMATOR)  # antithetic full-unroll ES (VeLO)
register_estimator("pes", pes.PES)  # truncated persistent ES (Vicol et al. 2021), unbiased
register_estimator("tes", pes.TES)  # truncated ES: PES without the accumulated noise, biased
register_estimator("nres", nres.NRES)  # noise-reuse ES (Li et al. 2023): one eps per episode
