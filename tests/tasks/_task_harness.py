"""Shared helpers for the task tests: a jitted Adam loop (hand-written, because
optax.adam trips jax_numpy_dtype_promotion="strict" in optax 0.2.8)."""

import functools

import jax
import jax.numpy as jnp


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
