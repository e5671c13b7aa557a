"""Truncated Persistent Evolution Strategies (PES), and truncated ES.

Vicol, Metz and Sohl-Dickstein, "Unbiased Gradient Estimation in Unrolled
Computation Graphs with Persistent Evolution Strategies", ICML 2021.

Inner trainings persist across truncations of ``T`` steps. Each antithetic
pair keeps ``accum``, the sum of its perturbations ``sigma*eps_k`` since its
episode began. For a truncation with fresh ``eps``, the per-pair estimate is::

    g = [ S_old * (accum + sigma*eps) + S_new * sigma*eps ] / (2 sigma^2)

where ``S_old`` sums ``(f+_t - f-_t) / T`` over the steps that belong to the
episode running when the truncation began, and ``S_new`` over the steps of an
episode that began inside it (its only perturbation so far is ``sigma*eps``).

**The episode boundary.** The meta-loss of a step is measured after that
step's update (``unroll.py``), so the last loss of an episode is credited to
that episode's accumulated noise. learned_optimization's PES credits it to the
*next* episode's noise, which on a closed-form quadratic gives 0.93 of the true
gradient; tests/meta_train/test_estimators.py checks that ours gives 1.00.

``mode="tes"`` (truncated ES) drops ``accum``: it only credits each truncation's
losses to the current noise, ignoring how earlier perturbations shaped the
state it started from. It is biased (towards greedy, short-horizon updates);
the test records by how much on the quadratic.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from meta_train import es, unroll
from meta_train.base import Estimate, InnerState, PESHParams, PESState, Task, Theta

Population = es.Population


def init(key: jax.Array, arch, hp: PESHParams, theta: Theta, pool: Task) -> PESState:
  """Starts ``B`` slots (pool leaves ``[B, M, ...]``), staggered if ``hp.stagger``."""
  num_slots = jax.tree.leaves(pool)[0].shape[0]
  inner = jax.vmap(lambda p, k: unroll.init_slot(
      arch, hp.optimizer_num_steps, theta, p, k, num_pairs=hp.num_pairs,
      horizon_range=(hp.min_horizon, hp.max_horizon), stagger=hp.stagger))(
          pool, jax.random.split(key, num_slots))
  accum = jax.tree.map(lambda x: jnp.zeros((num_slots, hp.num_pairs) + x.shape, jnp.float32), theta)
  return PESState(inner, accum)


def ask(key: jax.Array, theta: Theta, state: PESState, hp: PESHParams) -> Population:
  """Fresh antithetic perturbations for this truncation."""
  num_slots, num_pairs = jax.tree.leaves(state.accum)[0].shape[:2]
  return es.ask(key, theta, sigma=hp.sigma, num_slots=num_slots, num_pairs=num_pairs,
                noise=hp.noise)


def evaluate(arch, hp: PESHParams, population: Population, pool: Task, state: PESState):
  """Runs one truncation of every slot.

  Returns:
    ``(inner, meta, live, reset)``: the new inner state; meta-losses
    ``(B, T, P, 2)``; ``live`` ``(B, T)`` (step belongs to the episode running
    at the truncation's start); ``reset`` ``(B,)``.
  """

  def one_slot(thetas, slot_pool, slot):
    return unroll.slot_unroll(arch, hp.optimizer_num_steps, thetas, slot_pool, slot,
                              length=hp.truncation_length,
                              horizon_range=(hp.min_horizon, hp.max_horizon),
                              split=hp.eval_split)

  return jax.vmap(one_slot)(population.thetas, pool, state.inner)


def tell(population: Population, meta: jax.Array, live: jax.Array, reset: jax.Array,
         inner: InnerState, state: PESState, theta: Theta,
         hp: PESHParams) -> tuple[Theta, PESState]:
  """The PES (or truncated ES) meta-gradient, and the state for the next truncation."""
  diff = (meta[..., 0] - meta[..., 1]) / hp.truncation_length  # [B, T, P]
  live_f = live.astype(jnp.float32)[..., None]
  s_old = jnp.sum(diff * live_f, axis=1)  # [B, P]
  s_new = jnp.sum(diff * (1.0 - live_f), axis=1)
  scale = 1.0 / (2.0 * hp.sigma**2)
  eps = population.eps
  if eps is None:
    eps = jax.vmap(jax.vmap(lambda k: unroll.noise(k, theta, hp.noise)))(population.keys)
  sig_eps = jax.tree.map(lambda e: hp.sigma * e, eps)
  if hp.mode == "pes":
    old_noise = jax.tree.map(jnp.add, state.accum, sig_eps)
  else:
    old_noise = sig_eps
  n = s_old.size

  def combine(old, new):
    return (jnp.tensordot(s_old, old, axes=2) + jnp.tensordot(s_new, new, axes=2)) * scale / n

  grad = jax.tree.map(combine, old_noise, sig_eps)
  if hp.mode == "pes":
    # An episode that began inside this truncation has seen only this eps.
    r = reset[:, None]
    accum = jax.tree.map(lambda o, s: jnp.where(r.reshape(r.shape + (1,) * (o.ndim - 2)), s, o),
                         old_noise, sig_eps)
  else:
    accum = state.accum
  return grad, PESState(inner, accum)


def estimate(arch, hp: PESHParams, theta: Theta, pool: Task, state: PESState,
             key: jax.Array) -> tuple[Estimate, PESState]:
  """ask -> evaluate -> tell for one truncation."""
  population = ask(key, theta, state, hp)
  inner, meta, live, reset = evaluate(arch, hp, population, pool, state)
  grad, state = tell(population, meta, live, reset, inner, state, theta, hp)
  return Estimate(grad, jnp.mean(meta), hp.truncation_length), state
