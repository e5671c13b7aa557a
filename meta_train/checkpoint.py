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


def manager(workdir: str, keep: int) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=True, enable_async_checkpointing=False,
      multiprocessing_options=ocp.options.MultiprocessingOptions(
          primary_host=0, active_processes={0}) if jax.process_count() > 1 else
      ocp.options.MultiprocessingOptions())
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")),
                               options=options)


def _named(leaves: list[np.ndarray]) -> dict[str, np.ndarray]:
  return {f"leaf{i:05d}": np.asarray(x) for i, x in enumerate(leaves)}


def save(mngr: ocp.CheckpointManager, step: int, host_state: Any) -> None:
  """Saves a host pytree at ``step`` (call on process 0 only in multi-host runs)."""
  mngr.save(step, args=ocp.args.StandardSave(_named(jax.tree.leaves(host_state))), force=True)
  mngr.wait_until_finished()


def restore_latest(mngr: ocp.CheckpointManager, like: Any) -> tuple[int, Any] | None:
  """``(step, host_state)`` from the newest checkpoint, shaped like ``like``; None if none."""
  step = mngr.latest_step()
  if step is None:
    return None
  leaves, treedef = jax.tree.flatten(like)
  target = {k: np.zeros(np.shape(x), np.asarray(x).dtype) for k, x in _named(leaves).items()}
  got = mngr.restore(step, args=ocp.args.StandardRestore(target))
  return step, treedef.unflatten([np.asarray(got[k]) for k in sorted(got)])
