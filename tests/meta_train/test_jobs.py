"""The meta-training job through the real CLI: outputs, resume after SIGKILL/SIGTERM, refusals."""

import json
import os
import signal
import subprocess
import time

import chex
import numpy as np
import pytest

import learned_opt
from meta_train import config as config_lib
from tests.meta_train import helpers

# Long enough to be killed mid-run even when a loaded machine delays the signal
# (each step takes ~1-5 ms after compilation; 300 steps once finished first).
N_STEPS = 1500
LONG = [f"--config.outer_steps={N_STEPS}", "--config.checkpoint_every=40",
        "--config.eval_every=750"]
_run = helpers.run_cli


def _start_and_signal(workdir, sig, when_checkpoints, *extra):
  """Starts the CLI, sends ``sig`` once it has written ``when_checkpoints`` new checkpoints.

  Checkpoints a killed earlier run left behind do not count: signalling on
  those would hit the new process while it is still starting up.
  """
  ckpt = os.path.join(workdir, "checkpoints")
  before = set(os.listdir(ckpt)) if os.path.isdir(ckpt) else set()
  proc = subprocess.Popen(helpers.cli(workdir, *extra), env=helpers.subprocess_env(),
                          cwd=helpers.ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  deadline = time.time() + 150
  while time.time() < deadline and proc.poll() is None:
    done = ([d for d in os.listdir(ckpt) if d.isdigit() and d not in before]
            if os.path.isdir(ckpt) else [])
    if len(done) >= when_checkpoints:
      break
    time.sleep(0.005)
  proc.send_signal(sig)
  out, _ = proc.communicate(timeout=60)
  return proc.returncode, out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("full")
  r = _run(workdir, *LONG)
  assert r.returncode == 0, r.stderr[-3000:]
  return workdir, r


def test_tiny_outputs(uninterrupted):
  tmp_path, r = uninterrupted
  rows = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  assert [row["step"] for row in rows] == list(range(1, N_STEPS + 1))
  assert all(np.isfinite(row["meta_loss"]) for row in rows)
  assert "val_learned" in rows[749] and "val_adam_tuned" in rows[749]
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "tb"))
  assert (tmp_path / "meta_loss.png").stat().st_size > 1000
  for name in ("final", "best"):
    tx = learned_opt.load(str(tmp_path / "export" / name), num_steps=10)
    assert tx is not None
  assert "Starting a new run" in r.stdout


def test_resume_after_sigkill_and_sigterm_is_bit_exact(uninterrupted, tmp_path):
  full_dir, _ = uninterrupted
  code, out = _start_and_signal(tmp_path, signal.SIGKILL, 1, *LONG)
  assert code == -signal.SIGKILL, out[-2000:]
  code, out = _start_and_signal(tmp_path, signal.SIGTERM, 3, *LONG)
  if code == 0 and "SIGTERM" not in out:
    pytest.fail("the run finished before SIGTERM arrived; make LONG longer")
  assert code == 0 and "Resuming from checkpoint" in out and "SIGTERM: saved a checkpoint" in out, (
      out[-3000:])
  r = _run(tmp_path, *LONG)
  assert r.returncode == 0 and "Resuming from checkpoint" in r.stdout, r.stderr[-3000:]
  _, theta_full = learned_opt.load_meta(str(full_dir / "export" / "final"))
  _, theta_resumed = learned_opt.load_meta(str(tmp_path / "export" / "final"))
  chex.assert_trees_all_equal(theta_full, theta_resumed)
  steps = [json.loads(l)["step"] for l in open(tmp_path / "metrics.jsonl")]
  assert steps == list(range(1, N_STEPS + 1))


def test_incompatible_workdir_is_refused(uninterrupted):
  full_dir, _ = uninterrupted
  before = open(full_dir / "config.json").read()
  r = _run(full_dir, *LONG, "--config.pes.sigma=0.5")
  assert r.returncode == 2 and "different config" in r.stderr and "sigma" in r.stderr
  assert open(full_dir / "config.json").read() == before


def test_unknown_config_key_names_close_matches_and_the_fix(tmp_path):
  r = _run(tmp_path, "--config.sigmaa=0.1")
  assert r.returncode == 2, r.stderr[-2000:]
  assert "unknown config key 'sigmaa'" in r.stderr
  assert "Did you mean --config.pes.sigma?" in r.stderr
  assert "valid keys are: accumulate," in r.stderr and not (tmp_path / "config.json").exists()
  msg = config_lib.unknown_key_message(helpers.load_config("tiny"), "distributed.proces_id")
  assert "--config.distributed.process_id" in msg


@pytest.mark.parametrize("key,value,needle", [
    ("estimator", "adam", "config.estimator must be one of"),
    ("num_slots", 3, "divisible"),
    ("arch", "nope", "valid names"),
])
def test_bad_config_fails_fast_naming_the_fix(key, value, needle):
  # The validation the CLI runs before anything compiles, in-process (cheap).
  c = helpers.load_config("tiny")
  c[key] = value
  with pytest.raises(config_lib.ConfigError, match=needle):
    config_lib.validate(c)
