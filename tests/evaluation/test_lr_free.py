"""The LR-free baselines train a small model in one untuned run; the cosine reaches 0."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meta_train.evaluation import baselines, lr_free
from meta_train.evaluation.base import Setting

SETTING = Setting(num_steps=40, num_points=8, num_evals=2, snapshot_cycles=2).check()
LR_FREE = ["prodigy", "prodigy_cosine", "dadapt_adamw_cosine", "dog_cosine", "mechanic",
           "schedule_free_adamw"]


@pytest.mark.parametrize("name", LR_FREE)
def test_untuned_baseline_trains_in_one_run(name, task):
  b = baselines.get_baseline(name)
  assert b.budget == "1 run (none)"
  rec = b.fn(task, 0, SETTING)
  assert np.isfinite(rec.train[-1]) and rec.train[-1] < rec.train[0], rec.train
  assert rec.steps == SETTING.num_steps  # no tuning runs to count
  if name == "schedule_free_adamw":
    assert "schedule_free_eval_params" in rec.extra["eval_params"]


def updates_and_states(build, num_steps):
  """``num_steps + 1`` updates of ``build(num_steps)`` for a fixed gradient, with the states."""
  tx = lr_free.Untuned(build)({}, num_steps)
  params = {"w": jnp.ones((3,))}
  state, out = tx.init(params), []
  with jax.numpy_dtype_promotion("standard"):  # optax.contrib mixes dtypes, as in the runner
    for _ in range(num_steps + 1):
      u, state = tx.update({"w": jnp.asarray([1.0, -2.0, 0.5])}, state, params)
      out.append((u["w"], state))
  return out


@pytest.mark.parametrize("build", [lr_free._prodigy_cosine, lr_free._dog_cosine])
def test_cosine_decays_the_update_to_zero(build):
  norms = [float(jnp.linalg.norm(u)) for u, _ in updates_and_states(build, 4)]
  assert norms[0] > 0 and norms[4] == 0.0, norms


def test_dadapt_cosine_scales_what_enters_the_momentum():
  # D-Adaptation (optax and the reference) multiplies the gradient entering its first moment
  # by the LR, so at the schedule's 0 no new gradient enters and the step is momentum alone.
  out = updates_and_states(lr_free._dadapt_adamw_cosine, 4)
  before, after = out[3][1].exp_avg["w"], out[4][1].exp_avg["w"]
  assert float(jnp.linalg.norm(before)) > 0
  np.testing.assert_allclose(after, 0.9 * before, rtol=1e-6)


def test_untuned_make_tx_is_one_static_key():
  # The runner's compile cache is keyed on make_tx: equal builders must hash equal.
  assert lr_free.Untuned(lr_free._mechanic) == lr_free.Untuned(lr_free._mechanic)
  assert hash(lr_free.Untuned(lr_free._mechanic)) == hash(lr_free.Untuned(lr_free._mechanic))
  assert lr_free.Untuned(lr_free._mechanic) != lr_free.Untuned(lr_free._prodigy)
