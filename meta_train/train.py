"""The meta-training job: resumable outer loop, logging, evaluation and export.

``run(config, workdir)`` is what ``python -m meta_train`` calls. Outer step
``s`` trains group ``s % num_groups`` with key ``fold_in(run_key, s)``, so the
trajectory of theta is a function of the config alone: a run resumed from any
checkpoint ends with the same theta, bit for bit on CPU, as one never stopped.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from typing import Any

import jax
import numpy as np

import learned_opt
from meta_train import checkpoint, engine, estimators, evaluation
from meta_train import config as config_lib


class WorkdirError(RuntimeError):
  """The workdir holds a run this config cannot continue; names the fix."""


# ----------------------------------------------------------------------------
# Setup helpers
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
  jax.distributed.initialize(coordinator_address=addr, num_processes=nproc, process_id=pid,
                             initialization_timeout=120)


def check_workdir(workdir: str, c) -> None:
  """Writes config.json on a fresh workdir; refuses an incompatible existing one."""
  path = os.path.join(workdir, "config.json")
  current = json.loads(c.to_json_best_effort())
  if os.path.exists(path):
    with open(path) as f:
      # An old layout (flat estimator fields) is upgraded; fields added since the
      # run started take their defaults (which keep old behaviour).
      saved = config_lib.with_defaults(config_lib.upgrade(json.load(f)))
    bad = config_lib.differences(saved, current)
    if bad:
      diffs = ", ".join(f"{k}: {old!r} -> {new!r}" for k, old, new in bad)
      raise WorkdirError(
          f"workdir {workdir!r} holds a run with a different config ({diffs}). It is left "
          "untouched: use a new --workdir, or the config it was started with.")
    return
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


class Logger:
  """metrics.jsonl + TensorBoard (tensorboardX, no TensorFlow); process 0 only."""

  def __init__(self, workdir: str, start_step: int):
    self.active = jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    if not self.active:
      return
    # Drop lines past the checkpoint we resume from: they will be recomputed.
    rows = read_metrics(self.path)
    with open(self.path, "w") as f:
      for r in rows:
        if r["step"] <= start_step:
          f.write(json.dumps(r) + "\n")
    from tensorboardX import SummaryWriter
    self.tb = SummaryWriter(os.path.join(workdir, "tb"))

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    if not self.active:
      return
    row = {"step": step, **{k: float(v) for k, v in metrics.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    for k, v in row.items():
      if k != "step" and math.isfinite(v):
        self.tb.add_scalar(k, v, step)

  def close(self):
    if self.active:
      self.tb.close()


def read_metrics(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  rows = []
  with open(path) as f:
    for line in f:
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:
        break  # a line torn by a kill; everything after it is recomputed
  return rows


def plot_meta_loss(workdir: str) -> str:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  rows = read_metrics(os.path.join(workdir, "metrics.jsonl"))
  fig, ax = plt.subplots(figsize=(6, 4))
  ax.plot([r["step"] for r in rows if "meta_loss" in r],
          [r["meta_loss"] for r in rows if "meta_loss" in r], label="meta-loss (train)")
  ev = [r for r in rows if "val_learned" in r]
  if ev:
    ax.plot([r["step"] for r in ev], [r["val_learned"] for r in ev], "o-", label="held-out: learned")
    ax.plot([r["step"] for r in ev], [r["val_adam_tuned"] for r in ev], "s--",
            label="held-out: tuned Adam")
  ax.set_xlabel("outer step")
  ax.set_ylabel("normalised (final training) loss")
  ax.legend()
  path = os.path.join(workdir, "meta_loss.png")
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


# ----------------------------------------------------------------------------
# The job
# ----------------------------------------------------------------------------


def build(c, arch, hp, mesh):
  """Groups, pools (this process's slots) and the fresh outer state."""
  root = jax.random.key(c.seed)
  k_theta, k_groups, k_pools, k_pes = (jax.random.fold_in(root, i) for i in range(4))
  groups = engine.sample_groups(k_groups, num_groups=c.num_groups,
                                distribution=c.task_distribution, family=c.task_family)
  n_local = c.num_slots // jax.process_count()
  pools = [engine.put_local_slots(
      engine.build_pool(g, jax.random.fold_in(k_pools, i), num_slots=n_local,
                        pool_size=c.pool_size, first_slot=jax.process_index() * n_local,
                        reparam=c.augment_reparam), mesh)
           for i, g in enumerate(groups)]
  tx = engine.outer_optimizer(learning_rate=c.learning_rate, clip_norm=c.clip_norm,
                              accumulate=c.accumulate)
  rep = engine.replicated(mesh)
  theta0 = config_lib.init_theta(c, arch) if c.init_from else arch.init_meta(k_theta)
  theta = engine.put_global(jax.tree.map(np.asarray, theta0), rep)
  opt_state = engine.put_global(jax.tree.map(np.asarray, tx.init(theta)), rep)
  if estimators.get_estimator(c.estimator).has_state:
    init = engine.jit_init(arch, c.estimator, hp, mesh)
    # One group at a time: with many groups dispatched at once, XLA:CPU on 2
    # cores has been seen to deadlock (every thread idle on a futex, the
    # first result never ready); init is cheap next to compiling it anyway.
    states = tuple(jax.block_until_ready(
        init(jax.random.key_data(jax.random.fold_in(k_pes, i)), theta, p))
                   for i, p in enumerate(pools))
  else:
    states = tuple(() for _ in groups)
  state = engine.OuterState(np.zeros((), np.int32), theta, opt_state, states)
  return groups, pools, tx, state


def place(host_state: engine.OuterState, mesh) -> engine.OuterState:
  rep, slots = engine.replicated(mesh), engine.slot_sharding(mesh)
  return engine.OuterState(host_state.step, engine.put_global(host_state.theta, rep),
                           engine.put_global(host_state.opt_state, rep),
                           engine.put_global(host_state.groups, slots))


def run(c, workdir: str) -> dict[str, Any]:
  """Meta-trains per config ``c`` in ``workdir``; resumes if it holds a checkpoint."""
  # Validate before anything compiles; the device check waits for the
  # distributed runtime, which must start before JAX's backend does.
  arch, hp = config_lib.validate(c, devices=False)
  maybe_initialize_distributed(c)
  config_lib.check_devices(c)
  check_workdir(workdir, c)
  is_main = jax.process_index() == 0
  say = print if is_main else (lambda *a, **k: None)
  mesh = engine.make_mesh()

  # ---- state: fresh, or restored from the latest checkpoint ----
  groups, pools, tx, state = build(c, arch, hp, mesh)
  mngr = checkpoint.manager(workdir, c.keep_checkpoints)
  restored = checkpoint.restore_latest(mngr, engine.to_host(state))
  if restored is not None:
    step0, host = restored
    state = place(host, mesh)
    say(f"Resuming from checkpoint at outer step {step0} in {workdir}.")
  else:
    step0 = 0
    say(f"Starting a new run in {workdir} ({len(groups)} task group(s): "
        f"{', '.join(g.label for g in groups)}).")
  step_fn = engine.jit_outer_step(arch, c.estimator, hp, tx, mesh)
  run_key = jax.random.fold_in(jax.random.key(c.seed), 4)
  eval_key = jax.random.fold_in(jax.random.key(c.seed), 5)
  validator = (evaluation.Validator(
      evaluation.held_out_tasks(eval_key, c.eval_num_tasks, distribution=c.task_distribution,
                                family=c.task_family),
      evaluation.validation.setting(c.eval_num_steps)) if c.eval_every else None)
  logger = Logger(workdir, step0)
  stop = _Stop()
  old_handler = signal.signal(signal.SIGTERM, stop)
  inner_per_step = c.num_slots * estimators.get_estimator(c.estimator).inner_steps(hp)

  last_saved = [step0 if restored is not None else -1]

  def save(step):
    # Every process joins the gather (a collective); only process 0 writes.
    host = engine.to_host(state._replace(step=np.asarray(step, np.int32)))
    if is_main:
      checkpoint.save(mngr, step, host)
    last_saved[0] = step

  # ---- the loop ----
  from tqdm import tqdm
  bar = tqdm(total=c.outer_steps, initial=step0, disable=not (c.progress and is_main),
             desc="meta-train", dynamic_ncols=True)
  # (held-out score, step) of export/best; a resumed run recovers it from its metrics.
  best = min(((r[evaluation.SELECT], r["step"]) for r in read_metrics(
      os.path.join(workdir, "metrics.jsonl")) if evaluation.SELECT in r and r["step"] <= step0),
             default=(math.inf, -1))
  theta, opt_state, gstates = state.theta, state.opt_state, list(state.groups)
  last = {}
  step = step0
  try:
    for step in range(step0, c.outer_steps):
      if stop.requested:
        break
      g = step % len(groups)
      t0 = time.perf_counter()
      key_data = jax.random.key_data(jax.random.fold_in(run_key, step))
      theta, opt_state, gstates[g], metrics = step_fn(theta, opt_state, pools[g], gstates[g],
                                                       key_data)
      metrics = {k: float(v) for k, v in metrics.items()}
      dt = time.perf_counter() - t0
      metrics["inner_steps_per_s"] = inner_per_step / dt
      metrics["s_per_outer_step"] = dt
      state = engine.OuterState(np.asarray(step + 1, np.int32), theta, opt_state, tuple(gstates))
      if c.eval_every and (step + 1) % c.eval_every == 0 and is_main:
        # On process 0 only, from its replica of theta: only it logs and exports.
        metrics.update(validator.score(arch, engine.to_host(theta)))
        if metrics[evaluation.SELECT] < best[0]:
          best = (metrics[evaluation.SELECT], step + 1)
          learned_opt.save(os.path.join(workdir, "export", "best"), arch, engine.to_host(theta))
      if (step + 1) % c.log_every == 0 or evaluation.SELECT in metrics:
        logger.write(step + 1, metrics)
      last = metrics
      bar.set_postfix(meta_loss=f"{metrics['meta_loss']:.4f}",
                      inner_steps_s=f"{metrics['inner_steps_per_s']:.0f}")
      bar.update(1)
      if (step + 1) % c.checkpoint_every == 0:
        save(step + 1)
      step += 1
  finally:
    bar.close()
    signal.signal(signal.SIGTERM, old_handler)
  done = step
  if stop.requested:
    if last_saved[0] != done:  # a SIGTERM before the first step: that checkpoint exists
      save(done)
    logger.close()
    say(f"SIGTERM: saved a checkpoint at outer step {done} in {workdir}; exiting cleanly. "
        "Run the same command again to resume.")
    return {"stopped": True, "step": done}
  if last_saved[0] != done:
    save(done)
  logger.close()
  host_theta = engine.to_host(theta)
  result = {"stopped": False, "step": done, "last": last, "theta": host_theta}
  if is_main:
    learned_opt.save(os.path.join(workdir, "export", "final"), arch, host_theta)
    result["plot"] = plot_meta_loss(workdir)
    say(f"Done: {done} outer steps; theta exported to {os.path.join(workdir, 'export', 'final')}"
        f"{' (best held-out: export/best, step ' + str(best[1]) + ')' if best[1] > 0 else ''}; "
        f"plot {result['plot']}.")
  if c.final_table and is_main:
    # The table scores the optimizer a user would take: export/best when a
    # held-out evaluation picked one (on tasks disjoint from the table's), else final.
    table_theta, which = host_theta, "export/final"
    if best[1] > 0:
      _, table_theta = learned_opt.load_meta(os.path.join(workdir, "export", "best"))
      which = f"export/best (step {best[1]})"
    result["table"] = final_table(c, arch, table_theta)
    say(f"meta-trained = {which}\n" + evaluation.format_table(result["table"],
                                                               c.final_table_steps))
    with open(os.path.join(workdir, "final_table.json"), "w") as f:
      json.dump(result["table"], f, indent=1)
  if mngr is not None:
    mngr.close()
  return result


def final_table(c, arch, theta) -> list[dict]:
  """Meta-trained theta vs Adam (default LR, best swept LR) on held-out tasks."""
  key = jax.random.fold_in(jax.random.key(c.seed), 6)
  validator = evaluation.Validator(
      evaluation.held_out_tasks(key, c.final_table_tasks, distribution=c.task_distribution,
                                family=c.task_family),
      evaluation.validation.setting(c.final_table_steps))
  return evaluation.final_table(arch, theta, validator)
