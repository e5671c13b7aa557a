"""The registry of task families (name -> family), and specs as JSON.

A spec's JSON names its family, so a logged spec can be rebuilt exactly:

  {"family": "image_mlp", "spec": {"activation": "relu", ...}}
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, TypeVar

from tasks.base import Spec, Task, TaskError, TaskFamily

_FAMILIES: dict[str, TaskFamily] = {}

F = TypeVar("F", bound=type[TaskFamily])


def register_family(name: str) -> Callable[[F], F]:
  """Class decorator: registers a TaskFamily subclass under ``name``; duplicates raise.

  Examples:
    >>> import tasks
    >>> 'quadratic' in tasks.families()
    True
  """

  def wrap(cls: F) -> F:
    if name in _FAMILIES:
      raise TaskError(
          f"task family {name!r} is already registered (by {type(_FAMILIES[name]).__module__}); "
          "pick another name.")
    if not (isinstance(cls, type) and issubclass(cls, TaskFamily)):
      raise TypeError(f"register_family expects a TaskFamily subclass, got {cls!r}")
    if not hasattr(getattr(cls, "spec_type", None), "static_fields"):
      raise TypeError(f"{cls.__name__}.spec_type must be a spec class made with "
                      "@tasks.common.spec_dataclass(static=...), which declares its static fields.")
    for other_name, other in _FAMILIES.items():
      if other.spec_type is cls.spec_type:
        raise TaskError(f"spec type {cls.spec_type.__name__} is already used by family "
                        f"{other_name!r}; each family needs its own spec dataclass.")
    cls.name = name
    _FAMILIES[name] = cls()
    return cls

  return wrap


def families() -> list[str]:
  """Names of the registered task families, sorted."""
  return sorted(_FAMILIES)


def get_family(name: str) -> TaskFamily:
  """The family registered as ``name``; an unknown name lists the valid ones."""
  if name not in _FAMILIES:
    raise TaskError(f"unknown task family {name!r}; valid names: {families()}.")
  return _FAMILIES[name]


def family_of(spec: Spec) -> str:
  """The name of the family whose spec type ``spec`` is."""
  for name, family in _FAMILIES.items():
    if type(spec) is family.spec_type:
      return name
  raise TaskError(f"{type(spec).__name__} is not the spec type of any registered family; "
                  f"registered families: {families()}.")


def build_task(family: str, spec: Spec | None = None) -> Task:
  """Builds ``spec`` with family ``family``; without a spec, its small example spec.

  Examples:
    >>> import tasks
    >>> task = tasks.build_task("quadratic", tasks.QuadraticSpec(dim=4))
    >>> task.name
    'quadratic/d4'
  """
  fam = get_family(family)
  return fam.build(fam.example_spec() if spec is None else spec)


def spec_to_json(spec: Spec) -> str:
  """The spec as JSON naming its family; ``spec_from_json`` inverts it exactly."""
  fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
  return json.dumps({"family": family_of(spec), "spec": fields}, sort_keys=True)


def _tuples(x: Any) -> Any:
  # JSON has no tuples; specs hold tuples so they stay hashable.
  return tuple(_tuples(v) for v in x) if isinstance(x, list) else x


def spec_from_json(s: str) -> Spec:
  """Parses ``spec_to_json``'s output back into the (equal) spec."""
  try:
    obj = json.loads(s)
    name, fields = obj["family"], obj["spec"]
  except (ValueError, KeyError, TypeError) as e:
    raise TaskError(f"not a task-spec JSON (want {{'family': ..., 'spec': {{...}}}}): {e}") from e
  spec_type = get_family(name).spec_type
  valid = {f.name for f in dataclasses.fields(spec_type)}
  unknown = sorted(set(fields) - valid)
  if unknown:
    raise TaskError(f"unknown field(s) {unknown} for family {name!r}; valid: {sorted(valid)}.")
  return spec_type(**{k: _tuples(v) for k, v in fields.items()})
