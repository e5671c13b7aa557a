"""Metrics are exact on synthetic curves with known answers."""

import numpy as np
import pytest

from meta_train.evaluation import metrics

STEPS = [10, 20, 30, 40]


def test_speedup_exact():
  # Adam's continued run: 1/(1+t) sampled every 10 steps up to 4x the horizon of 40.
  adam_steps = list(range(10, 161, 10))
  adam = [1.0 / (1 + t) for t in adam_steps]
  # A method that ends at Adam's loss at step 120 is 3x faster over 40 steps.
  assert metrics.speedup(adam, adam_steps, 1.0 / 121, 40, cap=4) == pytest.approx(3.0)
  # Ending at Adam's loss at step 20 is 2x slower.
  assert metrics.speedup(adam, adam_steps, 1.0 / 21, 40, cap=4) == pytest.approx(0.5)
  # Better than Adam ever gets: the cap.
  assert metrics.speedup(adam, adam_steps, 1e-6, 40, cap=4) == 4.0
  # Diverged (inf final loss): Adam is there at its first point.
  assert metrics.speedup(adam, adam_steps, float("inf"), 40, cap=4) == pytest.approx(0.25)


def test_steps_to_reach_and_final():
  curve = [5.0, float("nan"), 2.0, 1.0]
  assert metrics.steps_to_reach(curve, STEPS, 2.0) == 30
  assert metrics.steps_to_reach(curve, STEPS, 0.5) is None
  assert metrics.final_loss([1.0, float("nan")]) == float("inf")


def test_win_iqm_median():
  assert [metrics.win(1.0, 2.0), metrics.win(2.0, 2.0), metrics.win(3.0, 2.0)] == [1, 0.5, 0]
  assert metrics.iqm([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)
  assert metrics.iqm([1.0, 2.0, 3.0, 100.0]) == pytest.approx(2.5)
  assert metrics.iqm([3.0]) == 3.0
  assert metrics.median([1.0, 3.0, 100.0]) == 3.0


def test_floored_log_ratio_ties_near_solved_tasks_and_keeps_the_rest():
  # Far above the floor (1% of the starting loss 2.0 = 0.02) it is the plain log ratio.
  assert metrics.floored_log_ratio(1.0, 0.5, 2.0) == pytest.approx(np.log(1.02 / 0.52))
  # Near zero the floor dominates: 1e-3 vs 8e-3 is small, not log 8.
  near = metrics.floored_log_ratio(8e-3, 1e-3, 2.0)
  assert near == pytest.approx(np.log(0.028 / 0.021)) and near < 0.2 * np.log(8.0)
  # Order and sign are kept, and both solved is a tie.
  assert metrics.floored_log_ratio(1e-3, 8e-3, 2.0) == pytest.approx(-near)
  assert metrics.floored_log_ratio(0.0, 0.0, 2.0) == 0.0
  # Divergence is the cap; Adam's divergence is NaN (left out), as in log_ratio.
  assert metrics.floored_log_ratio(float("inf"), 1e-3, 2.0) == pytest.approx(np.log(10.0))
  assert metrics.floored_log_ratio(500.0, 1e-3, 2.0) == pytest.approx(np.log(10.0))
  assert np.isnan(metrics.floored_log_ratio(0.1, float("nan"), 2.0))
  # A non-finite starting loss falls back to the plain ratio's 1e-6 floor.
  assert metrics.floored_log_ratio(0.2, 0.1, float("nan")) == pytest.approx(
      metrics.log_ratio(0.2, 0.1), rel=1e-4)


def test_bootstrap_ci_reproducible_and_brackets_point():
  data = {"a": [1.0, 2.0, 3.0], "b": [10.0, 11.0, 12.0], "c": [5.0, 5.0, 6.0]}
  one = metrics.bootstrap_ci(data, np.mean, num_resamples=300)
  assert one == metrics.bootstrap_ci(data, np.mean, num_resamples=300)
  point, lo, hi = one
  assert lo <= point <= hi and lo < hi
  assert metrics.bootstrap_ci({"a": [2.0, 2.0]}, np.mean, num_resamples=50) == (2.0, 2.0, 2.0)


def test_seconds_per_step_counts_tuning_and_measurement_steps():
  from meta_train.evaluation import report  # pylint: disable=g-import-not-at-top
  run = {"steps": 14 * 100, "run_s": 3.0, "extra": {"measurement_steps": 100}}
  assert report.seconds_per_step(run) == pytest.approx(3.0 / 1500)
  assert report.seconds_per_step({"steps": 100, "run_s": 0.5, "extra": {}}) == pytest.approx(0.005)
