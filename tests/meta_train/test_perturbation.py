"""Perturbations without a theta per particle (``perturbation="implicit"``/``"lowrank"``).

The estimates' agreement with ``jax.grad`` is in test_estimators.py; here: the
implicit form is the dense estimate (the same arithmetic, regrouped), for
every estimator that has the option and for architectures with and without
``structured_theta``; low-rank noise has identity covariance; and the
population's memory stops growing with the number of pairs.
"""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import learned_opt
from learned_opt import perturbed
from meta_train import estimators, noise
from tests.meta_train import helpers

NAMES = [n for n in estimators.estimators()
         if "perturbation" in {f.name for f in dataclasses.fields(
             estimators.get_estimator(n).hparams)}]
ARCHS = {
    "adam_hparams": dict(hidden_size=4, init_lr=0.1),  # structured_theta
    "mlp": dict(hidden_size=4),  # materialised per particle
    "velo": dict(lstm_hidden_size=8, param_inits=4),  # structured_theta
}


def _hp(name, **kw):
  hp_cls = estimators.get_estimator(name).hparams
  base = dict(sigma=0.01, num_pairs=3)
  base.update(dict(horizon=6) if name == "es" else dict(truncation_length=3, min_horizon=4,
                                                         max_horizon=8))
  return hp_cls(**{**base, **kw})


def _estimate(arch, name, hp, theta, pool, steps=2):
  est = estimators.get_estimator(name)
  state = est.init(jax.random.key(4), arch, hp, theta, pool) if est.has_state else ()
  step = jax.jit(lambda th, s, k: estimators.estimate(est, arch, hp, th, pool, s, k))
  grads = []
  for i in range(steps):  # two steps: the second starts from the first's inner state
    g, state, m = step(theta, state, jax.random.key(10 + i))
    grads.append((g, m["meta_loss"]))
  return grads


def test_the_registry_offers_the_option():
  assert {"es", "pes", "tes", "nres"} <= set(NAMES)


@pytest.mark.parametrize("arch_name", sorted(ARCHS))
@pytest.mark.parametrize("name", NAMES)
def test_implicit_equals_dense(arch_name, name):
  arch = learned_opt.get(arch_name, **ARCHS[arch_name])
  theta = arch.init_meta(jax.random.key(1))
  pool = helpers.quadratic_pool(jax.random.key(2), num_slots=2, pool_size=1, dim=4)
  dense = _estimate(arch, name, _hp(name), theta, pool)
  implicit = _estimate(arch, name, _hp(name, perturbation="implicit"), theta, pool)
  for (g_d, m_d), (g_i, m_i) in zip(dense, implicit):
    np.testing.assert_allclose(m_i, m_d, rtol=1e-5)
    scale = max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(g_d))
    chex.assert_trees_all_close(g_i, g_d, atol=1e-4 * scale)


@pytest.mark.parametrize("arch_name", ["adam_hparams", "mlp"])
def test_lowrank_runs_every_estimator(arch_name):
  arch = learned_opt.get(arch_name, **ARCHS[arch_name])
  theta = arch.init_meta(jax.random.key(1))
  pool = helpers.quadratic_pool(jax.random.key(2), num_slots=2, pool_size=1, dim=4)
  for name in NAMES:
    (g, m), _ = _estimate(arch, name, _hp(name, perturbation="lowrank", rank=2), theta, pool)
    chex.assert_trees_all_equal_shapes(g, theta)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(g)) and np.isfinite(m)


@pytest.mark.parametrize("kind", ["normal", "rademacher"])
def test_lowrank_noise_has_identity_covariance(kind):
  theta = {"w": jnp.zeros((3, 2, 2)), "b": jnp.zeros((4,))}
  keys = jax.random.split(jax.random.key(0), (20000, 1))
  eps = noise.per_pair(keys, theta, kind, rank=2)
  assert isinstance(eps["w"], noise.Factors) and not isinstance(eps["b"], noise.Factors)
  flat = jnp.concatenate([x.reshape(20000, -1) for x in jax.tree.leaves(noise.dense(eps, theta))],
                         axis=1)
  cov = flat.T @ flat / flat.shape[0]
  np.testing.assert_allclose(cov, np.eye(cov.shape[0]), atol=0.05)


def test_weighted_mean_of_factors_is_that_of_their_product():
  theta = {"w": jnp.zeros((5, 3)), "v": jnp.zeros((6,))}
  eps = noise.per_pair(jax.random.split(jax.random.key(3), (2, 4)), theta, "normal", rank=3)
  weights = jax.random.normal(jax.random.key(4), (2, 4))
  full = noise.dense(eps, theta)
  expect = jax.tree.map(lambda e: jnp.tensordot(weights, e, axes=2) / weights.size, full)
  chex.assert_trees_all_close(noise.weighted_mean(weights, eps, theta), expect, rtol=1e-5,
                              atol=1e-6)


def test_structured_parts_are_what_they_stand_for():
  w = jax.random.normal(jax.random.key(0), (4, 2, 3))
  x = jax.random.normal(jax.random.key(1), (5, 4))
  a, b = jnp.ones((4, 2)), jnp.arange(12.0).reshape(6, 2)
  for leaf in (perturbed.Offset(w, jnp.ones_like(w), jnp.float32(0.5)),
               perturbed.LowRank(w, a, b, jnp.float32(-0.1))):
    np.testing.assert_allclose(perturbed.matmul(x, leaf),
                               jnp.tensordot(x, perturbed.value(leaf), 1), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(perturbed.matmul(x, w), jnp.tensordot(x, w, 1))


def _temp_bytes(arch, name, hp, theta, pool):
  est = estimators.get_estimator(name)
  state = jax.eval_shape(lambda: est.init(jax.random.key(4), arch, hp, theta, pool))
  fn = jax.jit(lambda th, s, k: estimators.estimate(est, arch, hp, th, pool, s, k)[0])
  mem = fn.lower(theta, state, jax.random.key(0)).compile().memory_analysis()
  return mem.temp_size_in_bytes


def test_lowrank_population_memory_does_not_grow_with_pairs_like_dense():
  """XLA's own buffer sizes: dense grows by ~2 thetas per pair, lowrank by its factors."""
  arch = learned_opt.get("adam_hparams", hidden_size=4096)
  theta = arch.init_meta(jax.random.key(1))
  theta_bytes = 4 * sum(x.size for x in jax.tree.leaves(theta))
  pool = helpers.quadratic_pool(jax.random.key(2), num_slots=1, pool_size=1, dim=4)
  growth = {}
  for mode in ("dense", "lowrank"):
    sizes = [_temp_bytes(arch, "es", _hp("es", num_pairs=p, perturbation=mode), theta, pool)
             for p in (1, 9)]
    growth[mode] = (sizes[1] - sizes[0]) / 8 / theta_bytes  # thetas of memory per extra pair
  print(growth)
  assert growth["dense"] >= 1.5
  assert growth["lowrank"] <= 0.25 * growth["dense"]
