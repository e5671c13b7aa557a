"""Antithetic full-unroll evolution strategies (VeLO's estimator).

Metz et al. 2022, "VeLO: Training Versatile Learned Optimizers by Scaling Up",
after Salimans et al. 2017. Each pair perturbs theta by +-sigma*eps, trains the
task for the whole horizon and scores the final (or mean) normalised loss; the
gradient estimate is ``mean((f+ - f-) / (2 sigma) * eps)``, or
``mean(sign(f+ - f-) * eps)`` with sign fitness shaping. ``eps`` is drawn
from each pair's PRNG key once per step; only keys are ever stored.

``ESTIMATOR`` is the registered record (``meta_train/estimators.py``). Its
functions follow evosax's ask/eval/tell shape over explicit state; the state
is ``()``: every step starts fresh episodes, nothing persists::

    population, () = ask(key, (), hp, theta, num_slots=B)
    fitness, () = evaluate(key, arch, hp, population, pool, ())
    grad, (), metrics = tell(population, fitness, (), hp, theta)

``perturb``, ``fitness`` and ``gradient`` are the pieces, with explicit keys,
for estimators that reuse them (``pes.py``) and for tests.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from learned_opt import perturbed
from meta_train import noise, unroll
from meta_train.base import ESHParams, Estimator, Metrics, Task, Theta


class Population(NamedTuple):
  """Perturbed meta-parameters of ``B`` slots x ``P`` antithetic pairs.

  A transient of one outer step (like the perturbed ``thetas`` themselves):
  estimator state and checkpoints keep only keys, and ``eps`` is drawn once
  per step so that ``tell`` does not draw it again. With ``perturbation``
  "implicit" or "lowrank" the leaves of ``thetas`` are ``learned_opt.perturbed``
  parts (theta once, eps per pair, ``+-sigma`` per particle), not copies.
  """

  keys: jax.Array  # typed keys [B, P]: eps of each pair is noise.sample(key)
  thetas: Theta  # leaves [B, P, 2, ...]: theta + sigma*eps, theta - sigma*eps
  eps: Theta = None  # leaves [B, P, ...]: noise.sample(key) of each pair


# ----------------------------------------------------------------------------
# The pieces
# ----------------------------------------------------------------------------


def perturb(key: jax.Array, theta: Theta, *, sigma: float, num_slots: int, num_pairs: int,
            noise_kind: str = "normal", perturbation: str = "dense",
            rank: int = 1) -> Population:
  """Draws ``num_slots x num_pairs`` antithetic perturbations of ``theta``."""
  keys = jax.random.split(key, (num_slots, num_pairs))
  return antithetic(keys, theta, sigma=sigma, noise_kind=noise_kind, perturbation=perturbation,
                    rank=rank)


def antithetic(keys: jax.Array, theta: Theta, *, sigma: float, noise_kind: str = "normal",
               perturbation: str = "dense", rank: int = 1) -> Population:
  """The population ``theta +- sigma * eps`` of a ``[B, P]`` array of pair keys.

  ``perturbation`` (see ``ESHParams``): "dense" materialises every particle's
  theta; "implicit" and "lowrank" return ``perturbed.Offset``/``LowRank``
  parts whose ``w`` is theta itself, unbatched.
  """
  eps = noise.per_pair(keys, theta, noise_kind, rank if perturbation == "lowrank" else 0)
  if perturbation == "dense":
    pm = lambda e: jax.tree.map(lambda t, x: jnp.stack([t + sigma * x, t - sigma * x]), theta, e)
    return Population(keys, jax.vmap(jax.vmap(pm))(eps), eps)
  scale = jnp.broadcast_to(jnp.asarray([sigma, -sigma], jnp.float32), keys.shape + (2,))

  def part(t, e):
    if noise.is_factors(e):
      return perturbed.LowRank(t, e.a, e.b, scale / np.float32(np.sqrt(e.a.shape[-1])))
    return perturbed.Offset(t, e, scale)

  return Population(keys, jax.tree.map(part, theta, eps, is_leaf=noise.is_factors), eps)


def weighted_noise(population: Population, weights: jax.Array, theta: Theta,
                   noise_kind: str = "normal") -> Theta:
  """``mean_{b,p} weights[b,p] * eps[b,p]`` (eps regenerated from the keys if absent)."""
  eps = population.eps
  if eps is None:
    eps = noise.per_pair(population.keys, theta, noise_kind)
  return noise.weighted_mean(weights, eps, theta)


def fitness(arch, hp: ESHParams, population: Population, pool: Task,
            key: jax.Array) -> jax.Array:
  """Meta-loss of every particle after a full unroll, shape ``(B, P, 2)``.

  Each slot draws one task from its pool (leaves ``[B, M, ...]``) and one init
  from ``key``; all its particles train that task on the same batches.
  """
  thetas = unroll.particle_thetas(arch, population.thetas)
  num_slots = perturbed.batch_shape(thetas, 1)[0]
  fixed = (hp.horizon, hp.horizon)

  def one_slot(thetas, slot_pool, k):
    slot = unroll.new_episode(arch, hp.horizon, thetas, slot_pool, k, fixed)
    slot, meta, _, _ = unroll.slot_unroll(arch, hp.horizon, thetas, slot_pool, slot,
                                          length=hp.horizon, horizon_range=fixed,
                                          split=hp.eval_split, resets=False)
    if hp.meta_loss == "mean":
      return jnp.mean(meta, axis=0)
    return unroll.final_meta_loss(arch, hp.horizon, slot_pool, slot,
                                  num_batches=hp.num_eval_batches, split=hp.eval_split)

  return perturbed.vmap_over(one_slot, 1)(thetas, pool, jax.random.split(key, num_slots))


def gradient(population: Population, fitness_: jax.Array, theta: Theta,
             hp: ESHParams) -> Theta:
  """The ES meta-gradient estimate from fitness ``(B, P, 2)``."""
  diff = fitness_[..., 0] - fitness_[..., 1]
  if hp.shaping == "sign":
    weights = jnp.sign(diff)
  else:
    weights = diff / (2.0 * hp.sigma)
  return weighted_noise(population, weights, theta, hp.noise)


# ----------------------------------------------------------------------------
# The protocol (meta_train.base.Estimator)
# ----------------------------------------------------------------------------


def init(key: jax.Array, arch, hp: ESHParams, theta: Theta, pool: Task) -> tuple:
  """No state: every outer step trains fresh episodes."""
  del key, arch, hp, theta, pool
  return ()


def ask(key: jax.Array, state: tuple, hp: ESHParams, theta: Theta, *,
        num_slots: int) -> tuple[Population, tuple]:
  """Antithetic perturbations from the first half of the step key (``evaluate`` uses the second)."""
  k_ask, _ = jax.random.split(key)
  population = perturb(k_ask, theta, sigma=hp.sigma, num_slots=num_slots,
                       num_pairs=hp.num_pairs, noise_kind=hp.noise,
                       perturbation=hp.perturbation, rank=hp.rank)
  return population, state


def evaluate(key: jax.Array, arch, hp: ESHParams, population: Population, pool: Task,
             state: tuple) -> tuple[jax.Array, tuple]:
  """``fitness`` with the second half of the step key (tasks, inits and batches)."""
  _, k_eval = jax.random.split(key)
  return fitness(arch, hp, population, pool, k_eval), state


def tell(population: Population, fitness_: jax.Array, state: tuple, hp: ESHParams,
         theta: Theta) -> tuple[Theta, tuple, Metrics]:
  """The meta-gradient and the mean meta-loss of all particles."""
  return gradient(population, fitness_, theta, hp), state, {"meta_loss": jnp.mean(fitness_)}


def inner_steps(hp: ESHParams) -> int:
  return 2 * hp.num_pairs * hp.horizon


ESTIMATOR = Estimator(hparams=ESHParams, init=init, ask=ask, evaluate=evaluate, tell=tell,
                      inner_steps=inner_steps, has_state=False)
