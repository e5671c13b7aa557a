"""Metrics on loss curves, and their aggregates with bootstrap confidence intervals.

Definitions (also written into every report):

* **final loss**: the last point of the training curve (the mean minibatch loss
  over the last window); NaN/inf count as +inf (diverged).
* **steps to reach a target**: the end step of the first curve window whose
  loss is <= the target (``None`` if never).
* **speedup** (VeLO, Metz et al. 2022): the steps tuned Adam needs to reach the
  method's final loss, divided by the method's steps, from tuned Adam's run
  continued to ``cap * num_steps``; ``cap`` when it never gets there. Its
  resolution is one window (``num_steps / num_points``).
* **floored log ratio**: ``log((final + f) / (adam_final + f))`` with the floor
  ``f`` = 1% of tuned Adam's first-window loss: two losses that differ by less
  than 1% of where training started are about equal, however small both are.
* **win**: 1 if the method's final loss is below tuned Adam's on the same
  task and seed, 1/2 on a tie, else 0. Win rate = mean over tasks and seeds.
* **IQM**: the mean of the middle 50% (Agarwal et al. 2021, "rliable").
* **bootstrap CI**: 95% percentile interval of the statistic over 2,000
  two-level resamples: tasks with replacement, then seeds within each task.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


def final_loss(curve: Sequence[float]) -> float:
  """The last point of ``curve``; NaN/inf -> +inf."""
  x = float(curve[-1])
  return x if np.isfinite(x) else float("inf")


def steps_to_reach(curve: Sequence[float], steps: Sequence[int], target: float) -> int | None:
  """The first ``steps[i]`` with ``curve[i] <= target``, or ``None``.

  Examples:
    >>> steps_to_reach([3.0, 2.0, 1.0], [10, 20, 30], 2.5)
    20
  """
  c = np.asarray(curve, np.float64)
  hit = np.nonzero(np.where(np.isfinite(c), c, np.inf) <= target)[0]
  return int(steps[hit[0]]) if len(hit) else None


def speedup(adam_curve: Sequence[float], adam_steps: Sequence[int], final: float,
            num_steps: int, cap: float) -> float:
  """Steps tuned Adam needs to reach ``final`` / ``num_steps``, capped at ``cap``.

  Examples:
    >>> speedup([4.0, 3.0, 2.0, 1.0], [25, 50, 75, 100], 2.0, 25, cap=4)
    3.0
    >>> speedup([4.0, 3.0], [25, 50], 0.5, 25, cap=4)
    4.0
  """
  reached = steps_to_reach(adam_curve, adam_steps, final)
  return float(cap) if reached is None else min(reached / num_steps, float(cap))


def win(final: float, adam_final: float) -> float:
  """1 if ``final < adam_final``, 0.5 on a tie, else 0."""
  return 1.0 if final < adam_final else 0.5 if final == adam_final else 0.0


def iqm(x: Sequence[float]) -> float:
  """Interquartile mean: the mean of the middle 50% (with fractional end weights).

  Examples:
    >>> iqm([1.0, 2.0, 3.0, 100.0])
    2.5
  """
  x = np.sort(np.asarray(x, np.float64))
  n = len(x)
  lo, hi = 0.25 * n, 0.75 * n
  # Weight of each sorted sample inside [lo, hi), so n need not be a multiple of 4.
  w = np.clip(np.minimum(np.arange(1, n + 1), hi) - np.maximum(np.arange(n), lo), 0, 1)
  return float(np.sum(w * x) / np.sum(w))


def median(x: Sequence[float]) -> float:
  return float(np.median(np.asarray(x, np.float64)))


def bootstrap_ci(by_task: dict[str, Sequence[float]], stat: Callable[[np.ndarray], float], *,
                 num_resamples: int = 2000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float, float]:
  """``(point, low, high)``: ``stat`` over all values and its two-level bootstrap CI."""
  groups = [np.asarray(v, np.float64) for v in by_task.values() if len(v)]
  point = stat(np.concatenate(groups))
  rng = np.random.default_rng(seed)
  stats = np.empty(num_resamples)
  for i in range(num_resamples):
    picked = rng.integers(len(groups), size=len(groups))
    stats[i] = stat(np.concatenate([g[rng.integers(len(g), size=len(g))]
                                    for g in (groups[j] for j in picked)]))
  a = (1 - level) / 2
  return float(point), float(np.quantile(stats, a)), float(np.quantile(stats, 1 - a))


_FLOOR = 1e-6  # losses at or below this count as solved (a ratio of two zeros is noise)
# A diverged run counts as this many times tuned Adam's loss, and so does any run worse than
# that: the cap makes divergence the worst score (a finite run 50x worse than Adam must not
# beat one that diverged) and keeps one hopeless task from swamping a mean over tasks.
WORST_RATIO = 10.0


def log_ratio(final: float, adam_final: float) -> float:
  """``log(final / adam_final)`` with both floored at 1e-6 and the ratio capped at
  :data:`WORST_RATIO`; a diverged (NaN/inf) ``final`` scores that cap, the worst score.
  NaN if Adam itself diverged: the ratio says nothing then (callers leave the task out).

  Examples:
    >>> round(log_ratio(0.5, 1.0), 3)
    -0.693
    >>> round(log_ratio(float("inf"), 1.0), 3)
    2.303
    >>> log_ratio(50.0, 1.0) == log_ratio(float("nan"), 1.0)
    True
  """
  if not np.isfinite(adam_final):
    return float("nan")
  ratio = max(final, _FLOOR) / max(adam_final, _FLOOR) if np.isfinite(final) else WORST_RATIO
  return float(np.log(min(ratio, WORST_RATIO)))


# Differences below this fraction of a task's starting loss count as noise in
# floored_log_ratio, so a task trained to 1e-3 cannot outweigh the others ten to one.
TOLERANCE = 0.01


def floored_log_ratio(final: float, adam_final: float, initial: float,
                      tolerance: float = TOLERANCE) -> float:
  """``log((final + f) / (adam_final + f))``, ``f = tolerance * |initial|``, capped like
  :func:`log_ratio` (a diverged ``final`` scores the cap; NaN if Adam diverged).

  ``initial`` is the task's starting loss. The plain log ratio of two near-solved
  runs (1e-3 vs 8e-3) is log 8, the same as 0.1 vs 0.8 on an unsolved task; here
  it is about as small as the absolute difference is next to the starting loss.

  Examples:
    >>> round(floored_log_ratio(0.008, 0.001, 2.3), 3)
    0.256
    >>> round(floored_log_ratio(0.8, 0.1, 2.3), 3)
    1.901
    >>> floored_log_ratio(float("nan"), 0.1, 2.3) == log_ratio(float("nan"), 0.1)
    True
  """
  if not np.isfinite(adam_final):
    return float("nan")
  f = tolerance * abs(initial) if np.isfinite(initial) else 0.0
  f = max(f, _FLOOR)
  if not np.isfinite(final):
    return float(np.log(WORST_RATIO))
  ratio = (max(final, 0.0) + f) / (max(adam_final, 0.0) + f)
  return float(np.log(min(ratio, WORST_RATIO)))


def against_reference(train: Sequence[float], train_steps: Sequence[int],
                      ref: dict, num_steps: int, cap: float) -> dict[str, float | int | None]:
  """A run's training curve scored against tuned Adam's record ``ref`` on the same task and seed.

  This is the one comparison every consumer uses (the report, meta-validation and
  ``export/best`` selection, the main job's table). ``ref`` is tuned Adam's
  ``RunRecord`` as JSON: ``train`` (its best-LR curve) and ``extra['long_train']`` /
  ``extra['long_train_steps']`` (that LR continued to ``cap * num_steps``).

  Returns:
    ``final`` (the run's final loss), ``adam_final``, ``win``, ``speedup``,
    ``log_ratio``, ``floored_log_ratio`` (floored at 1% of tuned Adam's first-window
    loss) and ``steps_to_adam`` (see the module docstring).
  """
  final, adam_final = final_loss(train), final_loss(ref["train"])
  initial = float(ref["train"][0])
  return {"final": final, "adam_final": adam_final, "win": win(final, adam_final),
          "speedup": speedup(ref["extra"]["long_train"], ref["extra"]["long_train_steps"],
                             final, num_steps, cap),
          "log_ratio": log_ratio(final, adam_final),
          "floored_log_ratio": floored_log_ratio(final, adam_final, initial),
          "steps_to_adam": steps_to_reach(train, train_steps, adam_final)}
