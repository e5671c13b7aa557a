"""Held-out evaluation: train tasks with a learned optimizer or Adam, report the final loss.

The score of an optimizer on a task is the normalised loss (``task.normalizer``)
after ``num_steps`` steps, averaged over a few fresh eval batches.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

import tasks


def held_out_tasks(key: jax.Array, num: int, *, distribution: str, family: str = ""):
  """``num`` ``(name, task)`` pairs from a key disjoint from the meta-training ones."""
  out = []
  for k in jax.random.split(key, num):
    if family:
      name, spec = family, tasks.get_family(family).sample(k)
    else:
      name, spec = tasks.sample_task(k, distribution)
    task = tasks.get_family(name).build(spec)
    out.append((task.name, task))
  return out


def _train(task, tx, num_steps: int, key: jax.Array) -> jax.Array:
  k_init, k_run, k_eval = jax.random.split(key, 3)
  params = task.init(k_init)
  state = tx.init(params)

  def body(carry, k):
    params, state = carry
    k_batch, k_loss = jax.random.split(k)
    loss, grads = jax.value_and_grad(task.loss)(params, k_loss, task.sample_batch(k_batch, "train"))
    updates, state = tx.update(grads, state, params, value=loss)
    return (optax.apply_updates(params, updates), state), None

  (params, _), _ = jax.lax.scan(body, (params, state), jax.random.split(k_run, num_steps))

  def eval_loss(k):
    k_batch, k_loss = jax.random.split(k)
    return task.normalizer(task.loss(params, k_loss, task.sample_batch(k_batch, "eval")))

  return jnp.mean(jax.vmap(eval_loss)(jax.random.split(k_eval, 4)))


@functools.partial(jax.jit, static_argnames=("arch", "num_steps"))
def learned_score(arch, theta, task, num_steps: int, key: jax.Array) -> jax.Array:
  """Final normalised loss of ``task`` trained by ``arch.as_optax(theta)``."""
  return _train(task, arch.as_optax(theta, num_steps=num_steps), num_steps, key)


@functools.partial(jax.jit, static_argnames=("num_steps",))
def adam_scores(lrs: jax.Array, task, num_steps: int, key: jax.Array) -> jax.Array:
  """Final normalised loss of ``task`` under Adam at each learning rate, shape ``(len(lrs),)``."""

  def one(lr):
    tx = optax.with_extra_args_support(optax.adam(lr))
    return _train(task, tx, num_steps, key)

  return jax.vmap(one)(lrs)


# The metric that picks export/best. Not the mean loss: one task that Adam (and
# so likely theta) diverges on dominates a mean of normalised losses, which made
# checkpoint selection noise (docs/pretrained.md, attempts 1-2). The mean log
# ratio to Adam weighs every task alike: -0.69 means "half Adam's loss" on average.
SELECT = "eval_log_ratio"
_FLOOR = 1e-6  # losses at or below this count as solved (a ratio of two zeros is noise)


def learned_scores(arch, theta, task_list, *, num_steps: int, key: jax.Array) -> list[float]:
  """Final normalised loss per task under ``arch.as_optax(theta)``."""
  return [float(learned_score(arch, theta, task, num_steps, jax.random.fold_in(key, i)))
          for i, (_, task) in enumerate(task_list)]


def adam_reference(task_list, *, num_steps: int, adam_lr: float, key: jax.Array) -> list[float]:
  """Final normalised loss per task under Adam at ``adam_lr`` (same keys as ``learned_scores``)."""
  lrs = jnp.asarray((adam_lr,), jnp.float32)
  return [float(adam_scores(lrs, task, num_steps, jax.random.fold_in(key, i))[0])
          for i, (_, task) in enumerate(task_list)]


def summarize(learned: list[float], adam: list[float]) -> dict[str, float]:
  """Held-out metrics: the means (for plots), the win fraction and the selection score.

  A non-finite learned loss counts as 10x Adam's (so a diverged theta is never
  selected over a finite one); a non-finite Adam loss leaves the task out of the ratio.
  """
  ratios, wins = [], []
  for l, a in zip(learned, adam):
    if not np.isfinite(a):
      continue
    l = l if np.isfinite(l) else 10 * max(a, _FLOOR)
    ratios.append(np.log(max(l, _FLOOR) / max(a, _FLOOR)))
    wins.append(float(l < a))
  finite = lambda xs: [x for x in xs if np.isfinite(x)]
  return {
      "eval_learned": float(np.mean(finite(learned))) if finite(learned) else float("nan"),
      "eval_adam": float(np.mean(finite(adam))) if finite(adam) else float("nan"),
      SELECT: float(np.mean(ratios)) if ratios else float("inf"),
      "eval_win_rate": float(np.mean(wins)) if wins else float("nan"),
  }


def compare(arch, theta, task_list, *, num_steps: int, adam_lr: float,
            sweep: tuple[float, ...] = (), key: jax.Array) -> list[dict]:
  """Per task: learned, Adam at ``adam_lr``, and (if ``sweep``) Adam at the best swept LR."""
  rows = []
  # One vmapped Adam program per task covers the default LR and the sweep.
  lrs = jnp.asarray((adam_lr,) + tuple(sweep), jnp.float32)
  for i, (name, task) in enumerate(task_list):
    k = jax.random.fold_in(key, i)
    scores = adam_scores(lrs, task, num_steps, k)
    row = {"task": name, "learned": float(learned_score(arch, theta, task, num_steps, k)),
           "adam": float(scores[0])}
    if sweep:
      best = int(jnp.argmin(scores[1:]))
      row.update(adam_best=float(scores[1 + best]), adam_best_lr=float(sweep[best]))
    rows.append(row)
  return rows


def format_table(rows: list[dict], num_steps: int) -> str:
  """A plain-text table of ``compare`` rows (lower is better)."""
  head = f"{'task':<34} {'meta-trained':>12} {'Adam(default)':>13} {'Adam(best LR)':>13} {'best LR':>8}"
  lines = [f"normalised final loss after {num_steps} steps (lower is better)", head, "-" * len(head)]
  for r in rows:
    lines.append(f"{r['task'][:34]:<34} {r['learned']:>12.4f} {r['adam']:>13.4f} "
                 f"{r.get('adam_best', float('nan')):>13.4f} {r.get('adam_best_lr', float('nan')):>8.0e}")
  mean = lambda k: sum(r.get(k, float('nan')) for r in rows) / len(rows)
  lines.append(f"{'mean':<34} {mean('learned'):>12.4f} {mean('adam'):>13.4f} {mean('adam_best'):>13.4f}")
  return "\n".join(lines)
