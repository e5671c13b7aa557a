"""The task contract harness: checks any family (built-in or a user's) must pass.

``tests/tasks/test_families.py`` runs them over the registry, and
``test_external_family.py`` over the family that docs/tasks.md writes outside
the package. The Adam loop is hand-written because optax.adam trips
jax_numpy_dtype_promotion="strict" in optax 0.2.8.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tasks


@functools.partial(jax.jit, static_argnames=("num_steps", "lr"))
def train_adam(task, key, *, num_steps, lr):
  """Adam on ``task`` for ``num_steps`` in one scan; returns the per-step losses."""
  init_key, key = jax.random.split(key)
  params = task.init(init_key)
  zeros = jax.tree.map(jnp.zeros_like, params)

  def step(carry, k):
    params, m, v, t = carry
    batch_key, loss_key = jax.random.split(k)
    loss, g = jax.value_and_grad(task.loss)(params, loss_key, task.sample_batch(batch_key))
    t = t + 1.0
    m = jax.tree.map(lambda m, g: 0.9 * m + 0.1 * g, m, g)
    v = jax.tree.map(lambda v, g: 0.999 * v + 0.001 * g * g, v, g)
    c1, c2 = 1.0 - 0.9**t, 1.0 - 0.999**t
    params = jax.tree.map(lambda p, m, v: p - lr * (m / c1) / (jnp.sqrt(v / c2) + 1e-8),
                          params, m, v)
    return (params, m, v, t), loss

  carry = (params, zeros, zeros, jnp.zeros((), jnp.float32))
  _, losses = jax.lax.scan(step, carry, jax.random.split(key, num_steps))
  return losses


@jax.jit
def init_and_loss(task, key):
  """Fresh params, a batch, its loss and normalised loss; jitted once per family."""
  k1, k2, k3 = jax.random.split(key, 3)
  params = task.init(k1)
  batch = task.sample_batch(k2, "train")
  loss = task.loss(params, k3, batch)
  return params, batch, loss, task.normalizer(loss)


def check_init_and_loss(name, task):
  """Finite float32 init, a batch matching batch_spec, a loss near 1 normalised, eval_shape."""
  key = jax.random.key(0)
  params, batch, loss, norm = init_and_loss(task, key)
  for leaf in jax.tree.leaves(params):
    assert leaf.dtype == jnp.float32
    assert jnp.all(jnp.isfinite(leaf))
  assert jax.tree.map(lambda x: (x.shape, x.dtype), batch) == jax.tree.map(
      lambda s: (s.shape, s.dtype), task.batch_spec)
  assert loss.shape == () and jnp.isfinite(loss)
  assert jnp.isfinite(norm) and 0.05 < float(norm) < tasks.MAX_NORMALIZED_LOSS, name
  assert float(task.normalizer(jnp.array(jnp.nan))) == tasks.MAX_NORMALIZED_LOSS
  assert float(task.normalizer(jnp.array(jnp.inf))) == tasks.MAX_NORMALIZED_LOSS
  # The abstract batch alone is enough to trace the loss (no data needed).
  abstract_params = jax.eval_shape(task.init, key)
  out = jax.eval_shape(task.loss, abstract_params, key, task.batch_spec)
  assert out.shape == () and out.dtype == jnp.float32
  assert isinstance(task.name, str) and task.name.startswith(name)


def check_adam_lowers_the_loss(name, task, *, num_steps=150):
  losses = np.asarray(train_adam(task, jax.random.key(0), num_steps=num_steps, lr=1e-2))
  assert np.all(np.isfinite(losses)), name
  tail = max(num_steps // 10, 3)
  assert losses[-tail:].mean() < 0.85 * losses[:5].mean(), (name, losses[:5], losses[-tail:])


def check_spec_json_round_trip(name):
  family = tasks.get_family(name)
  for i in range(20):
    spec = family.sample(jax.random.key(i))
    text = tasks.spec_to_json(spec)
    back = tasks.spec_from_json(text)
    assert type(back) is type(spec) and back == spec and hash(back) == hash(spec)
    assert tasks.spec_to_json(back) == text
    assert tasks.family_of(spec) == name


def check_sampled_specs_build(name):
  family = tasks.get_family(name)
  spec = family.sample(jax.random.key(123))
  assert dataclasses.is_dataclass(spec) and type(spec) is family.spec_type
  task = family.build(spec)
  jax.eval_shape(task.loss, jax.eval_shape(task.init, jax.random.key(0)), jax.random.key(0),
                 task.batch_spec)


def check_vmap_across_specs(name, spec, task):
  """Tasks of specs sharing static fields stack, and vmap gives the per-task results."""
  other = tasks.resample_dynamic(jax.random.key(7), name, spec)
  assert tasks.static_signature(name, other) == tasks.static_signature(name, spec)
  assert other != spec
  pair = [task, tasks.get_family(name).build(other)]
  stacked = tasks.stack_tasks(pair)
  assert jax.tree.structure(stacked) == jax.tree.structure(task)  # same static/leaf split
  keys = jax.random.split(jax.random.key(3), 2)
  batched = jax.jit(jax.vmap(lambda t, k: init_and_loss(t, k)[3]))(stacked, keys)
  # init_and_loss is already compiled for this family's static fields.
  single = jnp.stack([init_and_loss(t, k)[3] for t, k in zip(pair, keys)])
  np.testing.assert_allclose(batched, single, rtol=2e-4, atol=1e-5)


def check_evaluation_members(task):
  """layer_order permutes the top-level keys; predict works exactly where has_predictions.

  Checked on ``task`` and on its augmented copies, which must forward both.
  """
  params = jax.eval_shape(task.init, jax.random.key(0))  # what init returns, uncompiled
  order = task.layer_order(params)
  assert sorted(order) == sorted(params) and len(set(order)) == len(order), (order, list(params))
  batch = task.batch_spec
  if not task.has_predictions:
    with pytest.raises(tasks.TaskError, match="has no predictive distribution"):
      jax.eval_shape(task.predict, params, batch)
    return
  logits, labels = jax.eval_shape(task.predict, params, batch)
  assert logits.shape[:-1] == labels.shape and logits.shape[-1] >= 2, (logits, labels)
  assert jnp.issubdtype(logits.dtype, jnp.floating) and jnp.issubdtype(labels.dtype, jnp.integer)


def augmented_copies(task):
  """``task`` under every wrapper it admits (label noise: classifiers, see tasks.augment)."""
  classifier = "label" in task.batch_spec and hasattr(task, "num_classes")
  noise = 0.1 if classifier else 0.0
  return [tasks.augment(task, jax.random.key(1), loss_scale_range=(0.1, 10.0),
                        label_noise=noise),
          tasks.augment(task, jax.random.key(2), reparam=False, loss_scale_range=(0.1, 10.0))]
