"""Inner training: ``lax.scan`` over steps, ``vmap`` over pairs, signs and task slots.

One *slot* runs one task; its ``P`` antithetic pairs (``2P`` particles) share
the task, the episode's horizon and every batch (common random numbers, so the
difference f+ - f- only measures the perturbation). A particle's step is::

    loss, grads = value_and_grad(task.loss)(params, key, batch)
    params <- params + opt(theta_i).update(grads, ..., value=loss)
    meta   <- task.normalizer(task.loss(params, key', meta_batch))

The meta-loss of step ``t`` is measured *after* the update, so the last step of
an episode is credited to the episode that took it (see ``pes.py``). When a
slot reaches its horizon it resets inside the scan (new task from its pool, new
init, new horizon), which is what lets resets be staggered across slots.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from learned_opt import perturbed
from meta_train.base import InnerState, KeyData, Task, Theta


# fold_in tags; batch keys use fold_in(episode_key, step) with step < 2**30.
_NEXT_EPISODE = 2**31 - 1
_FINAL_EVAL = 2**30


def wrap(key_data: KeyData) -> jax.Array:
  return jax.random.wrap_key_data(key_data)


def unwrap(key: jax.Array) -> KeyData:
  return jax.random.key_data(key)


def sample_horizon(key: jax.Array, lo: int, hi: int) -> jax.Array:
  """Log-uniform integer in ``[lo, hi]`` (short and long episodes equally likely per octave)."""
  u = jax.random.uniform(key, (), jnp.float32, np.log(lo), np.log(hi + 1.0))
  return jnp.clip(jnp.floor(jnp.exp(u)), lo, hi).astype(jnp.int32)


def gather_task(pool: Task, index: jax.Array) -> Task:
  """The ``index``-th task of a slot's pool (leaves ``[M, ...]``)."""
  return jax.tree.map(lambda x: x[index], pool)


def particle_thetas(arch, thetas: Theta) -> Theta:
  """The population's thetas as ``arch`` reads them.

  An architecture without ``structured_theta`` gets every particle's theta
  materialised here, once per outer step, as with ``perturbation="dense"``.
  """
  if getattr(arch, "structured_theta", False) or not any(
      perturbed.is_structured(x) for x in jax.tree.leaves(thetas, is_leaf=perturbed.is_structured)):
    return thetas
  return perturbed.vmap_over(perturbed.materialise, 3)(thetas)


def _init_particles(arch, num_steps, thetas: Theta, task: Task, key: jax.Array):
  """Fresh params (shared by all particles of a slot) and each particle's opt state.

  ``num_steps`` is a Python int or a traced int32 scalar (the episode's horizon).
  """
  params = task.init(key)

  def one(theta_i):
    return arch.as_optax(theta_i, num_steps=num_steps).init(params)

  opt_state = perturbed.vmap_over(one, 2)(thetas)
  lead = perturbed.batch_shape(thetas, 2)
  params = jax.tree.map(lambda p: jnp.broadcast_to(p, lead + jnp.shape(p)), params)
  return params, opt_state


def init_slot(arch, num_steps: int | None, theta: Theta, pool: Task, key: jax.Array, *,
              num_pairs: int, horizon_range: tuple[int, int], stagger: bool) -> InnerState:
  """A slot at the start of its first episode (pool leaves ``[M, ...]``)."""
  k_ep, k_stagger = jax.random.split(key)
  thetas = jax.tree.map(lambda x: jnp.broadcast_to(x, (num_pairs, 2) + x.shape), theta)
  return new_episode(arch, num_steps, thetas, pool, k_ep, horizon_range,
                      first_offset_key=k_stagger if stagger else None)


def new_episode(arch, num_steps, thetas, pool, key, horizon_range, first_offset_key=None):
  """A slot's state at the start of an episode drawn from ``key`` (thetas ``[P, 2, ...]``).

  ``num_steps=None`` tells the learned optimizer the episode's own (traced)
  horizon, so its training-fraction features are right for every episode; an
  int tells it that fixed run length instead.
  """
  k_h, k_task, k_init = jax.random.split(key, 3)
  horizon = sample_horizon(k_h, *horizon_range)
  if first_offset_key is not None:
    # Stagger: cut the first episode short by a random amount so the slots of a
    # meta-batch do not reset in lockstep (which would make consecutive
    # meta-gradients correlated). It is a whole (shorter) episode, so the
    # optimizer sees its training fraction run from 0 to 1 as in any other.
    horizon = horizon - jax.random.randint(first_offset_key, (), 0, horizon, jnp.int32)
  num_tasks = jax.tree.leaves(pool)[0].shape[0] if jax.tree.leaves(pool) else 1
  task_index = jax.random.randint(k_task, (), 0, num_tasks, jnp.int32)
  params, opt_state = _init_particles(arch, horizon if num_steps is None else num_steps,
                                      thetas, gather_task(pool, task_index), k_init)
  step = jnp.zeros((), jnp.int32)
  return InnerState(params, opt_state, step, horizon, task_index, unwrap(key))


def _particle_step(arch, num_steps, task, theta_i, params, opt_state, keys, batch, meta_batch):
  k_loss, k_meta = keys
  opt = arch.as_optax(theta_i, num_steps=num_steps)
  loss, grads = jax.value_and_grad(task.loss)(params, k_loss, batch)
  updates, opt_state = opt.update(grads, opt_state, params, value=loss)
  params = optax.apply_updates(params, updates)
  # normalizer maps NaN/inf to a finite max, so a diverged particle gives a
  # large but finite fitness and the meta-gradient never becomes NaN.
  meta = task.normalizer(task.loss(params, k_meta, meta_batch))
  return params, opt_state, meta


def _select(pred, new, old):
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), new, old)


def slot_unroll(arch, num_steps: int | None, thetas: Theta, pool: Task, slot: InnerState, *,
                length: int, horizon_range: tuple[int, int], split: str, resets: bool = True):
  """Runs ``length`` inner steps of one slot's ``[P, 2]`` particles.

  Args:
    arch: the learned-optimizer architecture (static).
    num_steps: the run length the optimizer is told (static int), or None for
      each episode's own horizon (traced, so it differs per slot under vmap).
    thetas: perturbed meta-parameters, leaves ``[P, 2, ...]``.
    pool: the slot's candidate tasks, leaves ``[M, ...]``.
    slot: the slot's inner state (params/opt_state ``[P, 2, ...]``, rest scalars).
    length: steps to run (static).
    horizon_range: ``(lo, hi)`` for the horizons of new episodes.
    split: split of the meta-loss batches.
    resets: whether reaching the horizon starts a new episode.

  Returns:
    ``(slot, meta, live, reset)``: the new state; normalised meta-losses, shape
    ``(length, P, 2)``; ``live``, shape ``(length,)``, True where the step
    belongs to the episode that was running when the truncation began; and
    ``reset``, a bool scalar, True if any episode ended in this truncation.
  """

  def body(carry, _):
    slot, reset_seen = carry
    task = gather_task(pool, slot.task_index)
    ekey = wrap(slot.key)
    k_batch, k_meta_batch, k_loss, k_meta = jax.random.split(jax.random.fold_in(ekey, slot.step), 4)
    batch = task.sample_batch(k_batch, "train")
    meta_batch = task.sample_batch(k_meta_batch, split)
    told = slot.horizon if num_steps is None else num_steps
    step_fn = lambda th, p, s: _particle_step(arch, told, task, th, p, s,
                                              (k_loss, k_meta), batch, meta_batch)
    params, opt_state, meta = perturbed.vmap_over(step_fn, 2)(thetas, slot.params,
                                                              slot.opt_state)
    new = slot._replace(params=params, opt_state=opt_state, step=slot.step + 1)
    live = jnp.logical_not(reset_seen)
    if resets:
      done = new.step >= new.horizon
      fresh = new_episode(arch, num_steps, thetas, pool,
                           jax.random.fold_in(ekey, _NEXT_EPISODE), horizon_range)
      new = _select(done, fresh, new)
      reset_seen = jnp.logical_or(reset_seen, done)
    return (new, reset_seen), (meta, live)

  (slot, reset), (meta, live) = jax.lax.scan(body, (slot, jnp.zeros((), bool)), None,
                                             length=length)
  return slot, meta, live, reset


def final_meta_loss(arch, num_steps, pool: Task, slot: InnerState, *, num_batches: int,
                    split: str) -> jax.Array:
  """Normalised loss of each particle's params on fresh batches, shape ``(P, 2)``."""
  del arch, num_steps
  task = gather_task(pool, slot.task_index)
  keys = jax.random.split(jax.random.fold_in(wrap(slot.key), _FINAL_EVAL), num_batches)

  def one_batch(k):
    k_batch, k_loss = jax.random.split(k)
    batch = task.sample_batch(k_batch, split)
    f = lambda p: task.normalizer(task.loss(p, k_loss, batch))
    return jax.vmap(jax.vmap(f))(slot.params)

  return jnp.mean(jax.vmap(one_batch)(keys), axis=0)


def vmap_slots(fn, **static: Any):
  """vmaps a per-slot function over the leading ``B`` axis of every argument."""
  return jax.vmap(lambda *args: fn(*args, **static))
