"""Task suites: named, fixed lists of task specs, stored as JSON in ``suites/``.

A suite file is ``{"name", "description", "steps", "tasks": [{"family", "spec"}]}``
where each task entry is exactly what ``tasks.spec_to_json`` writes, and
``steps`` is the suite's default horizon. Suites: ``tiny`` (for tests), one per
task family (``quadratic``, ``image_mlp``, ...), and ``heldout``: tasks outside
the ranges of ``tasks.sample_task(distribution="default")`` (other widths,
image sizes, a byte dataset the sampler never draws, Markov vocabularies and
temperatures outside its ranges, a quadratic 2x larger and 10x worse
conditioned) at a longer horizon than meta-training unrolls.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import json
from typing import Any

import tasks
from meta_train.evaluation.base import EvalError


@dataclasses.dataclass(frozen=True)
class Suite:
  name: str
  description: str
  steps: int
  tasks: tuple[tuple[str, Any], ...]  # (family, spec)


def _dir():
  return importlib.resources.files(__package__) / "suites"


def suite_names() -> list[str]:
  """Names of the shipped suites, sorted."""
  return sorted(p.name[:-5] for p in _dir().iterdir() if p.name.endswith(".json"))


def load_suite(name: str) -> Suite:
  """Reads suite ``name``; an unknown name raises :class:`EvalError` listing the valid ones."""
  if name not in suite_names():
    raise EvalError(f"unknown task suite {name!r}; valid suites: {suite_names()}, or task "
                    f"family names {tasks.families()} (each runs its example spec).")
  data = json.loads((_dir() / f"{name}.json").read_text())
  specs = tuple((t["family"], tasks.spec_from_json(json.dumps(t))) for t in data["tasks"])
  return Suite(data["name"], data["description"], int(data["steps"]), specs)


def resolve_tasks(arg: str) -> tuple[list[tuple[str, Any]], int | None]:
  """``SUITE_OR_NAMES`` (comma-separated suites and/or family names) -> ``(tasks, steps)``.

  ``steps`` is the first suite's default horizon (``None`` if only families).
  """
  items = [x.strip() for x in arg.split(",") if x.strip()]
  if not items:
    raise EvalError("--tasks is empty; pass a suite name (e.g. tiny, heldout) or task "
                    f"families. Suites: {suite_names()}.")
  out, steps = [], None
  for item in items:
    if item in tasks.families() and item not in suite_names():
      out.append((item, tasks.get_family(item).example_spec()))
    else:
      suite = load_suite(item)
      out += suite.tasks
      steps = steps or suite.steps
  return out, steps


def task_id(family: str, spec: Any) -> str:
  """A stable id of a task: its name-like family plus a hash of its spec JSON."""
  text = tasks.spec_to_json(spec)
  return f"{family}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def write_suite(path: str, name: str, description: str, steps: int,
                specs: list[tuple[str, Any]]) -> None:
  """Writes a suite file (how the shipped suites were made)."""
  data = {"name": name, "description": description, "steps": steps,
          "tasks": [json.loads(tasks.spec_to_json(s)) for _, s in specs]}
  with open(path, "w") as f:
    json.dump(data, f, indent=1)
    f.write("\n")
