"""Perturbed meta-parameters that are never materialised: ``W + scale * E`` kept as parts.

Evolution strategies evaluate many perturbed copies ``theta + s * sigma * eps``
of one theta. Writing a copy per particle costs a theta of memory traffic per
particle (for VeLO, 9 MB each), and every inner step then reads each
particle's own weights. For a weight that enters as a linear map the copy is
not needed::

    x @ (W + c * E) = x @ W + c * (x @ E)

so ``W`` is read once for all particles (under ``vmap`` it is an unbatched
operand) and only the perturbation is per particle. Two forms:

* ``Offset(w, eps, scale)``: ``w + scale * eps`` with a full ``eps``, which
  the two particles of an antithetic pair share (only ``scale = +-c`` differs);
* ``LowRank(w, a, b, scale)``: ``w + scale * (a @ b.T)`` for a weight viewed as
  a matrix ``(shape[0], prod(shape[1:]))``, with ``a`` ``(shape[0], r)`` and
  ``b`` ``(prod(shape[1:]), r)`` (EGGROLL: Sarkar et al., 2025, "Evolution
  Strategies at the Hyperscale"); its noise costs ``r * (m + n)`` numbers
  instead of ``m * n``.

An architecture that reads its theta through ``matmul`` (for every ``x @ W``)
and ``value`` (everything else) accepts either form in place of an array and
declares ``structured_theta = True``; for plain arrays both are the ordinary
operations, so its outputs are unchanged. Other architectures get
``materialise``'d leaves. ``in_axes`` tells ``vmap`` which parts are batched:
a part is batched where it has more axes than its unbatched form.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Offset(NamedTuple):
  """``w + scale * eps``; ``eps`` is shaped like ``w``, ``scale`` a scalar."""

  w: jax.Array
  eps: jax.Array
  scale: jax.Array


class LowRank(NamedTuple):
  """``w + scale * (a @ b.T).reshape(w.shape)``, ``a`` ``(w.shape[0], r)``, ``b`` ``(n, r)``."""

  w: jax.Array
  a: jax.Array
  b: jax.Array
  scale: jax.Array


Structured = (Offset, LowRank)


def is_structured(x: Any) -> bool:
  return isinstance(x, Structured)


def value(x: Any) -> jax.Array:
  """The array a leaf stands for (the identity on plain arrays)."""
  if isinstance(x, Offset):
    return x.w + x.scale * x.eps
  if isinstance(x, LowRank):
    return x.w + x.scale * (x.a @ x.b.T).reshape(x.w.shape)
  return x


def matmul(x: jax.Array, w: Any, precision=None) -> jax.Array:
  """``tensordot(x, value(w), 1)``: x's last axis against w's first, without forming value(w).

  For ``LowRank`` the perturbation costs ``r * (m + n)`` multiply-adds per row
  of ``x`` instead of ``m * n``; for ``Offset`` one more matmul with ``eps``.
  """
  dot = lambda u, v: jnp.tensordot(u, v, 1, precision=precision)
  if isinstance(x, Structured):
    raise TypeError("matmul's left operand must be an array; perturb the right one.")
  if isinstance(w, Offset):
    return dot(x, w.w) + w.scale * dot(x, w.eps)
  if isinstance(w, LowRank):
    low = dot(dot(x, w.a), w.b.T).reshape(x.shape[:-1] + w.w.shape[1:])
    return dot(x, w.w) + w.scale * low
  return dot(x, w)


def materialise(theta: Any) -> Any:
  """``theta`` with every structured leaf replaced by its ``value``."""
  return jax.tree.map(value, theta, is_leaf=is_structured)


def shapes(theta: Any) -> Any:
  """``theta``'s leaves as ``ShapeDtypeStruct``s of the arrays they stand for."""
  leaf = lambda x: jax.ShapeDtypeStruct(jnp.shape(x.w if is_structured(x) else x),
                                        jnp.result_type(x.w if is_structured(x) else x))
  return jax.tree.map(leaf, theta, is_leaf=is_structured)


def in_axes(theta: Any) -> Any:
  """``vmap`` in_axes for one level of a (possibly structured) batched theta.

  Plain leaves are batched (0). A structured leaf's part is batched where it
  has more axes than its unbatched form (``w`` is never batched, ``eps`` has
  ``w``'s rank, ``a`` and ``b`` rank 2, ``scale`` rank 0), so nested vmaps
  over slots, pairs and signs each peel the parts that carry that axis.
  """

  def one(x):
    if isinstance(x, Offset):
      return Offset(None, 0 if x.eps.ndim > x.w.ndim else None, 0 if x.scale.ndim else None)
    if isinstance(x, LowRank):
      lead = lambda y: 0 if y.ndim > 2 else None
      return LowRank(None, lead(x.a), lead(x.b), 0 if x.scale.ndim else None)
    return 0

  return jax.tree.map(one, theta, is_leaf=is_structured)


def vmap_over(fn, levels: int):
  """``fn(theta, *args)`` vmapped over ``levels`` leading axes of theta and of every arg.

  ``in_axes`` is recomputed at each level from the parts' ranks there.
  """
  if levels == 0:
    return fn
  inner = vmap_over(fn, levels - 1)
  return lambda theta, *args: jax.vmap(inner, in_axes=(in_axes(theta),) + (0,) * len(args))(
      theta, *args)


def batch_shape(theta: Any, ndim: int) -> tuple[int, ...]:
  """The leading ``ndim`` batch axes of a batched theta (from a part that has them all)."""
  for x in jax.tree.leaves(theta, is_leaf=is_structured):
    part = x.scale if is_structured(x) else x
    if np.ndim(part) >= ndim:
      return tuple(jnp.shape(part)[:ndim])
  raise ValueError(f"no leaf of theta has {ndim} batch axes")
