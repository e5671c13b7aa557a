"""The registry of learned-optimizer architectures: name -> frozen dataclass."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, TypeVar

from learned_opt.base import LearnedOptimizer, LearnedOptimizerError

_ARCHITECTURES: dict[str, type[LearnedOptimizer]] = {}

T = TypeVar("T", bound=type[LearnedOptimizer])


def register(name: str) -> Callable[[T], T]:
  """Class decorator: registers an architecture under ``name``; duplicates raise."""

  def wrap(cls: T) -> T:
    if name in _ARCHITECTURES:
      raise LearnedOptimizerError(
          f"architecture {name!r} is already registered (by {_ARCHITECTURES[name].__module__}); "
          "pick another name.")
    if not dataclasses.is_dataclass(cls):
      raise TypeError(f"{cls.__name__} must be a frozen dataclass to be registered.")
    cls.name = name
    _ARCHITECTURES[name] = cls
    return cls

  return wrap


def architectures() -> list[str]:
  """Names of the registered architectures, sorted."""
  return sorted(_ARCHITECTURES)


def get(name: str, **hparams: Any) -> LearnedOptimizer:
  """Builds the architecture ``name`` with hyperparameters ``hparams``.

  Examples:
    >>> import learned_opt
    >>> arch = learned_opt.get("mlp", hidden_size=8)
    >>> arch.name
    'mlp'
  """
  if name not in _ARCHITECTURES:
    raise LearnedOptimizerError(
        f"unknown learned-optimizer architecture {name!r}; valid names: {architectures()}.")
  cls = _ARCHITECTURES[name]
  valid = [f.name for f in dataclasses.fields(cls)]
  unknown = sorted(set(hparams) - set(valid))
  if unknown:
    raise LearnedOptimizerError(
        f"unknown hparam(s) {unknown} for architecture {name!r}; valid hparams: {valid}.")
  # JSON turns tuples into lists; restore them so the dataclass stays hashable.
  hparams = {k: tuple(v) if isinstance(v, list) else v for k, v in hparams.items()}
  return cls(**hparams)
