"""Antithetic full-unroll evolution strategies (VeLO's estimator).

Metz et al. 2022, "VeLO: Training Versatile Learned Optimizers by Scaling Up",
after Salimans et al. 2017. Each pair perturbs theta by +-sigma*eps, trains the
task for the whole horizon and scores the final (or mean) normalised loss; the
gradient estimate is ``mean((f+ - f-) / (2 sigma) * eps)``, or
``mean(sign(f+ - f-) * eps)`` with sign fitness shaping. ``eps`` is drawn
from each pair's PRNG key once per step; only keys are ever stored.

The functions follow evosax's ask/eval/tell shape over explicit state:

    population = ask(key, theta, hp, num_slots)
    fitness = evaluate(arch, hp, population, pool, key)
    grad = tell(population, fitness, hp)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from meta_train import unroll
from meta_train.base import ESHParams, Estimate, Task, Theta


class Population(NamedTuple):
  """Perturbed meta-parameters of ``B`` slots x ``P`` antithetic pairs.

  A transient of one outer step (like the perturbed ``thetas`` themselves):
  estimator state and checkpoints keep only keys, and ``eps`` is drawn once
  per step so that ``tell`` does not draw it again.
  """

  keys: jax.Array  # typed keys [B, P]: eps of each pair is noise(key)
  thetas: Theta  # leaves [B, P, 2, ...]: theta + sigma*eps, theta - sigma*eps
  eps: Theta = None  # leaves [B, P, ...]: noise(key) of each pair


def ask(key: jax.Array, theta: Theta, *, sigma: float, num_slots: int,
        num_pairs: int, noise: str = "normal") -> Population:
  """Draws ``num_slots x num_pairs`` antithetic perturbations of ``theta``."""
  keys = jax.random.split(key, (num_slots, num_pairs))
  eps = jax.vmap(jax.vmap(lambda k: unroll.noise(k, theta, noise)))(keys)
  perturb = lambda e: jax.tree.map(lambda t, x: jnp.stack([t + sigma * x, t - sigma * x]),
                                   theta, e)
  thetas = jax.vmap(jax.vmap(perturb))(eps)
  return Population(keys, thetas, eps)


def weighted_noise(population: Population, weights: jax.Array, theta: Theta,
                   noise: str = "normal") -> Theta:
  """``mean_{b,p} weights[b,p] * eps[b,p]`` (eps regenerated from the keys if absent)."""
  eps = population.eps
  if eps is None:
    eps = jax.vmap(jax.vmap(lambda k: unroll.noise(k, theta, noise)))(population.keys)
  n = weights.size
  return jax.tree.map(lambda e: jnp.tensordot(weights, e, axes=weights.ndim) / n, eps)


def evaluate(arch, hp: ESHParams, population: Population, pool: Task,
             key: jax.Array) -> jax.Array:
  """Fitness (meta-loss) of every particle, shape ``(B, P, 2)``.

  Each slot draws one task from its pool (leaves ``[B, M, ...]``) and one init;
  all its particles train that task on the same batches.
  """
  num_slots = jax.tree.leaves(population.thetas)[0].shape[0]

  def one_slot(thetas, slot_pool, k):
    slot = unroll.new_episode(arch, hp.horizon, thetas, slot_pool, k, (hp.horizon, hp.horizon))
    slot, meta, _, _ = unroll.slot_unroll(arch, hp.horizon, thetas, slot_pool, slot,
                                          length=hp.horizon, horizon_range=(hp.horizon, hp.horizon),
                                          split=hp.eval_split, resets=False)
    if hp.meta_loss == "mean":
      return jnp.mean(meta, axis=0)
    return unroll.final_meta_loss(arch, hp.horizon, slot_pool, slot,
                                  num_batches=hp.num_eval_batches, split=hp.eval_split)

  return jax.vmap(one_slot)(population.thetas, pool, jax.random.split(key, num_slots))


def tell(population: Population, fitness: jax.Array, theta: Theta, hp: ESHParams) -> Theta:
  """The ES meta-gradient estimate from fitness ``(B, P, 2)``."""
  diff = fitness[..., 0] - fitness[..., 1]
  if hp.shaping == "sign":
    weights = jnp.sign(diff)
  else:
    weights = diff / (2.0 * hp.sigma)
  return weighted_noise(population, weights, theta, hp.noise)


def estimate(arch, hp: ESHParams, theta: Theta, pool: Task, key: jax.Array) -> Estimate:
  """ask -> evaluate -> tell for one outer step (pool leaves ``[B, M, ...]``)."""
  k_ask, k_eval = jax.random.split(key)
  num_slots = jax.tree.leaves(pool)[0].shape[0] if jax.tree.leaves(pool) else 1
  population = ask(k_ask, theta, sigma=hp.sigma, num_slots=num_slots, num_pairs=hp.num_pairs,
                   noise=hp.noise)
  fitness = evaluate(arch, hp, population, pool, k_eval)
  grad = tell(population, fitness, theta, hp)
  return Estimate(grad, jnp.mean(fitness), hp.horizon)
