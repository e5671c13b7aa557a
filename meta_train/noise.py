"""Perturbation noise: eps shaped like theta, drawn from a PRNG key.

Every estimator stores keys, not noise: ``eps`` is regenerated from each pair's
key when it is needed, so estimator state and checkpoints stay small whatever
the size of theta. Two distributions, both with ``E[eps eps^T] = I`` (what the
antithetic ES estimate ``E[(f+ - f-) / (2 sigma) eps]`` needs to be unbiased to
first order): standard normal, and Rademacher (+-1 per coordinate), which costs
1 random bit per meta-parameter instead of 32.

Low-rank noise (``rank > 0``, EGGROLL: Sarkar et al., 2025) draws the eps of
every leaf of rank >= 2, viewed as a matrix ``(shape[0], prod(shape[1:]))``, as
``Factors(a, b)``: ``eps = a @ b.T / sqrt(rank)`` with ``a``, ``b`` drawn from
the same distribution. Each entry of eps then has mean 0 and variance 1, and
distinct entries are uncorrelated, so ``E[eps eps^T] = I`` still holds; only
the higher moments differ from the dense draw.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from meta_train.base import Noise, Theta


class Factors(NamedTuple):
  """Low-rank eps of one leaf: ``(a @ b.T / sqrt(r)).reshape(shape)``, a (m, r), b (n, r)."""

  a: jax.Array
  b: jax.Array


def sample(key: jax.Array, theta: Theta, kind: Noise = "normal", rank: int = 0) -> Theta:
  """eps shaped like theta, drawn from ``key``: N(0, I), or +-1 if ``kind="rademacher"``.

  ``rank > 0`` draws the leaves of rank >= 2 as ``Factors`` of that rank.

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

  def one(k, x):
    shape = jnp.shape(x)
    if rank and len(shape) >= 2:
      ka, kb = jax.random.split(k)
      return Factors(draw(ka, (shape[0], rank)), draw(kb, (int(np.prod(shape[1:])), rank)))
    return draw(k, shape)

  return treedef.unflatten([one(k, x) for k, x in zip(keys, leaves)])


def per_pair(keys: jax.Array, theta: Theta, kind: Noise = "normal", rank: int = 0) -> Theta:
  """``sample`` for every key of a ``[B, P]`` array of keys: leaves ``[B, P, ...]``."""
  return jax.vmap(jax.vmap(lambda k: sample(k, theta, kind, rank)))(keys)


def is_factors(x) -> bool:
  return isinstance(x, Factors)


def dense(eps: Theta, theta: Theta) -> Theta:
  """eps (leaves ``[..., *shape]``) with every ``Factors`` leaf multiplied out."""

  def one(e, t):
    if not is_factors(e):
      return e
    r = e.a.shape[-1]
    full = jnp.einsum("...ir,...jr->...ij", e.a, e.b) / np.float32(np.sqrt(r))
    return full.reshape(full.shape[:-2] + jnp.shape(t))

  return jax.tree.map(one, eps, theta, is_leaf=is_factors)


def weighted_mean(weights: jax.Array, eps: Theta, theta: Theta) -> Theta:
  """``mean_i weights[i] * eps[i]`` over the leading ``weights.shape`` axes, shaped like theta.

  A ``Factors`` leaf is contracted as ``a @ diag(weights) @ b.T``, never forming
  a per-pair eps; it needs ``theta`` for the leaf's shape (dense eps does not).
  """
  n = weights.size

  def one(e, t):
    if not is_factors(e):
      return jnp.tensordot(weights, e, axes=weights.ndim) / n
    lead = weights.ndim
    a = e.a.reshape((-1,) + e.a.shape[lead:])
    b = e.b.reshape((-1,) + e.b.shape[lead:])
    r = a.shape[-1]
    full = jnp.einsum("p,pir,pjr->ij", weights.reshape(-1), a, b) / np.float32(np.sqrt(r))
    return full.reshape(jnp.shape(t)) / n

  if theta is None:  # only dense eps can do without theta's shapes
    return jax.tree.map(lambda e: one(e, None), eps)
  return jax.tree.map(one, eps, theta, is_leaf=is_factors)


def rademacher(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """+-1 with equal probability, float32 of ``shape``."""
  # One random bit per coordinate: generating 32-bit words dominates a PES step
  # of a VeLO-size theta on CPU, and here each word serves 32 coordinates.
  n = int(np.prod(shape, dtype=np.int64))
  words = jax.random.bits(key, ((n + 31) // 32,), jnp.uint32)
  bits = (words[:, None] >> jnp.arange(32, dtype=jnp.uint32)[None, :]) & jnp.uint32(1)
  return (2.0 * bits.reshape(-1)[:n].astype(jnp.float32) - 1.0).reshape(shape)
