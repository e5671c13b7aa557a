"""One code path over a Mesh: 1 device and 4 (faked CPU) devices give the same meta-gradient.

Parametrised over the estimator registry; ``SMALL`` shrinks the shipped ones,
and a new estimator runs at its default hyperparameters.
"""

import chex
import jax
import numpy as np
import pytest

import learned_opt
from meta_train import engine, estimators
from tests.meta_train import helpers

_TRUNCATED = dict(sigma=0.01, num_pairs=2, truncation_length=4, min_horizon=5, max_horizon=9)
SMALL = {"pes": _TRUNCATED, "tes": _TRUNCATED, "nres": _TRUNCATED, "es": dict(sigma=0.01, num_pairs=2, horizon=6)}


@pytest.mark.parametrize("name", estimators.estimators())
def test_one_device_equals_four(name):
  assert jax.device_count() >= 4, "tests/conftest.py fakes 4 CPU devices"
  est = estimators.get_estimator(name)
  hp = est.hparams(**SMALL.get(name, {}))
  arch = learned_opt.get("adam_hparams", hidden_size=4, init_lr=0.05)
  theta0 = jax.tree.map(np.asarray, arch.init_meta(jax.random.key(0)))
  pool0 = jax.tree.map(np.asarray, helpers.quadratic_pool(jax.random.key(1), num_slots=4,
                                                           pool_size=2))
  tx = engine.outer_optimizer(learning_rate=1e-2, clip_norm=1.0)
  results = []
  for devices in (jax.devices()[:1], jax.devices()[:4]):
    mesh = engine.make_mesh(devices)
    theta = engine.put_global(theta0, engine.replicated(mesh))
    opt_state = engine.put_global(jax.tree.map(np.asarray, tx.init(theta0)),
                                  engine.replicated(mesh))
    pool = engine.put_global(pool0, engine.slot_sharding(mesh))
    state = (engine.jit_init(arch, name, hp, mesh)(jax.random.key_data(jax.random.key(2)), theta,
                                                   pool) if est.has_state else ())
    step = engine.jit_outer_step(arch, name, hp, tx, mesh)
    for s in range(3):
      theta, opt_state, state, metrics = step(theta, opt_state, pool, state,
                                              jax.random.key_data(jax.random.key(10 + s)))
    if est.has_state:
      assert len(jax.tree.leaves(state)[0].sharding.device_set) == len(devices)
    results.append((jax.tree.map(np.asarray, theta), float(metrics["meta_loss"]),
                    float(metrics["grad_norm"])))
  (t1, l1, g1), (t4, l4, g4) = results
  chex.assert_trees_all_close(t1, t4, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose([l1, g1], [l4, g4], rtol=1e-5)
