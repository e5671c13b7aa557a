"""One process of the two-process meta-training test (tests/meta_train/test_multihost.py).

Usage: python -m tests.meta_train._multihost_worker PORT PROCESS_ID WORKDIR OUT.npz [OUTER_STEPS]

Runs ``meta_train.train.run`` (the CLI's code path) on the ``tiny`` config with
``jax.distributed`` over loopback and gloo CPU collectives, 2 CPU devices per
process, then saves what the test compares: the final theta, the last step's
all-reduced metrics, this process's slice of the task pools and which processes
called the checkpoint writer.
"""

import os
import sys

os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.config.update("jax_num_cpu_devices", 2)

import numpy as np  # noqa: E402

from meta_train import checkpoint, engine, train  # noqa: E402
from meta_train import config as config_lib  # noqa: E402
from tests.meta_train.helpers import multihost_config as config  # noqa: E402


def main(port: int, pid: int, workdir: str, out: str, outer_steps: int = 0) -> None:
  c = config(port, pid)
  if outer_steps:  # a long run, for the test that stops one process with SIGTERM
    c.outer_steps = outer_steps
  writers = []
  real_save = checkpoint.save

  def save(mngr, step, host_state):
    writers.append(jax.process_index())
    real_save(mngr, step, host_state)

  checkpoint.save = save  # record who writes; train.save calls it through the module
  result = train.run(c, workdir)
  if result["stopped"]:
    np.savez(out, stopped=True, step=result["step"])
    jax.distributed.shutdown()
    return
  # The pools this process built (its own slots), rebuilt deterministically.
  arch, hp = config_lib.validate(c)
  _, pools = train.build_pools(c, engine.make_mesh())
  local = [np.concatenate([np.asarray(s.data) for s in leaf.addressable_shards])
           for leaf in jax.tree.leaves(pools)]
  leaves = jax.tree.leaves(result["theta"])
  np.savez(out, *leaves, meta_loss=result["last"]["meta_loss"],
           grad_norm=result["last"]["grad_norm"], writers=np.asarray(writers, np.int32),
           process_count=jax.process_count(), device_count=jax.device_count(),
           pool=np.concatenate([x.ravel().astype(np.float64) for x in local]))
  jax.distributed.shutdown()


if __name__ == "__main__":
  main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4],
       int(sys.argv[5]) if len(sys.argv) > 5 else 0)
