"""Noise-reuse evolution strategies (NRES).

Li, Harrison, Sohl-Dickstein, Smith and Metz, "Noise-Reuse in Online
Evolution Strategies", NeurIPS 2023.

Like PES, inner trainings persist across truncations of ``T`` steps. Unlike
PES, each antithetic pair draws **one** perturbation ``eps`` when its episode
begins and keeps it for the whole episode, so every step of the episode so far
was taken with ``theta +- sigma*eps``. A truncation's losses are then exactly
those of two fixed perturbed optimizers, and the plain antithetic estimate::

    g = (f+ - f-) / (2 sigma) * eps      (f: the truncation's mean meta-loss)

is unbiased for the episode's smoothed loss, with no accumulated noise to
carry. Its variance does not grow with the number of truncations (PES's
``accum`` is a sum of one draw per truncation, so its variance grows with the
episode's length); the paper shows it is the lowest-variance unbiased online
ES in this family, which is what matters at horizons of 2,000 steps.

**The episode boundary.** When a slot's episode ends inside a truncation, the
steps of the new episode in it are still taken with the old ``eps`` (one
population per truncation) and are credited to it, which is exact for them.
The slot draws a fresh ``eps`` at the next truncation, so the new episode's
first few steps were taken with another perturbation than the rest; that
cross-term is dropped (a bias of at most ``T`` steps per episode, which the
test on the quadratic measures; it vanishes when episodes start at truncation
boundaries).

Only keys are stored (``NRESState.keys``), as for every estimator here: eps
is regenerated from them each truncation, so the state does not grow with
theta. The inner trainings and ``evaluate`` are PES's (``pes.py``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from meta_train import es, pes
from meta_train.base import Estimator, Metrics, NRESHParams, NRESState, Task, Theta

Population = es.Population


def init(key: jax.Array, arch, hp: NRESHParams, theta: Theta, pool: Task) -> NRESState:
  """PES's staggered inner trainings; every pair draws its eps at the first ``ask``."""
  inner = pes.init(key, arch, hp, theta, pool).inner
  num_slots = jax.tree.leaves(pool)[0].shape[0]
  keys = jax.random.key_data(jax.random.split(jax.random.fold_in(key, 1),
                                              (num_slots, hp.num_pairs)))
  return NRESState(inner=inner, keys=keys, fresh=jnp.ones((num_slots,), bool))


def ask(key: jax.Array, state: NRESState, hp: NRESHParams, theta: Theta, *,
        num_slots: int) -> tuple[Population, NRESState]:
  """The episode's perturbations; slots whose episode just began draw new ones from ``key``."""
  del num_slots
  b, p = state.keys.shape[:2]
  new = jax.random.key_data(jax.random.split(key, (b, p)))
  keys = jnp.where(state.fresh[:, None, None], new, state.keys)
  population = es.antithetic(jax.random.wrap_key_data(keys), theta, sigma=hp.sigma,
                             noise_kind=hp.noise, perturbation=hp.perturbation, rank=hp.rank)
  return population, state._replace(keys=keys, fresh=jnp.zeros_like(state.fresh))


def evaluate(key: jax.Array, arch, hp: NRESHParams, population: Population, pool: Task,
             state: NRESState) -> tuple[pes.Truncation, NRESState]:
  """One truncation of every slot (PES's unroll); the state gets the new inner trainings."""
  truncation, out = pes.evaluate(key, arch, hp, population, pool,
                                 pes.PESState(state.inner, ()))
  return truncation, state._replace(inner=out.inner)


def tell(population: Population, fitness: pes.Truncation, state: NRESState, hp: NRESHParams,
         theta: Theta) -> tuple[Theta, NRESState, Metrics]:
  """The antithetic estimate with the episode's eps; a slot whose episode ended redraws."""
  diff = (fitness.meta[..., 0] - fitness.meta[..., 1]) / hp.truncation_length  # [B, T, P]
  total = jnp.sum(diff, axis=1)  # [B, P]
  # VeLO's sign shaping keeps only the sign of each pair's difference.
  weights = jnp.sign(total) if hp.shaping == "sign" else total / (2.0 * hp.sigma)
  grad = es.weighted_noise(population, weights, theta, hp.noise)
  return grad, state._replace(fresh=fitness.reset), {"meta_loss": jnp.mean(fitness.meta)}


NRES = Estimator(hparams=NRESHParams, init=init, ask=ask, evaluate=evaluate, tell=tell,
                 inner_steps=pes.inner_steps)
