"""End to end: meta-training ``adam_hparams`` on quadratics matches the best fixed learning rate.

The meta-loss is the normalised loss after ``HORIZON`` Adam-like steps,
averaged over held-out quadratics, inits and batches (all fixed, so it is a
deterministic function of theta). ``adam_hparams`` with zero output weights is
exactly Adam at ``exp(b2[0])``, so a grid over that bias is the grid search over
fixed learning rates; meta-training starts far from the best one (at 1e-3) and
runs the engine's jitted outer step (ES estimate + clipped Adam on theta).
"""

import jax
import jax.numpy as jnp
import numpy as np

import learned_opt
from meta_train import engine, es
from meta_train.base import ESHParams
from tests.meta_train import helpers

HORIZON = 20
OUTER_STEPS = 150


def _fixed_lr(theta, lr):
  b2 = theta["b2"].at[0].set(jnp.log(jnp.float32(lr)))
  return dict(theta, w2=jnp.zeros_like(theta["w2"]), b2=b2)


def test_meta_trained_adam_hparams_matches_best_fixed_lr():
  arch = learned_opt.get("adam_hparams", hidden_size=8, init_lr=1e-3)
  hp = ESHParams(sigma=0.01, num_pairs=8, horizon=HORIZON, meta_loss="final",
                 num_eval_batches=2)
  train_pool = helpers.quadratic_pool(jax.random.key(1), num_slots=8, pool_size=8)
  held_out = helpers.quadratic_pool(jax.random.key(2), num_slots=64, pool_size=1)

  def meta_loss(theta):
    thetas = jax.tree.map(lambda x: jnp.broadcast_to(x, (64, 1, 2) + x.shape), theta)
    fitness = es.fitness(arch, hp, es.Population(None, thetas), held_out, jax.random.key(3))
    return jnp.mean(fitness)

  theta0 = arch.init_meta(jax.random.key(0))
  tx = engine.outer_optimizer(learning_rate=0.05, clip_norm=1.0)

  @jax.jit
  def train(theta):
    def body(carry, k):
      theta, opt_state = carry
      theta, opt_state, _, metrics = engine.outer_step(arch, "es", hp, tx, theta, opt_state,
                                                       train_pool, (), jax.random.key_data(k))
      return (theta, opt_state), metrics["meta_loss"]

    (theta, _), losses = jax.lax.scan(body, (theta, tx.init(theta)),
                                      jax.random.split(jax.random.key(4), OUTER_STEPS))
    return theta, losses

  theta, _ = train(theta0)
  # One program scores the grid of fixed learning rates, the start and the result.
  lrs = np.logspace(-3, 0, 19)  # 10^(1/6) apart
  candidates = [_fixed_lr(theta0, lr) for lr in lrs] + [theta0, theta]
  scores = np.asarray(jax.jit(jax.vmap(meta_loss))(
      jax.tree.map(lambda *xs: jnp.stack(xs), *candidates)))
  grid, start, learned = scores[:len(lrs)], scores[-2], scores[-1]
  best = int(np.argmin(grid))
  print(f"start {start:.4f} (lr 1e-3); best fixed LR {lrs[best]:.3g}: {grid[best]:.4f}; "
        f"meta-trained: {learned:.4f}")
  assert 0 < best < len(lrs) - 1, f"best LR {lrs[best]} is at the grid's edge: widen it"
  assert learned <= 1.05 * grid[best]
