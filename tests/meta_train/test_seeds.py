"""meta_train.seeds: recipes compared over meta-training seeds at their export/best."""

import json
import math
import os

import pytest

from meta_train import seeds, train
from tests.meta_train import helpers

KEY = "val_floored_log_ratio"


def _row(step, score, win=0.5):
  return {"step": step, KEY: score, "val_win_rate": win}


def test_best_row_is_export_best_within_the_budget():
  rows = [{"step": 0, "meta_loss": 1.0}, _row(250, -0.1), _row(500, -0.3), _row(750, -0.5),
          _row(1000, -0.9)]
  assert seeds.best_row(rows, KEY, 750)["step"] == 750
  assert seeds.best_row(rows, KEY, 600)["step"] == 500
  assert seeds.best_row(rows, KEY, 100) is None  # no evaluation yet


def test_best_row_keeps_the_last_row_of_a_step_and_skips_non_finite_scores():
  # A resumed run logs step 500 again; the second row is what its state kept.
  rows = [_row(250, -0.2), _row(500, -0.9), _row(500, -0.1), _row(750, math.nan),
          _row(1000, math.inf)]
  assert seeds.best_row(rows, KEY, 10 ** 9)["step"] == 250
  assert seeds.best_row([_row(250, -0.2), _row(500, -0.2)], KEY, 500)["step"] == 250  # a tie


def test_compare_is_the_mean_difference_against_twice_its_standard_error():
  c = seeds.compare([0.0, 0.1, 0.2], [-0.3, -0.2, -0.1])
  assert c.mean_a == pytest.approx(0.1) and c.mean_b == pytest.approx(-0.2)
  assert c.diff == pytest.approx(-0.3)
  assert c.stderr == pytest.approx(math.sqrt(2 * 0.01 / 3))
  assert c.resolved
  close = seeds.compare([0.0, 0.1, 0.2], [0.0, 0.1, 0.3])  # diff 0.033, stderr 0.088
  assert not close.resolved


def test_one_seed_resolves_nothing():
  c = seeds.compare([-0.183], [-0.5])
  assert math.isinf(c.stderr) and not c.resolved
  with pytest.raises(ValueError, match="at least one seed"):
    seeds.compare([], [0.1])


def _workdir(tmp_path, name, rows, **config):
  d = str(tmp_path / name)
  os.makedirs(d)
  train.check_workdir(d, helpers.tiny_config(**config))  # writes the run's config.json
  with open(os.path.join(d, "metrics.jsonl"), "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  return d


def test_run_score_reads_a_workdir(tmp_path):
  d = _workdir(tmp_path, "s1", [_row(250, -0.2, 0.75), _row(500, -0.1)], seed=1, eval_seed=0,
               eval_select=KEY)
  score, validation = seeds.run_score(d, 750)
  assert (score.seed, score.step, score.score, score.win_rate) == (1, 250, -0.2, 0.75)
  assert validation["validation seed"] == 0 and validation["eval_select"] == KEY


def test_runs_validated_on_other_tasks_are_refused(tmp_path):
  s0 = _workdir(tmp_path, "s0", [_row(250, -0.2)], seed=0, eval_select=KEY)
  fixed = _workdir(tmp_path, "fixed", [_row(250, -0.1)], seed=1, eval_seed=0, eval_select=KEY)
  redrawn = _workdir(tmp_path, "redrawn", [_row(250, -0.1)], seed=1, eval_select=KEY)
  v = {d: seeds.run_score(d, 750)[1] for d in (s0, fixed, redrawn)}
  seeds.check_comparable({s0: v[s0], fixed: v[fixed]})  # seed 0's draw on both sides
  with pytest.raises(ValueError, match=r"validation seed=1 .*--config.eval_seed"):
    seeds.check_comparable(v)


def test_a_workdir_without_a_run_or_an_evaluation_names_the_fix(tmp_path):
  with pytest.raises(ValueError, match="no config.json"):
    seeds.run_score(str(tmp_path), 750)
  d = _workdir(tmp_path, "young", [{"step": 3, "meta_loss": 1.0}], eval_select=KEY)
  with pytest.raises(ValueError, match="no finite val_floored_log_ratio at or before step 750"):
    seeds.run_score(d, 750)
