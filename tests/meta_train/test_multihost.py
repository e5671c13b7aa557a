"""Two processes on one machine (CPU, gloo collectives, loopback) run the real meta-training job.

Each process has 2 CPU devices, so the global mesh has 4 and the meta-gradient
is all-reduced across processes over gloo. Both processes must end with the
same theta and metrics, each must have built different tasks, and only process
0 may write checkpoints. (1 device = 4 devices in one process is
test_sharding.py.)
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import chex
import jax
import numpy as np
import pytest

from tests.meta_train import helpers

ROOT = helpers.ROOT
TIMEOUT_S = 150


def _gloo_available() -> bool:
  try:
    from jax._src.lib import _jax  # pylint: disable=g-import-not-at-top
    return hasattr(_jax, "make_gloo_tcp_collectives")
  except ImportError:
    return False


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _start(tmp_path, workdir, *extra):
  port = _free_port()
  return [subprocess.Popen(
      [sys.executable, "-m", "tests.meta_train._multihost_worker", str(port), str(i),
       str(workdir), str(tmp_path / f"p{i}.npz"), *extra],
      cwd=ROOT, env=helpers.subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True) for i in range(2)]


def _wait(procs) -> list[str]:
  outs = []
  try:
    for p in procs:
      outs.append(p.communicate(timeout=TIMEOUT_S)[0])
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.communicate()
  return outs


@pytest.mark.skipif(not _gloo_available(), reason="this jaxlib has no gloo CPU collectives")
def test_two_processes_agree_and_only_process_0_writes(tmp_path):
  workdir = tmp_path / "run"  # shared by both processes, as on a cluster's shared storage
  procs = _start(tmp_path, workdir)
  outs = _wait(procs)
  for i, (p, out) in enumerate(zip(procs, outs)):
    assert p.returncode == 0, f"process {i} failed:\n{out[-4000:]}"
  r = [np.load(tmp_path / f"p{i}.npz") for i in range(2)]
  assert int(r[0]["process_count"]) == 2 and int(r[0]["device_count"]) == 4
  theta = [[r[i][f"arr_{j}"] for j in range(len([k for k in r[i].files if k.startswith("arr_")]))]
           for i in range(2)]
  # The meta-gradient is all-reduced: both hosts hold the same theta and metrics.
  chex.assert_trees_all_equal(theta[0], theta[1])
  for k in ("meta_loss", "grad_norm"):
    assert float(r[0][k]) == float(r[1][k])
  # Every host trained its own tasks.
  assert r[0]["pool"].shape == r[1]["pool"].shape and not np.allclose(r[0]["pool"], r[1]["pool"])
  # Only process 0 wrote checkpoints (one per outer step) and outputs.
  assert list(r[0]["writers"]) == [0, 0] and list(r[1]["writers"]) == []
  assert sorted(os.listdir(workdir / "checkpoints")) == ["1", "2"]
  assert "Starting a new run" in outs[0] and "Starting a new run" not in outs[1]
  # A real meta-gradient step happened: theta moved from its init.
  init = jax.tree.leaves(helpers.load_arch("tiny").init_meta(
      jax.random.fold_in(jax.random.key(helpers.multihost_config().seed), 0)))
  assert not all(np.array_equal(a, b) for a, b in zip(theta[0], init))


@pytest.mark.skipif(not _gloo_available(), reason="this jaxlib has no gloo CPU collectives")
def test_sigterm_to_one_process_stops_every_process_at_one_step(tmp_path):
  """A SIGTERM to the process that does not write must stop both, with one checkpoint."""
  workdir = tmp_path / "run"
  procs = _start(tmp_path, workdir, "100000")  # would run for hours
  metrics = workdir / "metrics.jsonl"
  deadline = time.monotonic() + TIMEOUT_S
  while time.monotonic() < deadline and procs[0].poll() is None:
    if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
      break
    time.sleep(0.2)
  assert procs[0].poll() is None, "process 0 ended before it was stopped"
  procs[1].send_signal(signal.SIGTERM)
  outs = _wait(procs)
  for i, (p, out) in enumerate(zip(procs, outs)):
    assert p.returncode == 0, f"process {i} failed:\n{out[-4000:]}"
  r = [np.load(tmp_path / f"p{i}.npz") for i in range(2)]
  assert bool(r[0]["stopped"]) and bool(r[1]["stopped"])
  step = int(r[0]["step"])
  assert int(r[1]["step"]) == step and 3 <= step < 100000
  assert str(step) in os.listdir(workdir / "checkpoints")  # the stop's checkpoint
  assert "SIGTERM: saved a checkpoint" in outs[0]
  rows = [json.loads(line) for line in metrics.read_text().splitlines()]
  assert rows[-1]["step"] == step
