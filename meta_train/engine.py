"""The outer loop's pieces: task groups, sharding and the jitted outer step.

**Task groups.** Tasks of different architectures cannot be vmapped together,
so a run draws a bounded set of ``num_groups`` *groups* up front, each a family
plus its static (shape-changing) spec fields, and visits them round-robin: outer
step ``s`` trains on group ``s % num_groups``. ``jax.jit`` caches one compiled
step per group structure, so after the first round no step compiles. Each
group keeps its own estimator state (PES: the persistent inner trainings); each slot of a
group holds a pool of ``M`` tasks that share the group's static fields and
differ in their continuous fields (data seed, init scale, ...), and draws from
that pool at every reset. The bounded set keeps compile time and memory
predictable; widen the distribution with more groups and larger pools.

**Devices and hosts.** One code path over a 1-D ``Mesh`` with axis ``"slots"``:
the slot axis of pools and inner states is sharded (``NamedSharding``), theta
and the optimizer state are replicated, and the estimators' mean over slots
becomes an all-reduce that XLA inserts. Each process builds only its own slots
(``process_index`` picks them), so every host trains different tasks.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import tasks
from meta_train import estimators
from meta_train.base import HParams, PESState, Task, Theta

AXIS = "slots"
EXTRA_GROUPS_SALT = 1_000_003  # folds the key of config.extra_groups away from the drawn groups


@dataclasses.dataclass(frozen=True)
class Group:
  """One task group: a family and the values of its static spec fields."""

  family: str
  spec: Any  # the spec that fixed the static fields (its continuous fields are resampled)

  @property
  def label(self) -> str:
    fam = tasks.get_family(self.family)
    return self.family + "/" + ",".join(f"{f}={getattr(self.spec, f)}" for f in fam.static_fields)


class OuterState(NamedTuple):
  """Everything an outer step changes; checkpointed as one pytree."""

  step: jax.Array  # int32 scalar
  theta: Theta
  opt_state: Any
  groups: tuple  # per group: its estimator's state (PESState for pes/tes, () for es)


# ----------------------------------------------------------------------------
# Mesh and placement
# ----------------------------------------------------------------------------


def make_mesh(devices=None) -> Mesh:
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (AXIS,))


def slot_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def put_global(tree: Any, sharding: NamedSharding) -> Any:
  """Places a host pytree (the *full* global value, same on every process)."""

  def one(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

  return jax.tree.map(one, tree)


def put_local_slots(tree: Any, mesh: Mesh) -> Any:
  """Places this process's slots (leading axis) as its part of a global array."""
  sharding = slot_sharding(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
                      tree)


def to_host(tree: Any) -> Any:
  """A full numpy copy of a (possibly multi-host sharded) pytree, on every process.

  With several processes this is a collective (all must call it) unless every
  leaf is replicated, as theta is: then each process copies its own replica.
  """
  if jax.process_count() == 1:
    return jax.tree.map(np.asarray, tree)
  if all(getattr(x, "is_fully_replicated", True) for x in jax.tree.leaves(tree)):
    return jax.tree.map(lambda x: np.asarray(
        x.addressable_data(0) if isinstance(x, jax.Array) else x), tree)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))


# ----------------------------------------------------------------------------
# Task groups and pools (host side; plain Python over the tasks registry)
# ----------------------------------------------------------------------------


def sample_groups(key: jax.Array, *, num_groups: int, distribution: str,
                  family: str = "", extra: Sequence[str] = ()) -> list[Group]:
  """Draws the run's groups from a key shared by all hosts (so all compile the same).

  ``num_groups`` from ``family`` (or else ``distribution``), then one group of
  each family in ``extra`` (``config.extra_groups``), from keys of their own,
  so adding extra groups leaves the drawn ones as they were.
  """
  groups = []
  for k in jax.random.split(key, num_groups):
    if family:
      groups.append(Group(family, tasks.get_family(family).sample(k)))
    else:
      groups.append(Group(*tasks.sample_task(k, distribution)))
  for i, name in enumerate(extra):
    k = jax.random.fold_in(jax.random.fold_in(key, EXTRA_GROUPS_SALT), i)
    groups.append(Group(name, tasks.get_family(name).sample(k)))
  return groups


def build_pool(group: Group, key: jax.Array, *, num_slots: int, pool_size: int,
               first_slot: int = 0, reparam: float = 0.0) -> Task:
  """Tasks for slots ``first_slot .. first_slot+num_slots``, leaves ``[num_slots, M, ...]``.

  Slot ``b``'s tasks come from ``fold_in(key, b)``, whatever process builds it,
  so a run's tasks do not depend on how slots are spread over hosts.

  ``reparam > 0`` wraps every task in ``tasks.ReparameterizedTask`` with
  per-tensor factors in ``[e^-reparam, e^reparam]`` (VeLO and Celo's task
  augmentation): the optimizer cannot rely on the parameter scales that default
  inits produce. Every task of a pool gets the wrapper, so the pool still stacks.
  """
  built = []
  for b in range(first_slot, first_slot + num_slots):
    for k in jax.random.split(jax.random.fold_in(key, b), pool_size):
      spec = tasks.resample_dynamic(k, group.family, group.spec)
      task = tasks.get_family(group.family).build(spec)
      if reparam > 0:
        task = tasks.augment(task, jax.random.fold_in(k, 1), reparam=True, max_log_scale=reparam)
      built.append(task)
  stacked = tasks.stack_tasks(built)
  return jax.tree.map(lambda x: x.reshape((num_slots, pool_size) + x.shape[1:]), stacked)


# ----------------------------------------------------------------------------
# Outer optimizer and step
# ----------------------------------------------------------------------------


class AnchorState(NamedTuple):
  """theta at step 0: the centre :func:`decay_to_anchor` pulls toward."""
  anchor: Theta


def decay_to_anchor(rate: float) -> optax.GradientTransformation:
  """Adds ``rate * (theta - theta_0)`` to the update direction (before the LR).

  ``optax.add_decayed_weights`` with the init as the centre instead of zero. Placed
  after Adam's scaling, as in AdamW, the pull does not depend on the meta-gradient's
  scale: a coordinate that Adam moves by a unit direction settles ~``1/rate`` from
  its init, and one that ES noise alone moves returns to it with time constant
  ``1/(rate * lr)`` outer updates. The anchor is taken at ``init`` (step 0, or the
  warm start) and checkpointed with the optimizer state, so a resumed run keeps it.
  """

  def init(params):
    return AnchorState(jax.tree.map(jnp.array, params))

  def update(updates, state, params=None):
    if params is None:
      raise ValueError("decay_to_anchor needs params (pass theta to tx.update).")
    updates = jax.tree.map(lambda u, p, a: u + rate * (p - a), updates, params, state.anchor)
    return updates, state

  return optax.GradientTransformation(init, update)


def _prefixes(path) -> list[str]:
  """The ``/``-joined names covering a leaf at ``path``, longest first (``mlp/w1``, ``mlp``)."""
  keys = [str(getattr(k, "key", getattr(k, "idx", k))) for k in path]
  return ["/".join(keys[:i]) for i in range(len(keys), 0, -1)]


def entry_names(theta: Any) -> list[str]:
  """Every entry of theta a multiplier may name: top-level keys and ``/``-joined paths
  to nested ones (``"schedule_w"``, ``"mlp"``, ``"mlp/w1"``)."""
  return sorted({name for path, _ in jax.tree_util.tree_flatten_with_path(theta)[0]
                 for name in _prefixes(path)})


def scale_by_key(mults: Mapping[str, float]) -> optax.GradientTransformation:
  """Multiplies the updates of the entries of theta ``mults`` names (stateless).

  A name is a top-level key or a ``/``-joined path to a nested one (``"mlp/w1"``, the
  MLP's last layer); a leaf takes the multiplier of the longest name that covers it.
  After Adam, whose steps are ~LR per coordinate whatever the gradient's size, a
  multiplier is that entry's own outer LR: at 5e-5 over 1,500 steps a coordinate moves
  at most 0.075, so a zero-initialised global controller (``mlp``'s ``schedule_w``,
  ``log_lr``) cannot change the step by more than a few percent (docs/pretrained.md,
  eighth round).
  """

  def mult_of(path):
    return next((mults[name] for name in _prefixes(path) if name in mults), 1.0)

  def update_fn(updates, state, params=None):
    del params
    return jax.tree_util.tree_map_with_path(lambda path, u: u * mult_of(path), updates), state

  return optax.GradientTransformation(lambda _: optax.EmptyState(), update_fn)


def outer_optimizer(*, learning_rate: float, clip_norm: float, accumulate: int = 1,
                    anchor_decay: float = 0.0,
                    lr_mults: Mapping[str, float] | None = None) -> optax.GradientTransformation:
  """Adam on theta with global-norm clipping of the meta-gradient (ES estimates are
  heavy-tailed), with ``anchor_decay > 0`` a decoupled pull toward theta at step 0
  (:func:`decay_to_anchor`), and with ``lr_mults`` a larger or smaller outer LR for the
  top-level entries of theta it names (:func:`scale_by_key`)."""
  if anchor_decay > 0:
    tx = optax.chain(optax.clip_by_global_norm(clip_norm), optax.scale_by_adam(),
                     decay_to_anchor(anchor_decay), optax.scale_by_learning_rate(learning_rate))
  else:
    tx = optax.chain(optax.clip_by_global_norm(clip_norm), optax.adam(learning_rate))
  if lr_mults:  # only then: a run without multipliers keeps its optimizer state's structure
    tx = optax.chain(tx, scale_by_key(dict(lr_mults)))
  if accumulate > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=accumulate)
  return tx


def outer_step(arch, estimator: str, hp: HParams, tx: optax.GradientTransformation,
               theta: Theta, opt_state: Any, pool: Task, group_state: Any,
               key_data: jax.Array):
  """One meta-gradient estimate on one group, then one optax update of theta.

  ``estimator`` is a registered name (``meta_train.estimators``) and ``hp`` its
  hyperparameters. Pure; jit it with ``jit_outer_step``. Returns
  ``(theta, opt_state, group_state, metrics)``: the estimator's metrics plus
  ``grad_norm``.
  """
  est = estimators.get_estimator(estimator)
  key = jax.random.wrap_key_data(key_data)
  grad, group_state, metrics = estimators.estimate(est, arch, hp, theta, pool, group_state, key)
  # A non-finite estimate (an inner task that overflowed in every particle) must not
  # reach Adam's moments, where it would stay for good: its entries count as zero.
  finite = jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grad)]).all()
  grad = jax.tree.map(lambda g: jnp.where(jnp.isfinite(g), g, 0.0), grad)
  # optax's Adam bias correction computes `float ** int32_count`, which strict
  # dtype promotion (our tests' setting) rejects; the result is float32 either way.
  with jax.numpy_dtype_promotion("standard"):
    updates, opt_state = tx.update(grad, opt_state, theta)
  theta = optax.apply_updates(theta, updates)
  metrics = {**metrics, "grad_norm": optax.tree.norm(grad),
             "nonfinite_grad": 1.0 - finite.astype(jnp.float32)}
  return theta, opt_state, group_state, metrics


def jit_outer_step(arch, estimator: str, hp: HParams, tx, mesh: Mesh):
  """``outer_step`` jitted over ``mesh``: slots sharded, theta replicated, state donated."""
  rep, slots = replicated(mesh), slot_sharding(mesh)
  fn = lambda *args: outer_step(arch, estimator, hp, tx, *args)
  # theta, the outer optimizer state and the group's estimator state are donated: each
  # step replaces them, so XLA updates them in place instead of keeping two copies.
  return jax.jit(fn, in_shardings=(rep, rep, slots, slots, rep),
                 out_shardings=(rep, rep, slots, rep), donate_argnums=(0, 1, 3))


def jit_init(arch, estimator: str, hp: HParams, mesh: Mesh):
  """The estimator's ``init(key_data, theta, pool)`` jitted over ``mesh`` (state slot-sharded)."""
  rep, slots = replicated(mesh), slot_sharding(mesh)
  est = estimators.get_estimator(estimator)
  fn = lambda key_data, theta, pool: est.init(jax.random.wrap_key_data(key_data), arch, hp,
                                              theta, pool)
  return jax.jit(fn, in_shardings=(rep, rep, slots), out_shardings=slots)


__all__ = ["Group", "OuterState", "PESState", "make_mesh", "sample_groups", "build_pool",
           "outer_optimizer", "scale_by_key", "outer_step", "jit_outer_step", "jit_init", "put_global",
           "put_local_slots", "to_host"]
