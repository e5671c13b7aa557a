"""Checkpoints: orbax CheckpointManager over the whole outer state, as host arrays.

The state is flattened to numbered leaves and saved from host numpy copies, so
a checkpoint does not depend on the device count (a run can resume on another
mesh) and process 0 alone writes it. orbax writes into a temporary directory
and renames it when complete, so a kill at any moment leaves either the old or
the new checkpoint, never a torn one; ``keep`` bounds how many stay.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


def manager(workdir: str, keep: int) -> ocp.CheckpointManager | None:
  """Process 0's manager (None on other processes: they neither read nor write)."""
  if jax.process_index() != 0:
    return None
  root = os.path.abspath(os.path.join(workdir, "checkpoints"))
  multi = jax.process_count() > 1
  if multi:
    # orbax cannot create the root itself when only some processes take part.
    os.makedirs(root, exist_ok=True)
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=not multi, enable_async_checkpointing=False,
      # Only process 0 takes part, so orbax's barriers never wait for the others.
      multiprocessing_options=ocp.options.MultiprocessingOptions(
          primary_host=0, active_processes={0}) if multi else ocp.options.MultiprocessingOptions())
  return ocp.CheckpointManager(root, options=options)


def _named(leaves: list[np.ndarray]) -> dict[str, np.ndarray]:
  return {f"leaf{i:05d}": np.asarray(x) for i, x in enumerate(leaves)}


def save(mngr: ocp.CheckpointManager, step: int, host_state: Any) -> None:
  """Saves a host pytree at ``step`` (call on process 0 only in multi-host runs)."""
  mngr.save(step, args=ocp.args.StandardSave(_named(jax.tree.leaves(host_state))), force=True)
  mngr.wait_until_finished()


def restore_latest(mngr: ocp.CheckpointManager | None, like: Any) -> tuple[int, Any] | None:
  """``(step, host_state)`` from the newest checkpoint, shaped like ``like``; None if none.

  Process 0 reads the checkpoint and broadcasts it, so every process resumes
  from the same state (call it on all processes together).
  """
  step = mngr.latest_step() if mngr is not None else None
  host = None
  if step is not None:
    leaves, treedef = jax.tree.flatten(like)
    target = {k: np.zeros(np.shape(x), np.asarray(x).dtype) for k, x in _named(leaves).items()}
    got = mngr.restore(step, args=ocp.args.StandardRestore(target))
    host = treedef.unflatten([np.asarray(got[k]) for k in sorted(got)])
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    step = int(multihost_utils.broadcast_one_to_all(np.int32(-1 if step is None else step)))
    if step < 0:
      return None
    host = multihost_utils.broadcast_one_to_all(like if host is None else host)
    host = jax.tree.map(np.asarray, host)
  return None if step is None else (step, host)
