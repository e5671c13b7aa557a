"""The outer optimizer's options: the pull toward theta's init, and which metric selects export/best."""

import math
import shutil
import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import learned_opt
from meta_train import config as config_lib
from meta_train import engine, evaluation, train
from tests.meta_train import helpers


def _run_updates(tx, theta, grad_fn, n):
  state = tx.init(theta)
  for _ in range(n):
    with jax.numpy_dtype_promotion("standard"):  # optax's bias correction, as in engine
      updates, state = tx.update(grad_fn(theta), state, theta)
    theta = optax.apply_updates(theta, updates)
  return theta


def test_anchor_decay_bounds_a_steady_drift_at_one_over_the_rate():
  # A constant meta-gradient (a bias, or a signal) moves plain Adam by lr per update
  # for ever; with the pull, the displacement settles where Adam's unit direction
  # and rate * displacement cancel: 1 / rate.
  theta0 = {"w": jnp.zeros(3)}
  grad = lambda t: {"w": jnp.ones(3)}
  plain = _run_updates(engine.outer_optimizer(learning_rate=0.01, clip_norm=10.0), theta0,
                       grad, 1500)
  pulled = _run_updates(engine.outer_optimizer(learning_rate=0.01, clip_norm=10.0,
                                               anchor_decay=10.0), theta0, grad, 1500)
  np.testing.assert_allclose(plain["w"], -15.0, rtol=1e-3)
  np.testing.assert_allclose(pulled["w"], -0.1, rtol=0.02)


def test_anchor_decay_returns_theta_to_its_init_without_signal():
  # Zero meta-gradient after a displacement: Adam alone leaves theta where it is; the
  # pull brings it back with time constant 1 / (rate * lr) updates.
  theta0 = {"w": jnp.array([0.5, -0.5])}
  tx = engine.outer_optimizer(learning_rate=0.01, clip_norm=1.0, anchor_decay=10.0)
  state = tx.init(theta0)
  theta = {"w": theta0["w"] + 1.0}
  for _ in range(20):  # 20 updates at 1 / (10 * 0.01) = 10 updates each
    with jax.numpy_dtype_promotion("standard"):
      updates, state = tx.update({"w": jnp.zeros(2)}, state, theta)
    theta = optax.apply_updates(theta, updates)
  np.testing.assert_allclose(theta["w"] - theta0["w"], (1 - 0.1) ** 20, rtol=1e-4)


def test_anchor_decay_needs_params():
  tx = engine.decay_to_anchor(1.0)
  with pytest.raises(ValueError, match="needs params"):
    tx.update({"w": jnp.ones(1)}, tx.init({"w": jnp.ones(1)}))


def _tiny(**kw):
  c = helpers.load_config("tiny")
  c.outer_steps, c.checkpoint_every, c.keep_checkpoints, c.eval_every = 4, 2, 5, 0
  for k, v in kw.items():
    c[k] = v
  return c


def test_anchor_decay_changes_the_run_and_resumes_bit_exact(tmp_path, capsys):
  full = train.run(_tiny(anchor_decay=50.0), str(tmp_path / "a"))
  plain = train.run(_tiny(), str(tmp_path / "b"))
  assert not np.allclose(helpers.flat(full["theta"]), helpers.flat(plain["theta"]))
  # Killed after step 2: the anchor comes back with the optimizer state.
  shutil.rmtree(tmp_path / "a" / "checkpoints" / "4")
  capsys.readouterr()
  resumed = train.run(_tiny(anchor_decay=50.0), str(tmp_path / "a"))
  assert "Resuming from checkpoint at outer step 2" in capsys.readouterr().out
  chex.assert_trees_all_equal(resumed["theta"], full["theta"])
  with pytest.raises(train.WorkdirError, match="anchor_decay"):
    train.check_workdir(str(tmp_path / "a"), _tiny(anchor_decay=5.0))
  # export/best on disk was picked by the run's key; another key would compare against it.
  with pytest.raises(train.WorkdirError, match="eval_select"):
    train.check_workdir(str(tmp_path / "a"), _tiny(anchor_decay=50.0,
                                                   eval_select="val_loss_rate"))


@pytest.mark.parametrize("field,value,needle", [
    ("anchor_decay", -1.0, r"config\.anchor_decay must be a number >= 0"),
    ("eval_select", "val_win_rate", r"valid: \['val_log_ratio', 'val_floored_log_ratio'"),
])
def test_bad_outer_options_name_the_fix(field, value, needle):
  with pytest.raises(config_lib.ConfigError, match=needle):
    config_lib.validate(_tiny(**{field: value}), devices=False)


class _Validator:
  def __init__(self, scores):
    self.scores = list(scores)

  def score(self, arch, theta):
    del arch, theta
    return self.scores.pop(0)


@pytest.mark.parametrize("key,best_step", [("val_log_ratio", 3), ("val_floored_log_ratio", 6)])
def test_eval_select_picks_export_best(tmp_path, key, best_step):
  arch = learned_opt.get("adam_hparams", hidden_size=4)
  theta = arch.init_meta(jax.random.key(0))
  scores = [{"val_log_ratio": 0.1, "val_floored_log_ratio": 0.3},
            {"val_log_ratio": 0.2, "val_floored_log_ratio": -0.1}]
  job = types.SimpleNamespace(c=types.SimpleNamespace(eval_select=key), workdir=str(tmp_path),
                              arch=arch, best=(math.inf, -1), step=3,
                              state=types.SimpleNamespace(theta=theta),
                              validator=_Validator(scores))
  train.evaluate_and_export(job)
  job.step = 6
  train.evaluate_and_export(job)
  assert job.best[1] == best_step
  assert key in evaluation.SELECTABLE


def test_lr_mults_give_the_named_entries_their_own_outer_lr():
  # Adam moves every coordinate by ~lr under a steady gradient; a multiplier scales that
  # for its entry only, nested leaves included, and leaves the others as plain Adam.
  theta0 = {"w": jnp.zeros(3), "ctrl": {"a": jnp.zeros(2), "b": jnp.zeros(())}}
  grad = lambda t: jax.tree.map(jnp.ones_like, t)
  plain = _run_updates(engine.outer_optimizer(learning_rate=0.01, clip_norm=10.0), theta0,
                       grad, 100)
  fast = _run_updates(engine.outer_optimizer(learning_rate=0.01, clip_norm=10.0,
                                             lr_mults={"ctrl": 30.0}), theta0, grad, 100)
  np.testing.assert_allclose(fast["w"], plain["w"], rtol=1e-6)
  np.testing.assert_allclose(plain["ctrl"]["a"], -1.0, rtol=1e-3)
  for leaf in jax.tree.leaves(fast["ctrl"]):
    np.testing.assert_allclose(leaf, -30.0, rtol=1e-3)
  # A "/" path names a nested entry; the longest name that covers a leaf wins.
  nested = _run_updates(engine.outer_optimizer(learning_rate=0.01, clip_norm=10.0,
                                               lr_mults={"ctrl": 2.0, "ctrl/a": 30.0}),
                        theta0, grad, 100)
  np.testing.assert_allclose(nested["ctrl"]["a"], -30.0, rtol=1e-3)
  np.testing.assert_allclose(nested["ctrl"]["b"], -2.0, rtol=1e-3)
  np.testing.assert_allclose(nested["w"], plain["w"], rtol=1e-6)
  assert engine.entry_names(theta0) == ["ctrl", "ctrl/a", "ctrl/b", "w"]
  # No multipliers: the optimizer state has the structure old checkpoints hold.
  assert (jax.tree.structure(engine.outer_optimizer(learning_rate=0.01, clip_norm=1.0,
                                                    lr_mults={}).init(theta0))
          == jax.tree.structure(engine.outer_optimizer(learning_rate=0.01,
                                                       clip_norm=1.0).init(theta0)))


@pytest.mark.parametrize("value,needle", [
    ("schedule=30", r"names 'schedule', which is not an entry of the MLPLOpt theta; valid: "
                    r"\['global_w', 'log_lr', 'mlp', 'mlp/b0', 'mlp/b1', 'mlp/w0', 'mlp/w1', "
                    r"'schedule_w'\]"),
    ("mlp/w9=30", r"names 'mlp/w9', which is not an entry"),
    ("schedule_w", "is not NAME=MULT"),
    ("schedule_w=0", "finite MULT > 0"),
    ("schedule_w=nan", "finite MULT > 0"),
    ("schedule_w=x", "finite MULT > 0"),
    (None, "must be a string"),
])
def test_bad_outer_lr_mults_name_the_fix(value, needle):
  c = helpers.load_config("prodigy_muon_wsd_illquad_ctrl_cpu", "tiny")
  c.outer_lr_mults = value
  with pytest.raises(config_lib.ConfigError, match=needle):
    config_lib.validate(c, devices=False)


def test_a_run_cannot_resume_with_other_outer_lr_mults(tmp_path):
  c = helpers.load_config("prodigy_muon_wsd_illquad_ctrl_cpu", "tiny")
  train.check_workdir(str(tmp_path), c)
  c.outer_lr_mults = ""
  with pytest.raises(train.WorkdirError, match="outer_lr_mults"):
    train.check_workdir(str(tmp_path), c)
