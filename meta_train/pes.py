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

Truncated ES (``TES``, ``TESHParams``) drops ``accum``: it only credits each
truncation's losses to the current noise, ignoring how earlier perturbations
shaped the state it started from. It is biased (towards greedy, short-horizon
updates); the test records by how much on the quadratic. The two share
``init``, ``ask`` and ``evaluate`` and the state (``PESState``); only ``tell``
differs.

``PES`` and ``TES`` are the registered records (``meta_train/estimators.py``)::

    state = init(key, arch, hp, theta, pool)
    population, state = ask(key, state, hp, theta, num_slots=B)
    truncation, state = evaluate(key, arch, hp, population, pool, state)
    grad, state, metrics = tell(population, truncation, state, hp, theta)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from learned_opt import perturbed
from meta_train import es, noise, unroll
from meta_train.base import (Estimator, Metrics, PESHParams, PESState, Task, TESHParams, Theta,
                             TruncatedHParams)

Population = es.Population


class Truncation(NamedTuple):
  """What ``evaluate`` hands ``tell``: one truncation's losses and where episodes ended."""

  meta: jax.Array  # [B, T, P, 2]: normalised meta-loss of every particle after every step
  live: jax.Array  # bool [B, T]: the step belongs to the episode running at the start
  reset: jax.Array  # bool [B]: an episode ended inside the truncation


def init(key: jax.Array, arch, hp: TruncatedHParams, theta: Theta, pool: Task) -> PESState:
  """Starts ``B`` slots (pool leaves ``[B, M, ...]``), staggered if ``hp.stagger``."""
  num_slots = jax.tree.leaves(pool)[0].shape[0]
  inner = jax.vmap(lambda p, k: unroll.init_slot(
      arch, hp.optimizer_num_steps, theta, p, k, num_pairs=hp.num_pairs,
      horizon_range=(hp.min_horizon, hp.max_horizon), stagger=hp.stagger))(
          pool, jax.random.split(key, num_slots))
  accum = jax.tree.map(lambda x: jnp.zeros((num_slots, hp.num_pairs) + x.shape, jnp.float32), theta)
  return PESState(inner, accum)


def ask(key: jax.Array, state: PESState, hp: TruncatedHParams, theta: Theta, *,
        num_slots: int) -> tuple[Population, PESState]:
  """Fresh antithetic perturbations for this truncation (the whole step key)."""
  del num_slots  # the state's slots: the same number
  num_slots, num_pairs = jax.tree.leaves(state.accum)[0].shape[:2]
  population = es.perturb(key, theta, sigma=hp.sigma, num_slots=num_slots, num_pairs=num_pairs,
                          noise_kind=hp.noise, perturbation=hp.perturbation, rank=hp.rank)
  return population, state


def evaluate(key: jax.Array, arch, hp: TruncatedHParams, population: Population, pool: Task,
             state: PESState) -> tuple[Truncation, PESState]:
  """Runs one truncation of every slot; the state gets the new inner trainings.

  ``key`` is unused: batches and new episodes derive from each episode's key in
  the inner state, so a slot's data does not depend on the outer step.
  """
  del key

  def one_slot(thetas, slot_pool, slot):
    return unroll.slot_unroll(arch, hp.optimizer_num_steps, thetas, slot_pool, slot,
                              length=hp.truncation_length,
                              horizon_range=(hp.min_horizon, hp.max_horizon),
                              split=hp.eval_split)

  thetas = unroll.particle_thetas(arch, population.thetas)
  inner, meta, live, reset = perturbed.vmap_over(one_slot, 1)(thetas, pool, state.inner)
  return Truncation(meta, live, reset), state._replace(inner=inner)


def _tell(population: Population, fitness: Truncation, state: PESState, hp: TruncatedHParams,
          theta: Theta, *, persistent: bool) -> tuple[Theta, PESState, Metrics]:
  """The PES (``persistent``) or truncated-ES meta-gradient, and the next ``accum``."""
  diff = (fitness.meta[..., 0] - fitness.meta[..., 1]) / hp.truncation_length  # [B, T, P]
  live_f = fitness.live.astype(jnp.float32)[..., None]
  s_old = jnp.sum(diff * live_f, axis=1)  # [B, P]
  s_new = jnp.sum(diff * (1.0 - live_f), axis=1)
  scale = 1.0 / (2.0 * hp.sigma**2)
  eps = population.eps
  if eps is None:
    eps = noise.per_pair(population.keys, theta, hp.noise)
  # accum is a sum of independent draws, full rank whatever eps's form.
  sig_eps = jax.tree.map(lambda e: hp.sigma * e, noise.dense(eps, theta))
  old_noise = jax.tree.map(jnp.add, state.accum, sig_eps) if persistent else sig_eps
  n = s_old.size

  def combine(old, new):
    return (jnp.tensordot(s_old, old, axes=2) + jnp.tensordot(s_new, new, axes=2)) * scale / n

  grad = jax.tree.map(combine, old_noise, sig_eps)
  accum = state.accum
  if persistent:
    # An episode that began inside this truncation has seen only this eps.
    r = fitness.reset[:, None]
    accum = jax.tree.map(lambda o, s: jnp.where(r.reshape(r.shape + (1,) * (o.ndim - 2)), s, o),
                         old_noise, sig_eps)
  return grad, state._replace(accum=accum), {"meta_loss": jnp.mean(fitness.meta)}


def tell(population: Population, fitness: Truncation, state: PESState, hp: PESHParams,
         theta: Theta) -> tuple[Theta, PESState, Metrics]:
  """PES: each loss is credited to all the noise its episode has seen."""
  return _tell(population, fitness, state, hp, theta, persistent=True)


def tell_truncated(population: Population, fitness: Truncation, state: PESState,
                   hp: TESHParams, theta: Theta) -> tuple[Theta, PESState, Metrics]:
  """Truncated ES: each loss is credited to this truncation's noise only (``accum`` stays 0)."""
  return _tell(population, fitness, state, hp, theta, persistent=False)


def inner_steps(hp: TruncatedHParams) -> int:
  return 2 * hp.num_pairs * hp.truncation_length


PES = Estimator(hparams=PESHParams, init=init, ask=ask, evaluate=evaluate, tell=tell,
                inner_steps=inner_steps)
TES = Estimator(hparams=TESHParams, init=init, ask=ask, evaluate=evaluate, tell=tell_truncated,
                inner_steps=inner_steps)
