"""The task contract harness, parametrised over the registry: a new family is tested
automatically (as learned_optimization's smoketest_task, with the abstract batch)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tasks
from _task_harness import train_adam

FAMILIES = tasks.families()


@jax.jit
def init_and_loss(task, key):
  """Fresh params, a batch, its loss and normalised loss; jitted once per family."""
  k1, k2, k3 = jax.random.split(key, 3)
  params = task.init(k1)
  batch = task.sample_batch(k2, "train")
  loss = task.loss(params, k3, batch)
  return params, batch, loss, task.normalizer(loss)


@pytest.fixture(scope="module", params=FAMILIES)
def family_task(request):
  family = tasks.get_family(request.param)
  spec = family.example_spec()
  return request.param, spec, family.build(spec)


def test_init_and_loss_are_finite_and_eval_shape_works(family_task):
  name, spec, task = family_task
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


def test_adam_lowers_the_loss(family_task):
  name, _, task = family_task
  losses = np.asarray(train_adam(task, jax.random.key(0), num_steps=150, lr=1e-2))
  assert np.all(np.isfinite(losses)), name
  assert losses[-15:].mean() < 0.85 * losses[:5].mean(), (name, losses[:5], losses[-15:])


@pytest.mark.parametrize("name", FAMILIES)
def test_spec_json_round_trip_is_exact(name):
  family = tasks.get_family(name)
  for i in range(20):
    spec = family.sample(jax.random.key(i))
    text = tasks.spec_to_json(spec)
    back = tasks.spec_from_json(text)
    assert type(back) is type(spec) and back == spec and hash(back) == hash(spec)
    assert tasks.spec_to_json(back) == text
    assert tasks.family_of(spec) == name


@pytest.mark.parametrize("name", FAMILIES)
def test_sampled_specs_build(name):
  family = tasks.get_family(name)
  spec = family.sample(jax.random.key(123))
  assert dataclasses.is_dataclass(spec) and type(spec) is family.spec_type
  task = family.build(spec)
  jax.eval_shape(task.loss, jax.eval_shape(task.init, jax.random.key(0)), jax.random.key(0),
                 task.batch_spec)


def test_vmap_across_specs_sharing_static_fields(family_task):
  name, spec, task = family_task
  other = tasks.resample_dynamic(jax.random.key(7), name, spec)
  assert tasks.static_signature(name, other) == tasks.static_signature(name, spec)
  assert other != spec
  pair = [task, tasks.get_family(name).build(other)]
  stacked = tasks.stack_tasks(pair)

  keys = jax.random.split(jax.random.key(3), 2)
  batched = jax.jit(jax.vmap(lambda t, k: init_and_loss(t, k)[3]))(stacked, keys)
  # init_and_loss is already compiled for this family's static fields.
  single = jnp.stack([init_and_loss(t, k)[3] for t, k in zip(pair, keys)])
  np.testing.assert_allclose(batched, single, rtol=2e-4, atol=1e-5)


def test_stacking_tasks_with_different_static_fields_raises():
  a = tasks.build_task("quadratic", tasks.QuadraticSpec(dim=4))
  b = tasks.build_task("quadratic", tasks.QuadraticSpec(dim=5))
  with pytest.raises(tasks.TaskError, match="static"):
    tasks.stack_tasks([a, b])
