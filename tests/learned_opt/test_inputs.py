"""Gradient trees that do not match the parameters, and zero-size parameter leaves.

The flat architectures lay gradients out by the parameters' layout, so a
mismatched gradient tree of the same total size used to update the wrong
parameters silently; every architecture must refuse it, naming the path and
both shapes (or both structures). A zero-size leaf used to raise
ZeroDivisionError in the feature code; it must get a zero-size update and
leave the other leaves' updates as they are without it.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import learned_opt
from learned_opt.base import LearnedOptimizerError

ARCHS = learned_opt.architectures()
SMALL = {"velo": {"lstm_hidden_size": 8, "param_inits": 4}, "hyper_lstm": {"lstm_size": 16}}


def transform(name, num_steps=10):
  arch = learned_opt.get(name, **SMALL.get(name, {}))
  return arch.as_optax(arch.init_meta(jax.random.key(0)), num_steps=num_steps)


def params():
  return {"a": jnp.linspace(-1.0, 1.0, 12).reshape(2, 6), "b": jnp.full((3, 4), 0.5),
          "c": jnp.ones((4,))}


# Each mismatch keeps the total number of elements where it can (the case that
# used to pass silently), and the message that must name it.
MISMATCHES = {
    "extra_key": (lambda g: {**g, "d": jnp.ones((0,))}, r"only in grads: \['d'\]"),
    "missing_key": (lambda g: {"a": g["a"], "b": jnp.concatenate([g["b"].ravel(), g["c"]])},
                    r"only in params: \['c'\]"),
    "transposed_leaf": (lambda g: {**g, "a": g["a"].T},
                        r"gradient \['a'\] has shape \(6, 2\).*parameter \['a'\] has shape \(2, 6\)"),
    "swapped_shapes": (lambda g: {**g, "a": g["b"], "b": g["a"]},
                       r"gradient \['a'\] has shape \(3, 4\).*has shape \(2, 6\)"),
    "renamed_key": (lambda g: {"a": g["a"], "b": g["b"], "z": g["c"]},
                    r"only in grads: \['z'\]; only in params: \['c'\]"),
    "list_for_dict": (lambda g: [g["a"], g["b"], g["c"]], r"grads is PyTreeDef\(\[.*params is"),
}


@pytest.mark.parametrize("kind", list(MISMATCHES))
@pytest.mark.parametrize("name", ARCHS)
def test_mismatched_gradient_tree_is_refused(name, kind):
  tx = transform(name)
  p = params()
  state = tx.init(p)
  make, message = MISMATCHES[kind]
  with pytest.raises(LearnedOptimizerError, match=message):
    tx.update(make(jax.tree.map(jnp.cos, p)), state, p, value=1.0)
  with pytest.raises(LearnedOptimizerError, match=message):  # the check holds under jit too
    jax.jit(lambda g, s, p: tx.update(g, s, p, value=1.0))(make(p), state, p)


def run(tx, p, steps=3):
  """``steps`` jitted updates with gradients ``cos(p)``; returns the list of updates."""
  update = jax.jit(lambda g, s, p, v: tx.update(g, s, p, value=v))
  state, out = tx.init(p), []
  for t in range(steps):
    u, state = update(jax.tree.map(jnp.cos, p), state, p, jnp.float32(2.0 - 0.1 * t))
    p = jax.tree.map(lambda a, b: a + b, p, u)
    out.append(u)
  return out


@pytest.mark.parametrize("name", ARCHS)
def test_zero_size_leaves_get_zero_size_updates_and_change_nothing_else(name):
  tx = transform(name)
  b = {"b": jnp.linspace(0.1, 0.4, 4)}
  empties = {"a": jnp.zeros((0, 3)), "c": jnp.zeros((3, 0)), "d": jnp.zeros((0,), jnp.bfloat16)}
  with_empty = run(tx, {**empties, **b})
  alone = run(tx, b)
  for u, v in zip(with_empty, alone):
    for k, e in empties.items():
      assert u[k].shape == e.shape and u[k].dtype == e.dtype, k
    assert np.isfinite(np.asarray(u["b"])).all()
    chex.assert_trees_all_close(u["b"], v["b"], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", ARCHS)
def test_only_zero_size_leaves(name):
  tx = transform(name)
  p = {"a": jnp.zeros((0, 3))}
  u, _ = tx.update(p, tx.init(p), p, value=1.0)
  assert u["a"].shape == (0, 3)
  with pytest.raises(LearnedOptimizerError, match="value=loss"):
    tx.update(p, tx.init(p), p)
