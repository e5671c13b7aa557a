"""Recipes compared over meta-training seeds: one run per seed, each scored at its export/best.

A single meta-training run is one draw from its recipe: re-seeding the same config
moved the shipped recipe's validation score by 0.05-0.13 (docs/pretrained.md, tenth
round), as much as the levers it was asked to judge. So two recipes are compared on
the mean of their seeds' scores, and the difference counts only when it is larger
than twice its standard error. A seed's score is what its in-run validation picked
``export/best`` by (``config.eval_select``), among the evaluations at or before a
common outer-step budget; the runs must have validated on the same tasks
(``config.eval_seed``), which :func:`run_score` checks.

The CLI is ``scripts/compare_seeds.py``.
"""

import json
import math
import os
from typing import NamedTuple, Sequence

from meta_train import config as config_lib
from meta_train import logs

# What a run's validation scored on; two runs are comparable only where these agree.
_VALIDATION_FIELDS = ("eval_num_tasks", "eval_num_steps", "eval_suites", "eval_select",
                      "eval_every", "task_distribution", "task_family")


class SeedScore(NamedTuple):
  workdir: str
  seed: int
  step: int  # the outer step of the run's export/best within the budget
  score: float  # its eval_select value (lower is better)
  win_rate: float  # its val_win_rate


class Comparison(NamedTuple):
  mean_a: float
  mean_b: float
  diff: float  # mean_b - mean_a: negative when b scores lower (better)
  stderr: float  # sqrt(sd_a^2 / n_a + sd_b^2 / n_b)
  resolved: bool  # |diff| > 2 stderr


def best_row(rows: Sequence[dict], key: str, max_step: int) -> dict | None:
  """The row with the lowest ``key`` among steps <= ``max_step``; None if no row has it.

  A resumed run logs again the steps after its last checkpoint, so the last row
  of each step is the one its state kept. Ties go to the earlier step, as
  export/best is only rewritten by a strictly better score.
  """
  by_step = {r["step"]: r for r in rows if key in r and r["step"] <= max_step}
  finite = [r for _, r in sorted(by_step.items()) if math.isfinite(r[key])]
  return min(finite, key=lambda r: r[key], default=None)


def validation_of(config: dict) -> dict:
  """The fields of a saved config that decide what its validation scored on."""
  c = config_lib.with_defaults(config_lib.upgrade(config))
  return {"validation seed": config_lib.validation_seed(c),
          **{k: c[k] for k in _VALIDATION_FIELDS}}


def run_score(workdir: str, max_step: int) -> tuple[SeedScore, dict]:
  """``workdir``'s export/best within ``max_step`` and what its validation scored on."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise ValueError(f"{workdir} holds no config.json; pass a meta-training workdir "
                     "(the --workdir of python -m meta_train).")
  with open(path) as f:
    saved = json.load(f)
  validation = validation_of(saved)
  key = validation["eval_select"]
  row = best_row(logs.read_metrics(os.path.join(workdir, "metrics.jsonl")), key, max_step)
  if row is None:
    raise ValueError(f"{workdir} has no finite {key} at or before step {max_step}; let it "
                     "reach an evaluation (config.eval_every) or raise --max_step.")
  return SeedScore(workdir, saved["seed"], row["step"], row[key],
                   row.get("val_win_rate", math.nan)), validation


def mean_sd(xs: Sequence[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (0 for one value)."""
  n = len(xs)
  mean = sum(xs) / n
  sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
  return mean, sd


def compare(a: Sequence[float], b: Sequence[float]) -> Comparison:
  """Recipe b against recipe a over their seeds' scores (Welch's standard error).

  With one seed on either side the standard error is unknown (inf), and nothing is
  resolved: a single run cannot tell a lever from the recipe's seed noise.
  """
  if not a or not b:
    raise ValueError("compare needs at least one seed's score on each side.")
  (ma, sa), (mb, sb) = mean_sd(a), mean_sd(b)
  se = math.sqrt(sa ** 2 / len(a) + sb ** 2 / len(b)) if min(len(a), len(b)) > 1 else math.inf
  return Comparison(ma, mb, mb - ma, se, abs(mb - ma) > 2 * se)


def check_comparable(validations: dict[str, dict]) -> None:
  """Raises ValueError naming the first field in which two runs' validations differ."""
  (first, ref), *rest = validations.items()
  for workdir, v in rest:
    for k in ref:
      if v[k] != ref[k]:
        hint = (" (re-seeded runs of one recipe need --config.eval_seed=<one seed> to "
                "validate on the same tasks)" if k == "validation seed" else "")
        raise ValueError(f"{workdir} validated with {k}={v[k]!r} and {first} with "
                         f"{ref[k]!r}; their scores are not comparable{hint}.")
