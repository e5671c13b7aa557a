"""The estimator contract harness: the checks every registered estimator must pass.

``tests/meta_train/test_estimator_contract.py`` runs them for every name in
``meta_train.estimators.estimators()`` (so a new estimator is tested as soon as
it is registered), and ``test_external_estimator.py`` for one defined outside
the package.

The closed form: ``Teleport`` is a stand-in learned optimizer whose every
update sets the task's params to theta. On noise-free quadratics the meta-loss
after any step is then ``f(theta) = mean_b normalizer_b(loss_b(theta))``,
whatever the horizon, truncation or resets, so every unbiased estimator of it
must agree with ``jax.grad(f)`` (including truncated ES, whose bias comes from
how earlier noise shaped the inner state, which here it does not).
"""

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from meta_train import checkpoint, engine, estimators
from meta_train import config as config_lib
from tasks.base import MAX_NORMALIZED_LOSS
from tests.meta_train import helpers

DIM = 4
NUM_SLOTS = 8
NUM_PAIRS = 32768  # in all slots together; ratio std ~ sqrt(3/N) for PES's second step
THETA = {"x": jnp.asarray([0.5, -1.0, 1.5, 0.3], jnp.float32)}


@dataclasses.dataclass(frozen=True)
class Teleport:
  """A learned optimizer whose update moves params to theta (frozen: static under jit)."""

  def init_meta(self, key):
    del key
    return THETA

  def as_optax(self, theta, *, num_steps=None):
    del num_steps

    def init(params):
      del params
      return optax.EmptyState()

    def update(updates, state, params=None, **extra_args):
      del updates, extra_args
      return jax.tree.map(lambda t, p: t - p, theta, params), state

    return optax.GradientTransformationExtraArgs(init, update)


def pool(noise=0.0):
  return helpers.quadratic_pool(jax.random.key(2), num_slots=NUM_SLOTS, pool_size=1, dim=DIM,
                                noise=noise)


def closed_form(theta, pool_):
  """``f(theta)``: the mean over slots of the normalised loss at params = theta."""
  tasks = jax.tree.map(lambda x: x[:, 0], pool_)

  def one(task):
    batch = task.sample_batch(jax.random.key(0), "train")
    return task.normalizer(task.loss(theta, jax.random.key(0), batch))

  return jnp.mean(jax.vmap(one)(tasks))


def many_pairs(name):
  """The estimator's default hyperparameters, with ``NUM_PAIRS`` pairs if it has pairs."""
  hp = estimators.get_estimator(name).hparams()
  if "num_pairs" in estimators.hparams_fields(name):
    hp = dataclasses.replace(hp, num_pairs=NUM_PAIRS // NUM_SLOTS)
  return hp


@functools.lru_cache(maxsize=None)  # one compilation per estimator for all the checks
def steps_fn(name, hp, num_steps=2):
  """A jitted ``(state, pool, key) -> (states, grads, metrics)`` of ``num_steps`` estimates."""
  est, arch = estimators.get_estimator(name), Teleport()

  @jax.jit
  def run(state, pool_, key):
    out = []
    for k in jax.random.split(key, num_steps):
      grad, state, metrics = estimators.estimate(est, arch, hp, THETA, pool_, state, k)
      out.append((state, grad, metrics))
    return tuple(zip(*out))

  return run


def init_state(name, hp, pool_):
  return _init_fn(name, hp)(jax.random.key(4), pool_)


@functools.lru_cache(maxsize=None)
def _init_fn(name, hp):
  est = estimators.get_estimator(name)
  return jax.jit(lambda k, p: est.init(k, Teleport(), hp, THETA, p))


def check_registration(name):
  """The record, its hyperparameters and its config sub-dict agree."""
  est = estimators.get_estimator(name)
  hp = est.hparams()
  hash(hp)  # static under jit
  assert isinstance(est.inner_steps(hp), int) and est.inner_steps(hp) > 0
  c = config_lib.default()
  assert tuple(sorted(c[name].keys())) == tuple(sorted(estimators.hparams_fields(name)))
  c.estimator = name
  assert config_lib.estimator_hparams(c) == hp


def check_shapes(name, state0, states, grads, metrics):
  """Gradients shaped like theta; the state keeps its structure, shapes and dtypes."""
  est = estimators.get_estimator(name)
  if not est.has_state:
    assert state0 == () and all(s == () for s in states)
  for state, grad, m in zip(states, grads, metrics):
    chex.assert_trees_all_equal_shapes_and_dtypes(grad, THETA)
    chex.assert_trees_all_equal_shapes_and_dtypes(state, state0)
    assert jax.tree.structure(state) == jax.tree.structure(state0)
    assert "meta_loss" in m and all(jnp.shape(v) == () for v in m.values()), m
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves((grad, m)))


def check_round_trip(tmp_path, state):
  """A state survives a checkpoint bit for bit, inside an ``OuterState`` as the job saves it."""
  host = jax.tree.map(np.asarray, engine.OuterState(np.int32(1), THETA, (), (state,)))
  mngr = checkpoint.manager(str(tmp_path), keep=1)
  checkpoint.save(mngr, 1, host)
  step, restored = checkpoint.restore_latest(mngr, host)
  mngr.close()
  assert step == 1
  chex.assert_trees_all_equal(restored, host)
  return restored.groups[0]


def alignment(grad, true):
  g, t = helpers.flat(grad), helpers.flat(true)
  return float(g @ t / (t @ t)), float(g @ t / (jnp.linalg.norm(g) * jnp.linalg.norm(t)))


def check_aligned(grad, true, what):
  ratio, cos = alignment(grad, true)
  print(f"{what}: ratio {ratio:.4f} cosine {cos:.4f}")
  # The thresholds of test_estimators.py's ES and PES checks.
  assert abs(ratio - 1.0) <= 0.03 and cos >= 0.99, (what, ratio, cos)


def check_nonfinite_losses(name, hp):
  """NaN batches make every inner loss NaN: finite gradient, the normaliser's max as meta-loss."""
  bad = pool(noise=float("nan"))
  _, grads, metrics = steps_fn(name, hp)(init_state(name, hp, bad), bad, jax.random.key(5))
  assert all(float(m["meta_loss"]) == MAX_NORMALIZED_LOSS for m in metrics)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def check_contract(name, tmp_path):
  """Two outer steps at ``many_pairs``: shapes, closed-form gradient, checkpoint round trip."""
  hp = many_pairs(name)
  pool_ = pool()
  state0 = init_state(name, hp, pool_)
  run = steps_fn(name, hp)
  states, grads, metrics = run(state0, pool_, jax.random.key(3))
  check_shapes(name, state0, states, grads, metrics)
  true = jax.grad(closed_form)(THETA, pool_)
  for i, g in enumerate(grads):
    check_aligned(g, true, f"{name} step {i + 1}")
  # A checkpointed state continues exactly as the live one (what resume relies on).
  restored = check_round_trip(tmp_path, states[0])
  chex.assert_trees_all_equal(run(restored, pool_, jax.random.key(3)),
                              run(states[0], pool_, jax.random.key(3)))
