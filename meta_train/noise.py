"""Perturbation noise: eps shaped like theta, drawn from a PRNG key.

Every estimator stores keys, not noise: ``eps`` is regenerated from each pair's
key when it is needed, so estimator state and checkpoints stay small whatever
the size of theta. Two distributions, both with ``E[eps eps^T] = I`` (what the
antithetic ES estimate ``E[(f+ - f-) / (2 sigma) eps]`` needs to be unbiased to
first order): standard normal, and Rademacher (+-1 per coordinate), which costs
1 random bit per meta-parameter instead of 32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from meta_train.base import Noise, Theta


def sample(key: jax.Array, theta: Theta, kind: Noise = "normal") -> Theta:
  """eps shaped like theta, drawn from ``key``: N(0, I), or +-1 if ``kind="rademacher"``.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> eps = sample(jax.random.key(0), {"w": jnp.zeros((2, 3))}, "rademacher")
    >>> sorted(set(eps["w"].ravel().tolist())) in ([-1.0, 1.0], [-1.0], [1.0])
    True
  """
  leaves, treedef = jax.tree.flatten(theta)
  keys = jax.random.split(key, len(leaves))
  draw = rademacher if kind == "rademacher" else (
      lambda k, shape: jax.random.normal(k, shape, jnp.float32))
  return treedef.unflatten([draw(k, jnp.shape(x)) for k, x in zip(keys, leaves)])


def per_pair(keys: jax.Array, theta: Theta, kind: Noise = "normal") -> Theta:
  """``sample`` for every key of a ``[B, P]`` array of keys: leaves ``[B, P, ...]``."""
  return jax.vmap(jax.vmap(lambda k: sample(k, theta, kind)))(keys)


def rademacher(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """+-1 with equal probability, float32 of ``shape``."""
  # One random bit per coordinate: generating 32-bit words dominates a PES step
  # of a VeLO-size theta on CPU, and here each word serves 32 coordinates.
  n = int(np.prod(shape, dtype=np.int64))
  words = jax.random.bits(key, ((n + 31) // 32,), jnp.uint32)
  bits = (words[:, None] >> jnp.arange(32, dtype=jnp.uint32)[None, :]) & jnp.uint32(1)
  return (2.0 * bits.reshape(-1)[:n].astype(jnp.float32) - 1.0).reshape(shape)
