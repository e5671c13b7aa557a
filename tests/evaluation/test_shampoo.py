"""Shampoo against a dense numpy computation; the LR-tuned matrix baselines train and cost 14 runs."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from meta_train.evaluation import baselines, shampoo
from meta_train.evaluation.base import Setting

SETTING = Setting(num_steps=40, num_points=8, num_evals=2, snapshot_cycles=2).check()
TUNED = ["shampoo_tuned", "muon_tuned"]
EPS = 1e-6
# Unit-vector tolerances. atol: after one step R = G^T G is rank 3 of 4, and float32 eigh's
# ~1e-7 leak into its null space is amplified (EPS)^(-1/4) ~ 30x by the damped root.
TOL = dict(rtol=1e-4, atol=5e-5)


def np_inverse_fourth_root(stat):
  """The reference: dense eigh in float64, damping relative to the largest eigenvalue."""
  lam, vecs = np.linalg.eigh(np.asarray(stat, np.float64))
  lam = np.maximum(lam, 0.0)
  return (vecs * (lam + EPS * lam.max()) ** -0.25) @ vecs.T


def np_direction(g, left, right):
  return np_inverse_fourth_root(left) @ g @ np_inverse_fourth_root(right)


def gradients(n, shape=(3, 4)):
  return [np.asarray(jax.random.normal(k, shape)) for k in jax.random.split(jax.random.key(1), n)]


def run_steps(tx, grads):
  """The updates of ``tx`` for a single 3x4 parameter fed ``grads`` (keyed "w")."""
  params = {"w": jnp.zeros(grads[0].shape)}
  state, out = tx.init(params), []
  for g in grads:
    u, state = tx.update({"w": jnp.asarray(g)}, state, params)
    out.append(np.asarray(u["w"], np.float64))
  return out, state


def unit(x):
  return x / np.linalg.norm(x)


@pytest.mark.parametrize("beta2", [1.0, 0.9])
def test_direction_matches_dense_numpy_and_norm_is_adams(beta2):
  grads = gradients(4)
  # b1 = 0: the preconditioned first moment is the gradient itself, L^-1/4 G R^-1/4.
  tx = shampoo.scale_by_shampoo(b1=0.0, beta2=beta2, eps=EPS, precondition_every=1)
  updates, _ = run_steps(tx, grads)
  with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes dtypes; ours must not
    adam, _ = run_steps(optax.scale_by_adam(b1=0.0, b2=0.999, eps=1e-8), grads)
  w = 1.0 if beta2 == 1.0 else 1.0 - beta2
  left, right = np.zeros((3, 3)), np.zeros((4, 4))
  for g, u, a in zip(grads, updates, adam):
    left, right = beta2 * left + w * g @ g.T, beta2 * right + w * g.T @ g
    np.testing.assert_allclose(unit(u), unit(np_direction(g, left, right)), **TOL)
    np.testing.assert_allclose(np.linalg.norm(u), np.linalg.norm(a), rtol=1e-5)


def test_momentum_is_preconditioned():
  grads, b1 = gradients(3), 0.9
  updates, _ = run_steps(shampoo.scale_by_shampoo(b1=b1, beta2=1.0, eps=EPS,
                                                  precondition_every=1), grads)
  m, left, right = np.zeros((3, 4)), np.zeros((3, 3)), np.zeros((4, 4))
  for t, (g, u) in enumerate(zip(grads, updates), 1):
    m, left, right = b1 * m + (1 - b1) * g, left + g @ g.T, right + g.T @ g
    want = np_direction(m / (1 - b1 ** t), left, right)
    np.testing.assert_allclose(unit(u), unit(want), **TOL)


def test_stale_roots_are_reused_between_recomputations():
  grads = gradients(5)
  updates, _ = run_steps(shampoo.scale_by_shampoo(b1=0.0, beta2=1.0, eps=EPS,
                                                  precondition_every=3), grads)
  stats = []
  left, right = np.zeros((3, 3)), np.zeros((4, 4))
  for g in grads:
    left, right = left + g @ g.T, right + g.T @ g
    stats.append((left, right))
  for step, g in enumerate(grads):
    fresh = unit(np_direction(g, *stats[step]))
    stale = unit(np_direction(g, *stats[3 * (step // 3)]))  # roots of steps 0 and 3
    np.testing.assert_allclose(unit(updates[step]), stale, **TOL)
    if step % 3:  # the test can tell stale from fresh roots
      assert np.abs(stale - fresh).max() > 1e-2


def test_vectors_get_adam_and_long_sides_go_diagonal():
  params = {"b": jnp.zeros(4), "w": jnp.zeros((3, 4))}
  grads = [{"b": jnp.asarray(g[0]), "w": jnp.asarray(g)} for g in gradients(3)]
  tx = shampoo.scale_by_shampoo(b1=0.0, eps=EPS, beta2=1.0, precondition_every=1,
                                max_precond_dim=3)
  adam = optax.scale_by_adam(b1=0.0)
  state, adam_state = tx.init(params), adam.init(params)
  assert state.preconditioners["b"] is None
  assert state.preconditioners["w"].left.shape == (3, 3)
  assert state.preconditioners["w"].right.shape == (4,)  # 4 > max_precond_dim
  left, right = np.zeros((3, 3)), np.zeros(4)
  for g in grads:
    u, state = tx.update(g, state, params)
    with jax.numpy_dtype_promotion("standard"):
      a, adam_state = adam.update(g, adam_state, params)
    np.testing.assert_allclose(u["b"], a["b"], rtol=1e-6)
    w = np.asarray(g["w"], np.float64)
    left, right = left + w @ w.T, right + np.sum(w * w, axis=0)
    want = np_inverse_fourth_root(left) @ w * (right + EPS * right.max()) ** -0.25
    np.testing.assert_allclose(unit(np.asarray(u["w"])), unit(want), **TOL)


def test_zero_gradient_gives_zero_step():
  tx = shampoo.scale_by_shampoo()
  params = {"w": jnp.zeros((3, 4))}
  u, _ = tx.update(params, tx.init(params), params)
  np.testing.assert_array_equal(u["w"], 0.0)


def test_shampoo_descends_an_ill_conditioned_quadratic():
  # Rows scaled by 1, 10 and 100: Adam-grafted Shampoo still makes steady progress on all.
  scale = jnp.asarray([[1.0], [10.0], [100.0]])
  loss = lambda w: 0.5 * jnp.sum((scale * (w - 1.0)) ** 2)
  tx, w0 = shampoo.shampoo(3e-2, precondition_every=1), jnp.zeros((3, 4))

  def step(carry, _):
    w, state = carry
    u, state = tx.update(jax.grad(loss)(w), state, w)
    return (optax.apply_updates(w, u), state), None

  (w, _), _ = jax.jit(lambda: jax.lax.scan(step, (w0, tx.init(w0)), length=300))()
  assert float(loss(w)) < 1e-3 * float(loss(w0))


@pytest.mark.parametrize("name", TUNED)
def test_tuned_baseline_trains_and_counts_the_grid(name, task):
  b = baselines.get_baseline(name)
  assert b.budget == "14 runs (LR grid)"
  rec = b.fn(task, 0, SETTING)
  assert np.isfinite(rec.train[-1]) and rec.train[-1] < rec.train[0], rec.train
  assert rec.steps == len(baselines.ADAM_GRID) * SETTING.num_steps == 14 * 40
  assert rec.extra["lr"] in baselines.ADAM_GRID and len(rec.extra["trials"]) == 14
  assert rec.train[-1] == pytest.approx(min(rec.extra["trials"].values()))
