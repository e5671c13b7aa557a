"""Shared helpers for the meta_train tests."""

import jax
import jax.numpy as jnp

from tests.meta_train import _quadratic


def flat(tree):
  return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])


def quadratic_pool(key, *, num_slots, pool_size, dim=4, noise=0.1):
  """A [num_slots, pool_size] pool of quadratic tasks with shared dim."""
  keys = jax.random.split(key, num_slots * pool_size)
  tasks = [_quadratic.make(k, dim=dim, noise=noise) for k in keys]
  stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *tasks)
  return jax.tree.map(lambda x: x.reshape((num_slots, pool_size) + x.shape[1:]), stacked)
