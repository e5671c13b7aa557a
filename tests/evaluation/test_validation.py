"""Meta-validation uses the benchmark's own yardstick: same runs, same reference, same scores."""

import jax
import numpy as np
import pytest

import learned_opt
import tasks
from meta_train import evaluation
from meta_train.evaluation import report, suites, validation

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
  rows = [{"final": float("inf"), "adam_final": 1.0, "win": 0.0, "speedup": 0.0,
           "log_ratio": np.log(10.0), "norm_final": 10.0, "norm_adam_final": 1.0},
          {"final": 0.5, "adam_final": float("inf"), "win": 1.0, "speedup": 4.0,
           "log_ratio": 0.0, "norm_final": 0.5, "norm_adam_final": 10.0}]
  out = evaluation.summarize(rows)
  # A diverged theta counts as 10x tuned Adam's loss; a task tuned Adam diverges on is left out.
  assert out[evaluation.SELECT] == pytest.approx(np.log(10.0))
  assert out["val_win_rate"] == 0.0
