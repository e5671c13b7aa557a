"""An estimator defined outside the package: forward-difference ES on a fixed horizon.

Each pair is ``(theta + sigma*eps, theta)``: a perturbed particle and an
unperturbed baseline on the same task, init and batches, and the gradient
estimate is ``mean((f(theta + sigma*eps) - f(theta)) / sigma * eps)``
(Nesterov and Spokoiny 2017's one-sided Gaussian smoothing). It is the whole of
what adding an estimator takes: this file, and one
``register_estimator("forward_es", ESTIMATOR)`` line where it is used
(``test_external_estimator.py``; a ``--import`` plug-in would end with it).
It reuses the package's pieces: ``noise`` for eps, ``es.fitness`` for the unroll.
"""

import dataclasses

import jax
import jax.numpy as jnp

from meta_train import es, noise
from meta_train.base import Estimator, EstimatorError


@dataclasses.dataclass(frozen=True)
class ForwardESHParams:
  """Every field has a default: the config sub-dict ``config.forward_es`` starts from them."""

  sigma: float = 0.01
  num_pairs: int = 1
  horizon: int = 20

  def __post_init__(self):
    if not self.sigma > 0:
      raise EstimatorError(f"sigma must be > 0, got {self.sigma!r}.", "sigma")


def init(key, arch, hp, theta, pool):
  del key, arch, hp, theta, pool
  return ()  # stateless: every outer step trains fresh episodes


def ask(key, state, hp, theta, *, num_slots):
  k_ask, _ = jax.random.split(key)  # evaluate draws from the other half
  keys = jax.random.split(k_ask, (num_slots, hp.num_pairs))
  eps = noise.per_pair(keys, theta)
  pair = lambda e: jax.tree.map(lambda t, x: jnp.stack([t + hp.sigma * x, t]), theta, e)
  return es.Population(keys, jax.vmap(jax.vmap(pair))(eps), eps), state


def evaluate(key, arch, hp, population, pool, state):
  _, k_eval = jax.random.split(key)
  # es.fitness reads horizon, eval_split, meta_loss and num_eval_batches.
  full = es.ESHParams(sigma=hp.sigma, num_pairs=hp.num_pairs, horizon=hp.horizon)
  return es.fitness(arch, full, population, pool, k_eval), state


def tell(population, fitness, state, hp, theta):
  del theta
  weights = (fitness[..., 0] - fitness[..., 1]) / hp.sigma  # [B, P]
  grad = es.weighted_noise(population, weights, None)
  return grad, state, {"meta_loss": jnp.mean(fitness[..., 1])}  # the baseline's loss


ESTIMATOR = Estimator(hparams=ForwardESHParams, init=init, ask=ask, evaluate=evaluate,
                      tell=tell, inner_steps=lambda hp: 2 * hp.num_pairs * hp.horizon,
                      has_state=False)
