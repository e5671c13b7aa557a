"""Zero-size parameter leaves, kept out of a learned optimizer's view.

A leaf of shape ``(0, 3)`` (an empty embedding table, a layer of width 0) has
no elements to update, but the per-tensor features divide by its size and
its rows, so it would turn into a ``ZeroDivisionError`` while tracing or
into NaN statistics, and the per-tensor LSTMs (``hyper_lstm``, ``velo``)
would mix those into every other tensor's step. :func:`skip_empty_leaves`
wraps a transform so that the inner one never sees such leaves (they become
``None``, an empty subtree) and each of them gets a zero-size update: the
other leaves are updated exactly as if the empty ones were not there.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from learned_opt import base


def _is_empty(x: Any) -> bool:
  return math.prod(jnp.shape(x)) == 0


def has_empty_leaves(params: Any) -> bool:
  return any(_is_empty(p) for p in jax.tree.leaves(params))


def drop_empty(tree: Any, params: Any) -> Any:
  """``tree`` (shaped like ``params``) with ``None`` where ``params`` has a zero-size leaf."""
  return jax.tree.map(lambda x, p: None if _is_empty(p) else x, tree, params)


def fill_empty(params: Any, inner_updates: Any) -> Any:
  """The updates of the non-empty leaves, with zero-size zeros put back for the empty ones."""
  leaves, treedef = jax.tree.flatten(params)
  inner = iter(jax.tree.leaves(inner_updates))
  out = [jnp.zeros_like(p) if _is_empty(p) else next(inner) for p in leaves]
  return jax.tree.unflatten(treedef, out)


def skip_empty_leaves(tx: optax.GradientTransformationExtraArgs,
                      name: str) -> optax.GradientTransformationExtraArgs:
  """Wraps ``tx`` so that zero-size parameter leaves bypass it.

  Params without zero-size leaves (the usual case) go straight to ``tx``, so
  its state and updates are unchanged; with only zero-size leaves there is
  nothing to learn from and the state is empty.
  """

  def init_fn(params):
    if params is None or not has_empty_leaves(params):
      return tx.init(params)
    base.check_params(params, f"{name} init")
    if all(_is_empty(p) for p in jax.tree.leaves(params)):
      return optax.EmptyState()
    return tx.init(drop_empty(params, params))

  def update_fn(updates, state, params=None, **extra_args):
    if params is None or not has_empty_leaves(params):
      return tx.update(updates, state, params, **extra_args)
    base.check_params(params, f"{name} update")
    base.check_grads(updates, params, f"{name} update")
    if all(_is_empty(p) for p in jax.tree.leaves(params)):
      base.check_value(extra_args.get("value"))
      return jax.tree.map(jnp.zeros_like, params), state
    inner, state = tx.update(drop_empty(updates, params), state, drop_empty(params, params),
                             **extra_args)
    return fill_empty(params, inner), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
