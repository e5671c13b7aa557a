"""Every registered baseline lowers the loss of a small task; the LR range test is sensible."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tasks
from meta_train.evaluation import baselines, runner, schedules
from meta_train.evaluation.base import EvalError, Setting

SETTING = Setting(num_steps=40, num_points=8, num_evals=2, snapshot_cycles=2).check()


@pytest.mark.parametrize("name", baselines.baselines())
def test_baseline_lowers_loss(name, task):
  if baselines.get_baseline(name).unavailable:  # an optional extra is not installed
    pytest.skip(baselines.get_baseline(name).unavailable)
  rec = baselines.get_baseline(name).fn(task, 0, SETTING)
  assert len(rec.train) == SETTING.num_points and len(rec.eval) == SETTING.num_evals
  assert np.isfinite(rec.train[-1]) and rec.train[-1] < rec.train[0], rec.train
  assert rec.steps >= SETTING.num_steps  # the cost includes tuning, never less than one run


def test_tuned_adam_budget_and_long_run(task):
  rec = baselines.get_baseline("adam_tuned").fn(task, 0, SETTING)
  assert rec.steps == 14 * SETTING.num_steps
  assert rec.extra["lr"] in baselines.ADAM_GRID
  assert rec.train[-1] == pytest.approx(min(rec.extra["trials"].values()))
  assert len(rec.extra["long_train"]) == SETTING.speedup_cap * SETTING.num_points
  # The continuation replays the selected grid run before going on (same seed, same program).
  np.testing.assert_allclose(rec.extra["long_train"][:SETTING.num_points], rec.train, rtol=1e-5)


@pytest.mark.parametrize("conditioning", [10.0, 100.0])
def test_lr_range_test_respects_stability_limit(conditioning):
  # Plain GD on 0.5 (x-c)^T A (x-c) diverges for lr > 2 / L, L = max eigenvalue = conditioning.
  task = tasks.build_task("quadratic", tasks.QuadraticSpec(dim=8, conditioning=conditioning,
                                                           noise=0.0))
  setting = Setting(num_steps=200, num_points=10, num_evals=2, snapshot_cycles=2).check()
  lrs = schedules.as_array(schedules.exponential_ramp(1e-5, 10.0, 200), 200)
  hp = {"lrs": jnp.asarray(lrs), "momentum": jnp.float32(0.0)}
  out = runner.run(schedules.scheduled_sgd, hp, task, 0, setting)
  limit = 2.0 / conditioning
  for rule in ("steepest", "min/10"):
    lr = baselines.lr_range_test(out.losses, lrs, rule=rule)
    assert limit / 50 < lr < limit, (rule, lr, limit)


def test_lr_range_test_bad_rule():
  with pytest.raises(EvalError, match="steepest"):
    baselines.lr_range_test(np.ones(5), np.ones(5), rule="valley")


def test_layer_order():
  # The order now comes from the task contract (Task.layer_order), not from module names.
  task = tasks.build_task("transformer_lm", tasks.TransformerLMSpec(depth=1))
  assert baselines.layer_order(task) == (
      "Embed_0", "position", "Block_0", "LayerNorm_0", "Dense_0")
  wrapped = tasks.augment(task, jax.random.key(0))
  assert baselines.layer_order(wrapped) == baselines.layer_order(task)
  assert baselines.freeze_fractions(3).tolist() == [0.5, 0.5625, 1.0]


def test_registry_rejects_duplicates_and_unknown():
  with pytest.raises(EvalError, match="already registered"):
    baselines.register_baseline("adam_tuned", "", "")(lambda *a: None)
  with pytest.raises(EvalError, match="valid baselines"):
    baselines.get_baseline("adam_tunned")
