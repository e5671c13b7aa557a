"""Meta-validation uses the benchmark's own yardstick: same runs, same reference, same scores."""

import jax
import numpy as np
import pytest

import learned_opt
import tasks
from meta_train import evaluation
from meta_train.evaluation import report, suites, validation
from meta_train.evaluation.base import RunRecord

STEPS = 40


@pytest.fixture(scope="module")
def tiny():
  return [(f"{f}", tasks.get_family(f).build(s)) for f, s in suites.load_suite("tiny").tasks]


def test_validator_scores_equal_the_reports(tiny, tmp_path):
  arch, theta = learned_opt.resolve("mlp-demo-v0")
  validator = evaluation.Validator(tiny, validation.setting(STEPS))
  rows = validator.rows(arch, theta)
  s = validator.setting
  results = evaluation.evaluate(evaluation.EvalConfig(
      optimizers=("mlp-demo-v0",), tasks="tiny", out=str(tmp_path), steps=STEPS, seeds=1,
      baselines=("none",), num_points=s.num_points, num_evals=s.num_evals,
      eval_batches=s.eval_batches, speedup_cap=s.speedup_cap,
      snapshot_cycles=s.snapshot_cycles), log=lambda _: None)
  by_task = {r["task"]: r for r in report._rows(results) if r["method"] == "mlp-demo-v0"}
  ids = [suites.task_id(f, sp) for f, sp in suites.load_suite("tiny").tasks]
  for tid, mine in zip(ids, rows):
    theirs = by_task[tid]
    for k in ("final", "win", "speedup", "log_ratio"):
      assert mine[k] == pytest.approx(theirs[k], rel=1e-6), (tid, k)
  score = validator.score(arch, theta)
  assert score[evaluation.SELECT] == pytest.approx(np.mean([r["log_ratio"] for r in rows]))
  assert 0.0 <= score["val_win_rate"] <= 1.0


def test_reference_is_computed_once(tiny, monkeypatch):
  validator = evaluation.Validator(tiny[:1], validation.setting(20))
  arch = learned_opt.get("mlp")
  theta = arch.init_meta(jax.random.key(0))
  validator.score(arch, theta)
  monkeypatch.setattr(validation.baselines, "adam_tuned",
                      lambda *a: pytest.fail("tuned Adam recomputed"))
  validator.score(arch, theta)


def test_summarize_diverged_and_adam_diverged():
  rows = [{"task": "a/1", "final": float("inf"), "adam_final": 1.0, "win": 0.0, "speedup": 0.0,
           "log_ratio": np.log(10.0), "floored_log_ratio": np.log(10.0), "norm_final": 10.0,
           "norm_adam_final": 1.0},
          {"task": "b/1", "final": 0.5, "adam_final": float("inf"), "win": 1.0, "speedup": 4.0,
           "log_ratio": 0.0, "floored_log_ratio": 0.0, "norm_final": 0.5,
           "norm_adam_final": 10.0}]
  out = evaluation.summarize(rows)
  # A diverged theta counts as 10x tuned Adam's loss; a task tuned Adam diverges on is left out.
  assert out[evaluation.SELECT] == pytest.approx(np.log(10.0))
  assert out["val_floored_log_ratio"] == pytest.approx(np.log(10.0))
  assert out["val_win_rate"] == 0.0 and out["val_loss_rate"] == 1.0


# --- Selection on diverged runs, through Validator.rows (raw losses, then the normaliser).


def _record(curve, lr=1e-2):
  steps = [10 * (i + 1) for i in range(len(curve))]
  return RunRecord(train=list(curve), train_steps=steps, eval=[curve[-1]],
                   eval_steps=[steps[-1]], steps=steps[-1], compile_s=0.0, run_s=0.0,
                   extra={"lr": lr, "long_train": list(curve), "long_train_steps": steps})


def _score(tiny, monkeypatch, learned, adam):
  """Validator.score of a theta whose final loss on tiny task i is ``learned[i]``, against
  tuned Adam's ``adam[i]`` (both stubbed, so nothing trains)."""
  runs = iter([_record([2.0, x]) for x in learned])
  refs = iter([_record([2.0, x]) for x in adam])
  monkeypatch.setattr(validation.optimizers, "run_learned", lambda *a, **k: next(runs))
  monkeypatch.setattr(validation.baselines, "adam_tuned", lambda *a: next(refs))
  return evaluation.Validator(tiny, validation.setting(20)).score(None, None)


@pytest.mark.parametrize("diverged", [float("nan"), float("inf")])
def test_a_diverged_theta_counts_as_ten_times_tuned_adams_loss(tiny, monkeypatch, diverged):
  s = _score(tiny, monkeypatch, [diverged, 0.5], [1.0, 0.5])
  assert s[evaluation.SELECT] == pytest.approx(np.log(10.0) / 2)  # not the normaliser's 10
  assert s["val_win_rate"] == pytest.approx(0.25)  # a loss, and a tie
  assert s["val_learned"] > s["val_adam_tuned"]


def test_a_diverged_theta_never_beats_a_finite_one(tiny, monkeypatch):
  diverged = _score(tiny, monkeypatch, [float("nan"), 0.5], [1.0, 0.5])
  awful = _score(tiny, monkeypatch, [50.0, 0.5], [1.0, 0.5])  # finite, 50x tuned Adam
  assert diverged[evaluation.SELECT] >= awful[evaluation.SELECT]


@pytest.mark.parametrize("diverged", [float("nan"), float("inf")])
def test_a_task_tuned_adam_diverges_on_is_left_out(tiny, monkeypatch, diverged):
  # As Adam at an infinite LR: a "win" against it says nothing about theta.
  s = _score(tiny, monkeypatch, [0.1, 1.0], [diverged, 0.5])
  assert s["val_win_rate"] == 0.0  # only the second task counts, where theta is 2x worse
  assert s[evaluation.SELECT] == pytest.approx(np.log(2.0))
  assert s["val_median_speedup"] == 1.0  # not the cap (4) the first task would add


def test_a_near_solved_task_does_not_dominate_the_floored_score(tiny, monkeypatch):
  # Both tasks start at 2.0. Theta loses 0.008 vs 0.001 on a task both nearly solve and
  # halves tuned Adam's loss on the other: the plain mean says "worse" (log 8 swamps
  # log 1/2); with losses floored at 1% of the starting loss the first is nearly a tie.
  s = _score(tiny, monkeypatch, [0.008, 0.3], [0.001, 0.6])
  assert s[evaluation.SELECT] == pytest.approx((np.log(8.0) + np.log(0.5)) / 2)
  assert s[evaluation.SELECT] > 0
  assert s["val_floored_log_ratio"] == pytest.approx(
      (np.log(0.028 / 0.021) + np.log(0.32 / 0.62)) / 2)
  assert s["val_floored_log_ratio"] < 0
  assert s["val_loss_rate"] == pytest.approx(0.5)


@pytest.mark.parametrize("key", evaluation.SELECTABLE)
def test_no_comparable_task_gives_a_score_that_cannot_select(tiny, monkeypatch, key):
  s = _score(tiny, monkeypatch, [0.1, 0.1], [float("nan"), float("inf")])
  assert not np.isfinite(s[key])
  assert np.isnan(s["val_win_rate"]) and np.isnan(s["val_median_speedup"])
  assert evaluation.summarize([])[key] == float("inf")


def test_family_scores_weigh_each_family_alike():
  """Three image MLPs lost and one quadratic won: per task 1 of 4 wins, per family 1 of 2;
  the family score is the mean of the two families' means, and diverged-Adam tasks are left
  out as in the task-weighted score."""
  row = lambda task, flr, win, adam=1.0: {
      "task": task, "final": 1.0, "adam_final": adam, "win": win, "speedup": 1.0,
      "log_ratio": flr, "floored_log_ratio": flr, "norm_final": 1.0, "norm_adam_final": 1.0}
  rows = [row("image_mlp/a", 0.3, 0.0), row("image_mlp/b", 0.2, 0.0), row("image_mlp/c", 0.1, 0.0),
          row("quadratic/d96", -0.8, 1.0), row("rnn_lm/x", -5.0, 1.0, adam=float("inf"))]
  out = evaluation.summarize(rows)
  assert out["val_win_rate"] == pytest.approx(0.25)
  assert out["val_family_win_rate"] == pytest.approx(0.5)
  assert out["val_floored_log_ratio"] == pytest.approx((0.3 + 0.2 + 0.1 - 0.8) / 4)
  assert out["val_family_floored_log_ratio"] == pytest.approx((0.2 - 0.8) / 2)
  assert validation.family("image_mlp/blobs8/16_gelu") == "image_mlp"
