"""Adding an estimator is one file plus one registry line.

``forward_es.py`` (outside the package) defines forward-difference ES; the
line below registers it. Nothing in meta_train is edited, yet the config has
its sub-dict, the contract harness passes, the engine's jitted outer step
meta-trains with it, and so does the job (``train.run``) with the tiny config.
"""

import json

import jax
import numpy as np

import learned_opt
from meta_train import engine, estimators, train
from tests.meta_train import estimator_harness as harness
from tests.meta_train import forward_es, helpers

estimators.register_estimator("forward_es", forward_es.ESTIMATOR)  # the one registry line


def test_it_is_registered_with_a_config_sub_dict():
  assert "forward_es" in estimators.estimators()
  harness.check_registration("forward_es")
  c = helpers.load_config("tiny")
  assert c.forward_es.to_dict() == {"sigma": 0.01, "num_pairs": 1, "horizon": 20}


def test_it_passes_the_contract(tmp_path):
  harness.check_contract("forward_es", tmp_path)
  harness.check_nonfinite_losses("forward_es", harness.many_pairs("forward_es"))


def test_engine_outer_step_meta_trains_with_it():
  arch = learned_opt.get("adam_hparams", hidden_size=4, init_lr=0.05)
  hp = forward_es.ForwardESHParams(sigma=0.01, num_pairs=4, horizon=6)
  mesh = engine.make_mesh(jax.devices()[:1])
  tx = engine.outer_optimizer(learning_rate=1e-2, clip_norm=1.0)
  theta0 = arch.init_meta(jax.random.key(0))
  theta = engine.put_global(jax.tree.map(np.asarray, theta0), engine.replicated(mesh))
  opt_state = engine.put_global(jax.tree.map(np.asarray, tx.init(theta0)), engine.replicated(mesh))
  pool = engine.put_global(jax.tree.map(np.asarray, helpers.quadratic_pool(
      jax.random.key(1), num_slots=2, pool_size=2)), engine.slot_sharding(mesh))
  step = engine.jit_outer_step(arch, "forward_es", hp, tx, mesh)
  state = ()
  for s in range(3):
    theta, opt_state, state, metrics = step(theta, opt_state, pool, state,
                                            jax.random.key_data(jax.random.key(10 + s)))
    assert np.isfinite(float(metrics["meta_loss"])) and float(metrics["grad_norm"]) > 0
  assert state == ()
  moved = [np.abs(np.asarray(a) - np.asarray(b)).max()
           for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(theta0))]
  assert max(moved) > 0


def test_the_job_runs_it_from_the_tiny_config(tmp_path):
  c = helpers.load_config("tiny")
  c.estimator = "forward_es"
  c.forward_es.horizon, c.forward_es.num_pairs = 5, 2
  c.outer_steps, c.eval_every, c.checkpoint_every = 2, 0, 1
  out = train.run(c, str(tmp_path))
  assert out["step"] == 2 and np.isfinite(out["last"]["meta_loss"])
  saved = json.loads((tmp_path / "config.json").read_text())
  assert saved["estimator"] == "forward_es" and saved["forward_es"]["horizon"] == 5
  # metrics.jsonl has inner_steps_per_s from the record's inner_steps.
  rows = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  assert [r["step"] for r in rows] == [1, 2] and all(r["inner_steps_per_s"] > 0 for r in rows)
