"""The meta-training job as small library stages, and ``run``, which chains them.

``run(config, workdir)`` is what ``python -m meta_train`` calls; it reads top to
bottom: validate, :func:`restore_or_init`, :func:`train_steps` (each outer step
is one jitted :func:`engine.outer_step`, with :func:`evaluate_and_export` every
``eval_every`` steps), then :func:`finish`. Outer step ``s`` trains group
``s % num_groups`` with key ``fold_in(run_key, s)``, so the trajectory of theta
is a function of the config alone: a run resumed from any checkpoint ends with
the same theta, bit for bit on CPU, as one never stopped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import time
from typing import Any, Callable

import jax
import numpy as np
from tqdm import tqdm

import learned_opt
import tasks
from meta_train import checkpoint, engine, estimators, evaluation, lock, logs
from meta_train import config as config_lib

# Kept importable from here (older code and docs name them train.*).
Logger, read_metrics, plot_meta_loss = logs.Logger, logs.read_metrics, logs.plot_meta_loss


class WorkdirError(RuntimeError):
  """The workdir holds a run this config cannot continue; names the fix."""


class DivergedError(RuntimeError):
  """Theta itself became non-finite; nothing non-finite is exported. Names the fix."""


def _finite(theta) -> bool:
  return all(bool(np.all(np.isfinite(x))) for x in jax.tree.leaves(theta))


# ----------------------------------------------------------------------------
# Setup
# ----------------------------------------------------------------------------


def maybe_initialize_distributed(c) -> None:
  """``jax.distributed.initialize`` from the config, else from the environment."""
  d = c.distributed
  env = os.environ
  addr = d.coordinator_address or env.get("LOPT_COORDINATOR_ADDRESS", "")
  if not addr:
    return  # single process (on SLURM/TPU, see docs/meta_train.md)
  nproc = d.num_processes or int(env.get("LOPT_NUM_PROCESSES", "1"))
  pid = d.process_id if d.process_id >= 0 else int(env.get("LOPT_PROCESS_ID", "0"))
  # A peer that dies without a SIGTERM (SIGKILL, a lost host) is noticed by the
  # coordination service's heartbeat: the others then exit with an error naming
  # the missing task instead of waiting at the next collective for ever.
  jax.distributed.initialize(coordinator_address=addr, num_processes=nproc, process_id=pid,
                             initialization_timeout=120,
                             heartbeat_timeout_seconds=d.heartbeat_timeout_s)


def check_workdir_path(workdir: Any) -> None:
  """Refuses a workdir the job could not write to, before anything compiles."""
  if not isinstance(workdir, str) or not workdir.strip():
    raise WorkdirError(f"--workdir must be a directory path, got {workdir!r}; pass e.g. "
                       "--workdir runs/NAME.")
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f"--workdir {workdir!r} is a file, not a directory; pass a directory "
                       "path (it is created if missing).")
  probe = os.path.abspath(workdir)
  while not os.path.exists(probe):  # the nearest existing ancestor is where it is created
    probe = os.path.dirname(probe)
  if not os.access(probe, os.W_OK | os.X_OK):
    raise WorkdirError(f"--workdir {workdir!r} cannot be written ({probe!r} is read-only for "
                       "this user); pass a writable directory or fix its permissions.")


def _read_saved_config(path: str) -> dict:
  try:
    with open(path) as f:
      saved = json.load(f)
  except (OSError, ValueError) as e:
    raise WorkdirError(
        f"{path} cannot be read ({type(e).__name__}: {e}); the run's config is damaged. "
        "Restore it from a copy (it is the config the run was started with, as JSON), or use "
        "a new --workdir.") from None
  if not isinstance(saved, dict):
    raise WorkdirError(f"{path} holds a {type(saved).__name__}, not a config; restore it from a "
                       "copy or use a new --workdir.")
  return saved


def check_workdir(workdir: str, c) -> None:
  """Writes config.json on a fresh workdir; refuses an incompatible existing one."""
  path = os.path.join(workdir, "config.json")
  current = json.loads(c.to_json_best_effort())
  if os.path.exists(path):
    # An old layout (flat estimator fields) is upgraded; fields added since the
    # run started take their defaults (which keep old behaviour).
    saved = config_lib.with_defaults(config_lib.upgrade(_read_saved_config(path)))
    bad = config_lib.differences(saved, current)
    if bad:
      diffs = ", ".join(f"{k}: {old!r} -> {new!r}" for k, old, new in bad)
      raise WorkdirError(
          f"workdir {workdir!r} holds a run with a different config ({diffs}). It is left "
          "untouched: use a new --workdir, or the config it was started with.")
    return
  ckpts = os.path.join(workdir, "checkpoints")
  if os.path.isdir(ckpts) and any(n.isdigit() for n in os.listdir(ckpts)):
    # Without the config they were made with, nothing says these checkpoints
    # belong to this config; resuming them could silently mix two runs.
    raise WorkdirError(
        f"workdir {workdir!r} has checkpoints but no config.json, so it cannot tell whether this "
        "config may continue them. Put back the config.json the run was started with, or use a "
        "new --workdir (or move the checkpoints directory aside to start over).")
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      json.dump(current, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


class _Stop:
  """Set by SIGTERM: the loop checkpoints and exits cleanly at the next step boundary."""

  def __init__(self):
    self.requested = False

  def __call__(self, signum, frame):
    del signum, frame
    self.requested = True


def agreed_stop(requested: bool) -> bool:
  """True on every process once any process was asked to stop.

  A SIGTERM reaches one host of a multi-host run; if only that host left the
  loop, the others would wait at the next collective for ever. Every outer
  step all processes share their flags (one tiny all-gather), so all leave at
  the same step and write one checkpoint together.
  """
  if jax.process_count() == 1:
    return requested
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return bool(np.any(multihost_utils.process_allgather(np.int32(requested))))


def hold_lock(workdir: str) -> lock.WorkdirLock | None:
  """Process 0 takes the workdir's lock; every process raises if it is held elsewhere."""
  held, error = None, None
  if jax.process_index() == 0:
    try:
      os.makedirs(workdir, exist_ok=True)
      held = lock.WorkdirLock(workdir).acquire()
    except lock.LockError as e:
      error = e
    except OSError as e:
      error = lock.LockError(f"cannot create the workdir's lock file in {workdir!r} ({e}); pass "
                             "a writable --workdir.")
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    if int(multihost_utils.broadcast_one_to_all(np.int32(error is not None))) and error is None:
      error = lock.LockError(f"workdir {workdir!r} is in use by another run; process 0's "
                             "output names it.")
  if error is not None:
    raise WorkdirError(str(error)) from None
  return held


# ----------------------------------------------------------------------------
# The job's state and its stages
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class Job:
  """Everything one meta-training process holds; the stages below read and update it."""

  c: Any
  workdir: str
  arch: Any
  hp: Any
  groups: list[engine.Group]
  pools: list[Any]
  state: engine.OuterState
  step_fn: Callable
  mngr: Any  # orbax CheckpointManager (None on processes other than 0)
  validator: evaluation.Validator | None
  best: tuple[float, int]  # (validation score, step) of export/best; (inf, -1) if none
  saved_step: int  # the newest checkpoint's step (-1: none)
  last: dict = dataclasses.field(default_factory=dict)  # the last outer step's metrics
  run_key: jax.Array = None  # step s uses fold_in(run_key, s); set in __post_init__
  inner_per_step: int = 0  # inner steps of all slots per outer step (for throughput)

  def __post_init__(self):
    # Derived once from the config, not in every outer step of the loop.
    self.run_key = jax.random.fold_in(jax.random.key(self.c.seed), 4)
    self.inner_per_step = (self.c.num_slots
                           * estimators.get_estimator(self.c.estimator).inner_steps(self.hp))
  is_main: bool = dataclasses.field(default_factory=lambda: jax.process_index() == 0)

  @property
  def step(self) -> int:
    return int(self.state.step)

  def say(self, msg: str) -> None:
    if self.is_main:
      print(msg)


def fresh_state(c, arch, hp, mesh, theta0, pools, tx) -> engine.OuterState:
  """Step 0: theta (``theta0`` or ``arch.init_meta``), Adam's state, each group's estimator state."""
  root = jax.random.key(c.seed)
  k_theta, k_init = jax.random.fold_in(root, 0), jax.random.fold_in(root, 3)
  rep = engine.replicated(mesh)
  theta0 = arch.init_meta(k_theta) if theta0 is None else theta0
  theta = engine.put_global(jax.tree.map(np.asarray, theta0), rep)
  opt_state = engine.put_global(jax.tree.map(np.asarray, tx.init(theta)), rep)
  if estimators.get_estimator(c.estimator).has_state:
    init = engine.jit_init(arch, c.estimator, hp, mesh)
    # One group at a time: with many groups dispatched at once, XLA:CPU on 2
    # cores has been seen to deadlock (every thread idle on a futex, the
    # first result never ready); init is cheap next to compiling it anyway.
    states = tuple(jax.block_until_ready(
        init(jax.random.key_data(jax.random.fold_in(k_init, i)), theta, p))
                   for i, p in enumerate(pools))
  else:
    states = tuple(() for _ in pools)
  return engine.OuterState(np.zeros((), np.int32), theta, opt_state, states)


def build_pools(c, mesh) -> tuple[list[engine.Group], list[Any]]:
  """The run's task groups and this process's slots of each group's pool."""
  root = jax.random.key(c.seed)
  k_groups, k_pools = jax.random.fold_in(root, 1), jax.random.fold_in(root, 2)
  groups = engine.sample_groups(k_groups, num_groups=c.num_groups,
                                distribution=c.task_distribution, family=c.task_family,
                                extra=config_lib.extra_group_families(c.extra_groups))
  n_local = c.num_slots // jax.process_count()
  pools = [engine.put_local_slots(
      engine.build_pool(g, jax.random.fold_in(k_pools, i), num_slots=n_local,
                        pool_size=c.pool_size, first_slot=jax.process_index() * n_local,
                        reparam=c.augment_reparam), mesh)
           for i, g in enumerate(groups)]
  return groups, pools


def place(host_state: engine.OuterState, mesh) -> engine.OuterState:
  rep, slots = engine.replicated(mesh), engine.slot_sharding(mesh)
  return engine.OuterState(host_state.step, engine.put_global(host_state.theta, rep),
                           engine.put_global(host_state.opt_state, rep),
                           engine.put_global(host_state.groups, slots))


def make_validator(c, index: int, num_tasks: int, num_steps: int,
                   suites: str = "") -> evaluation.Validator:
  """Held-out tasks from key ``fold_in(key(seed), index)``, disjoint from the training keys,
  then the tasks of the committed ``suites`` (``config.eval_suites``). ``seed`` is
  ``config.eval_seed`` where it is set (>= 0), else the training seed."""
  key = jax.random.fold_in(jax.random.key(config_lib.validation_seed(c)), index)
  drawn = evaluation.held_out_tasks(key, num_tasks, distribution=c.task_distribution,
                                    family=c.task_family)
  built = ([tasks.build_task(f, s) for f, s in evaluation.resolve_tasks(suites)[0]]
           if suites.strip() else [])
  return evaluation.Validator(drawn + [(t.name, t) for t in built],
                              evaluation.validation.setting(num_steps))


def restore_or_init(c, workdir: str, arch, hp, theta0) -> Job:
  """Builds the run's tasks and state, from the newest checkpoint if the workdir has one."""
  mesh = engine.make_mesh()
  groups, pools = build_pools(c, mesh)
  tx = engine.outer_optimizer(learning_rate=c.learning_rate, clip_norm=c.clip_norm,
                              accumulate=c.accumulate, anchor_decay=c.anchor_decay,
                              lr_mults=config_lib.outer_lr_mults(c.outer_lr_mults))
  state = fresh_state(c, arch, hp, mesh, theta0, pools, tx)
  mngr = checkpoint.manager(workdir, c.keep_checkpoints)
  try:
    restored = checkpoint.restore_latest(
        mngr, engine.to_host(state), say=print if jax.process_index() == 0 else lambda _: None)
  except checkpoint.CheckpointError as e:
    if mngr is not None:
      mngr.close()
    raise WorkdirError(str(e)) from None
  if restored is not None:
    state = place(restored[1], mesh)
  step0 = int(state.step)
  # export/best's score, recovered from the metrics of the steps this run keeps.
  best = min(((r[c.eval_select], r["step"]) for r in logs.read_metrics(
      os.path.join(workdir, "metrics.jsonl")) if c.eval_select in r and r["step"] <= step0),
             default=(math.inf, -1))
  return Job(c, workdir, arch, hp, groups, pools, state,
             engine.jit_outer_step(arch, c.estimator, hp, tx, mesh), mngr,
             make_validator(c, 5, c.eval_num_tasks, c.eval_num_steps, c.eval_suites)
             if c.eval_every else None,
             best, step0 if restored is not None else -1)


def outer_step(job: Job, step: int) -> dict[str, float]:
  """One jitted outer step on group ``step % num_groups``; updates ``job.state``."""
  g = step % len(job.groups)
  key_data = jax.random.key_data(jax.random.fold_in(job.run_key, step))
  s = job.state
  t0 = time.perf_counter()
  theta, opt_state, group_state, metrics = job.step_fn(s.theta, s.opt_state, job.pools[g],
                                                       s.groups[g], key_data)
  metrics = {k: float(v) for k, v in metrics.items()}  # waits for the step
  dt = time.perf_counter() - t0
  groups = s.groups[:g] + (group_state,) + s.groups[g + 1:]
  job.state = engine.OuterState(np.asarray(step + 1, np.int32), theta, opt_state, groups)
  return {**metrics, "inner_steps_per_s": job.inner_per_step / dt, "s_per_outer_step": dt}


def evaluate_and_export(job: Job) -> dict[str, float]:
  """Validation metrics of the current theta; a new best is exported to ``export/best``.

  On process 0 only, from its replica of theta: only it logs and exports.
  """
  theta = engine.to_host(job.state.theta)
  metrics = job.validator.score(job.arch, theta)
  # A non-finite score (no comparable task) never becomes export/best, nor does a
  # non-finite theta (whose diverged runs score finitely, at the 10x cap).
  score = metrics[job.c.eval_select]
  if math.isfinite(score) and score < job.best[0] and _finite(theta):
    job.best = (score, job.step)
    learned_opt.save(os.path.join(job.workdir, "export", "best"), job.arch, theta)
  return metrics


def save_checkpoint(job: Job) -> None:
  """Checkpoints ``job.state`` (every process joins the gather; process 0 writes)."""
  host = engine.to_host(job.state)
  if job.is_main:
    checkpoint.save(job.mngr, job.step, host)
  job.saved_step = job.step


def train_steps(job: Job, stop: _Stop) -> None:
  """Outer steps from ``job.step`` to ``outer_steps`` (or until SIGTERM), with validation,
  logging and checkpoints."""
  c = job.c
  logger = logs.Logger(job.workdir, job.step)
  bar = tqdm(total=c.outer_steps, initial=job.step, disable=not (c.progress and job.is_main),
             desc="meta-train", dynamic_ncols=True)
  try:
    for step in range(job.step, c.outer_steps):
      if agreed_stop(stop.requested):
        stop.requested = True  # on the processes that learnt it from another one, too
        break
      metrics = outer_step(job, step)
      if job.validator is not None and (step + 1) % c.eval_every == 0 and job.is_main:
        metrics.update(evaluate_and_export(job))
      if (step + 1) % c.log_every == 0 or evaluation.SELECT in metrics:
        logger.write(step + 1, metrics)
      job.last = metrics
      bar.set_postfix(meta_loss=f"{metrics['meta_loss']:.4f}",
                      inner_steps_s=f"{metrics['inner_steps_per_s']:.0f}")
      bar.update(1)
      if (step + 1) % c.checkpoint_every == 0:
        save_checkpoint(job)
  finally:
    bar.close()
    logger.close()
  if job.saved_step != job.step:  # the last state, unless that checkpoint exists already
    save_checkpoint(job)


def finish(job: Job) -> dict[str, Any]:
  """Exports ``export/final``, draws the plot and (if configured) the final table."""
  theta = engine.to_host(job.state.theta)
  result = {"stopped": False, "step": job.step, "last": job.last, "theta": theta}
  if not _finite(theta):
    # The engine zeroes non-finite meta-gradients, so this needs a non-finite
    # outer update (e.g. an overflowing Adam state): say so rather than export it.
    best = (f"export/best (outer step {job.best[1]}) is the last finite theta that validated "
            "best; " if job.best[1] > 0 else "")
    raise DivergedError(
        f"theta is not finite after outer step {job.step}; export/final was not written. {best}"
        "Lower --config.learning_rate or --config.clip_norm, and start again in a new workdir "
        "(the checkpoints hold the run up to here).")
  if job.is_main:
    final = os.path.join(job.workdir, "export", "final")
    learned_opt.save(final, job.arch, theta)
    result["plot"] = logs.plot_meta_loss(job.workdir)
    best = f" (best on validation: export/best, step {job.best[1]})" if job.best[1] > 0 else ""
    job.say(f"Done: {job.step} outer steps; theta exported to {final}{best}; "
            f"plot {result['plot']}.")
  if job.c.final_table and job.is_main:
    result["table"] = final_table(job)
  return result


def final_table(job: Job) -> list[dict]:
  """The main job's table: the optimizer a user would take (export/best when validation
  picked one, on tasks disjoint from the table's; else final) vs Adam 1e-3 vs tuned Adam."""
  c, which, theta = job.c, "export/final", engine.to_host(job.state.theta)
  if job.best[1] > 0:
    _, theta = learned_opt.load_meta(os.path.join(job.workdir, "export", "best"))
    which = f"export/best (step {job.best[1]})"
  rows = evaluation.final_table(job.arch, theta,
                                make_validator(c, 6, c.final_table_tasks, c.final_table_steps))
  job.say(f"meta-trained = {which}\n" + evaluation.format_table(rows, c.final_table_steps))
  with open(os.path.join(job.workdir, "final_table.json"), "w") as f:
    json.dump(rows, f, indent=1)
  return rows


# ----------------------------------------------------------------------------
# The driver
# ----------------------------------------------------------------------------


def run(c, workdir: str) -> dict[str, Any]:
  """Meta-trains per config ``c`` in ``workdir``; resumes if it holds a checkpoint.

  Returns ``{"stopped", "step"}`` plus, for a finished run, ``theta``, ``plot``
  and (with ``final_table``) ``table``.
  """
  # Validate before anything compiles; the device check waits for the
  # distributed runtime, which must start before JAX's backend does.
  arch, hp = config_lib.validate(c, devices=False, check_init=False)
  check_workdir_path(workdir)
  theta0 = config_lib.init_theta(c, arch) if c.init_from else None  # read once, checked
  maybe_initialize_distributed(c)
  config_lib.check_devices(c)
  held = hold_lock(workdir)  # before anything in the workdir is read or written
  try:
    return _run_locked(c, workdir, arch, hp, theta0)
  finally:
    if held is not None:
      held.release()


def _run_locked(c, workdir: str, arch, hp, theta0) -> dict[str, Any]:
  check_workdir(workdir, c)
  job = restore_or_init(c, workdir, arch, hp, theta0)
  if job.saved_step >= 0:
    job.say(f"Resuming from checkpoint at outer step {job.step} in {workdir}.")
  else:
    job.say(f"Starting a new run in {workdir} ({len(job.groups)} task group(s): "
            f"{', '.join(g.label for g in job.groups)}).")
  stop = _Stop()
  old_handler = signal.signal(signal.SIGTERM, stop)
  try:
    train_steps(job, stop)
  finally:
    signal.signal(signal.SIGTERM, old_handler)
  if stop.requested:
    job.say(f"SIGTERM: saved a checkpoint at outer step {job.step} in {workdir}; exiting "
            "cleanly. Run the same command again to resume.")
    result = {"stopped": True, "step": job.step}
  else:
    result = finish(job)
  if job.mngr is not None:
    job.mngr.close()
  return result
