"""Non-finite losses and gradients: every architecture stays finite and recovers.

A run in the wild meets the odd NaN or inf loss (a bad batch, an overflow in
the forward pass) and the odd NaN, inf or huge gradient. One such step must not
make a learned optimizer's parameters or state NaN for good, nor freeze it (a
1e30 gradient squared is inf in float32): after the bad steps, training on
finite inputs goes on and makes progress. The run is one jitted scan per
architecture; which kind of bad input, and when, is data.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import learned_opt

ARCHS = learned_opt.architectures()
SMALL = {"velo": {"lstm_hidden_size": 8, "param_inits": 4}, "hyper_lstm": {"lstm_size": 16}}
# Each kind replaces the loss or the gradients of a step: (what, value).
KINDS = {
    "nan_loss": ("loss", np.nan),
    "inf_loss": ("loss", np.inf),
    "neg_inf_loss": ("loss", -np.inf),
    "nan_grad": ("grad", np.nan),
    "nan_grad_element": ("element", np.nan),
    "inf_grad": ("grad", np.inf),
    "neg_inf_grad_element": ("element", -np.inf),
    "huge_grad": ("grad", 1e30),
}
WARMUP, BAD, AFTER = 40, 5, 150


def least_squares():
  k = jax.random.split(jax.random.key(5), 3)
  x = jax.random.normal(k[0], (64, 8))
  y = x @ jax.random.normal(k[1], (8, 4)) + 0.1 * jax.random.normal(k[2], (64, 4))
  params = {"w": jnp.zeros((8, 4)), "b": jnp.zeros((4,))}
  return params, lambda p: jnp.mean(jnp.square(x @ p["w"] + p["b"][None] - y))


def inject(what: str, bad: jax.Array, value: float, loss, grads):
  """The loss and gradients of a step, replaced by ``value`` where ``bad``."""
  if what == "loss":
    return jnp.where(bad, jnp.float32(value), loss), grads
  if what == "grad":
    return loss, jax.tree.map(lambda g: jnp.where(bad, jnp.float32(value), g), grads)
  w = grads["w"]
  return loss, {**grads, "w": w.at[1, 2].set(jnp.where(bad, jnp.float32(value), w[1, 2]))}


@functools.lru_cache(maxsize=None)
def runner(name: str, what: str):
  """Jitted ``value -> (losses, final params, states, final loss)`` for one arch and kind."""
  arch = learned_opt.get(name, **SMALL.get(name, {}))
  total = WARMUP + BAD + AFTER
  tx = arch.as_optax(arch.init_meta(jax.random.key(0)), num_steps=total)
  params, loss_fn = least_squares()

  def step(carry, bad):
    params, state, value = carry
    loss, grads = jax.value_and_grad(loss_fn)(params)
    seen_loss, seen_grads = inject(what, bad, value, loss, grads)
    updates, state = tx.update(seen_grads, state, params, value=seen_loss)
    return (optax.apply_updates(params, updates), state, value), (loss, state)

  @jax.jit
  def run(value):
    bad = jnp.arange(total) >= WARMUP
    bad = bad & (jnp.arange(total) < WARMUP + BAD)
    (p, _, _), (losses, states) = jax.lax.scan(step, (params, tx.init(params), value), bad)
    return losses, p, states, loss_fn(p)

  return run


def float_leaves(tree):
  return [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("name", ARCHS)
def test_bad_steps_leave_everything_finite_and_training_recovers(name, kind):
  what, value = KINDS[kind]
  losses, params, states, final = runner(name, what)(jnp.float32(value))
  losses = np.asarray(losses)
  for leaf in float_leaves(params) + float_leaves(states):
    assert np.isfinite(np.asarray(leaf, np.float32)).all(), (name, kind)
  before = losses[WARMUP - 1]
  assert np.isfinite(losses).all()
  assert float(final) < before, (name, kind, losses[0], before, float(final), losses[WARMUP:WARMUP + BAD + 10])
