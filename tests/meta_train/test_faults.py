"""Faults a run must survive or refuse without losing anything (issue 14).

Two runs on one workdir, a damaged newest checkpoint, a missing or damaged
config.json, non-finite config values, a diverged validation score, and the
CLI's answers to a broken config file or workdir.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time
import types

import chex
import ml_collections
import numpy as np
import pytest

import learned_opt
from meta_train import checkpoint, evaluation, lock, train
from meta_train import config as config_lib
from tests.meta_train import helpers


def _tiny(**overrides):
  c = helpers.load_config("tiny")
  c.eval_every = 0  # the job's own machinery, not validation, is under test
  for k, v in overrides.items():
    c[k] = v
  return c


def _truncate_data(step_dir):
  """Cuts every array data file of a checkpoint step to 10 bytes (a torn copy)."""
  n = 0
  for dirpath, _, files in os.walk(step_dir):
    if os.path.basename(dirpath) == "d":
      for f in files:
        with open(os.path.join(dirpath, f), "r+b") as fh:
          fh.truncate(10)
        n += 1
  assert n, f"no data files under {step_dir}"


# ----------------------------------------------------------------------------
# The workdir lock
# ----------------------------------------------------------------------------


def test_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
  with lock.WorkdirLock(str(tmp_path)):
    with pytest.raises(lock.LockError, match=rf"pid {os.getpid()} on host .*another --workdir"):
      lock.WorkdirLock(str(tmp_path)).acquire()
  with lock.WorkdirLock(str(tmp_path)):  # released on exit: free again
    pass


def test_lock_of_a_killed_process_is_stale(tmp_path):
  code = ("import sys, time; from meta_train import lock; lock.WorkdirLock(sys.argv[1]).acquire();"
          " print('held', flush=True); time.sleep(600)")
  proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=helpers.subprocess_env(),
                          cwd=helpers.ROOT, stdout=subprocess.PIPE, text=True)
  try:
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(lock.LockError, match=f"pid {proc.pid}"):
      lock.WorkdirLock(str(tmp_path)).acquire()
  finally:
    proc.kill()
    proc.wait()
  with lock.WorkdirLock(str(tmp_path)):  # SIGKILL left the file; the kernel freed the lock
    assert lock.read_owner(str(tmp_path / lock.LOCK_FILE))["pid"] == os.getpid()


def test_second_run_on_a_live_workdir_is_refused_and_the_log_stays_intact(tmp_path):
  long = ["--config.outer_steps=100000", "--config.eval_every=0", "--config.checkpoint_every=50"]
  first = subprocess.Popen(helpers.cli(tmp_path, *long), env=helpers.subprocess_env(),
                           cwd=helpers.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
  metrics = tmp_path / "metrics.jsonl"
  try:
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and first.poll() is None:
      if metrics.exists() and len(metrics.read_text().splitlines()) >= 5:
        break
      time.sleep(0.05)
    assert first.poll() is None, first.communicate()[0][-3000:]
    second = helpers.run_cli(tmp_path, *long)
    assert second.returncode == 2, second.stderr[-3000:]
    assert f"in use by another run (pid {first.pid}" in second.stderr
    assert "Traceback" not in second.stderr
  finally:
    first.send_signal(signal.SIGTERM)
    out = first.communicate(timeout=60)[0]
  assert first.returncode == 0 and "SIGTERM: saved a checkpoint" in out, out[-3000:]
  steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
  assert steps == list(range(1, len(steps) + 1))  # one writer: no duplicates, in order
  # Once the first run has ended, the same command resumes.
  r = helpers.run_cli(tmp_path, "--config.outer_steps=" + str(steps[-1] + 2), "--config.eval_every=0")
  assert r.returncode == 0 and "Resuming from checkpoint" in r.stdout, r.stderr[-3000:]


# ----------------------------------------------------------------------------
# Checkpoints: verification, fallback, orphans
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("full")
  return train.run(_tiny(), str(workdir))["theta"]


@pytest.mark.parametrize("manifest", [True, False], ids=["manifest", "orbax-check"])
def test_damaged_newest_checkpoint_falls_back_bit_exact(uninterrupted, tmp_path, capsys, manifest):
  workdir = str(tmp_path)
  train.run(_tiny(), workdir)  # checkpoints at 2, 4, 6
  step6 = tmp_path / "checkpoints" / "6"
  _truncate_data(step6)
  if not manifest:  # a checkpoint from before manifests: orbax's read must catch it
    os.remove(step6 / checkpoint.MANIFEST)
  capsys.readouterr()
  result = train.run(_tiny(), workdir)  # resumes from 4 and retrains 5 and 6
  out = capsys.readouterr().out
  assert "checkpoint at outer step 6 is damaged" in out and "resumed from outer step 4" in out
  assert "Resuming from checkpoint at outer step 4" in out
  chex.assert_trees_all_equal(result["theta"], uninterrupted)
  names = os.listdir(tmp_path / "checkpoints")
  assert "6" in names and any(n.startswith("corrupt-6-") for n in names)  # kept, not deleted


def test_no_valid_checkpoint_names_them_and_the_fix(tmp_path):
  train.run(_tiny(outer_steps=4), str(tmp_path))  # checkpoints at 2 and 4
  for step in ("2", "4"):
    _truncate_data(tmp_path / "checkpoints" / step)
  with pytest.raises(train.WorkdirError) as e:
    train.run(_tiny(outer_steps=4), str(tmp_path))
  msg = str(e.value)
  assert "no checkpoint" in msg and "checkpoints/2" in msg and "checkpoints/4" in msg
  assert "move the checkpoints directory aside" in msg
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "4"]  # nothing moved or lost


def test_orphan_temporary_checkpoints_are_removed_at_start(tmp_path):
  root = tmp_path / "checkpoints" / "8.orbax-checkpoint-tmp-1234"
  root.mkdir(parents=True)
  (root / "x").write_text("half a save")
  train.run(_tiny(outer_steps=2), str(tmp_path))
  assert not any(".orbax-checkpoint-tmp" in n for n in os.listdir(tmp_path / "checkpoints"))


# ----------------------------------------------------------------------------
# The workdir's config.json and path
# ----------------------------------------------------------------------------


def test_truncated_config_json_is_refused_with_the_fix(tmp_path):
  train.run(_tiny(outer_steps=2), str(tmp_path))
  text = (tmp_path / "config.json").read_text()
  (tmp_path / "config.json").write_text(text[: len(text) // 2])
  with pytest.raises(train.WorkdirError, match="config.json cannot be read.*Restore it"):
    train.run(_tiny(outer_steps=2), str(tmp_path))


def test_checkpoints_without_config_json_are_not_resumed_by_another_config(tmp_path):
  train.run(_tiny(outer_steps=2), str(tmp_path))
  os.remove(tmp_path / "config.json")
  with pytest.raises(train.WorkdirError, match="has checkpoints but no config.json"):
    train.run(_tiny(outer_steps=2, seed=1), str(tmp_path))
  assert not (tmp_path / "config.json").exists()


def test_bad_workdir_paths_are_refused_before_compiling(tmp_path, monkeypatch):
  afile = tmp_path / "afile"
  afile.write_text("")
  for workdir, needle in (("", "must be a directory path"), ("  ", "must be a directory path"),
                          (str(afile), "is a file")):
    with pytest.raises(train.WorkdirError, match=needle):
      train.run(_tiny(), workdir)
  # Root can write anywhere, so a read-only directory is simulated.
  ro = tmp_path / "ro"
  ro.mkdir()
  real = os.access
  monkeypatch.setattr(os, "access", lambda p, m: False if str(p) == str(ro) else real(p, m))
  with pytest.raises(train.WorkdirError, match="read-only"):
    train.run(_tiny(), str(ro / "run"))
  assert not (ro / "run").exists()


# ----------------------------------------------------------------------------
# Config values: finite and in range
# ----------------------------------------------------------------------------


def _float_fields(c, prefix=""):
  for k, v in c.items():
    if isinstance(v, ml_collections.ConfigDict):
      yield from _float_fields(v, f"{prefix}{k}.")
    elif isinstance(v, float):
      yield prefix + k


FLOAT_FIELDS = sorted(_float_fields(config_lib.default()))


def test_every_float_config_field_is_covered():
  assert {"learning_rate", "clip_norm", "augment_reparam", "pes.sigma", "es.sigma"} <= set(
      FLOAT_FIELDS)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan], ids=["inf", "-inf", "nan"])
@pytest.mark.parametrize("field", FLOAT_FIELDS)
def test_non_finite_config_values_are_refused(field, value):
  c = helpers.load_config("tiny")
  *parents, leaf = field.split(".")
  sub = c
  for p in parents:
    sub = sub[p]
  sub[leaf] = value
  with pytest.raises(config_lib.ConfigError, match=rf"config\.{field} must be a finite number"):
    config_lib.validate(c, devices=False)


def test_estimator_sigma_inf_is_refused_by_the_dataclass_too():
  from meta_train.base import EstimatorError, PESHParams  # pylint: disable=g-import-not-at-top
  with pytest.raises(EstimatorError, match="finite"):
    PESHParams(sigma=math.inf)


@pytest.mark.parametrize("field,value", [("num_processes", -1), ("heartbeat_timeout_s", 0),
                                         ("process_id", -2)])
def test_bad_distributed_settings_are_refused(field, value):
  c = helpers.load_config("tiny")
  c.distributed[field] = value
  with pytest.raises(config_lib.ConfigError, match=rf"config\.distributed\.{field}"):
    config_lib.validate(c, devices=False)


# ----------------------------------------------------------------------------
# export/best only for a finite score
# ----------------------------------------------------------------------------


class _FixedValidator:
  def __init__(self, scores):
    self.scores = list(scores)

  def score(self, arch, theta):
    del arch, theta
    return {evaluation.SELECT: self.scores.pop(0)}


def test_export_best_only_for_a_finite_score(tmp_path):
  arch = learned_opt.get("adam_hparams", hidden_size=4)
  theta = arch.init_meta(__import__("jax").random.key(0))
  job = types.SimpleNamespace(c=types.SimpleNamespace(eval_select=evaluation.SELECT),
                              workdir=str(tmp_path), arch=arch, best=(math.inf, -1), step=3,
                              state=types.SimpleNamespace(theta=theta),
                              validator=_FixedValidator([math.nan, math.inf, 0.5, math.nan]))
  best = tmp_path / "export" / "best"
  for _ in range(2):  # NaN, then inf: the first evaluations diverged
    train.evaluate_and_export(job)
    assert not best.exists() and job.best == (math.inf, -1)
  train.evaluate_and_export(job)
  assert best.exists() and job.best == (0.5, 3)
  job.step = 6
  train.evaluate_and_export(job)  # NaN after a finite best: the best stays
  assert job.best == (0.5, 3)


# ----------------------------------------------------------------------------
# The CLI: error lines, not tracebacks
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("contents,needle", [
    (None, "does not exist"),
    ("def get_config(:\n", "SyntaxError"),
    ("def get_config(arg=None):\n  return undefined_name\n", "NameError"),
    ("def get_config(arg=None):\n  return 5\n", "returned a int, not a ConfigDict"),
], ids=["missing", "syntax", "raises", "not-a-config"])
def test_broken_config_file_is_an_error_line(tmp_path, contents, needle):
  path = tmp_path / "cfg.py"
  if contents is not None:
    path.write_text(contents)
  r = subprocess.run([sys.executable, "-m", "meta_train", "--config", str(path), "--workdir",
                      str(tmp_path / "run")], env=helpers.subprocess_env(), cwd=helpers.ROOT,
                     capture_output=True, text=True, timeout=120)
  assert r.returncode == 2, r.stderr[-3000:]
  assert r.stderr.startswith("error:") and needle in r.stderr and "Traceback" not in r.stderr
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flag,needle", [
    ("--config.learning_rate=inf", "config.learning_rate must be a finite number"),
    ("--config.pes.sigma=inf", "config.pes.sigma must be a finite number"),
    ("--config.adam_sweep=abc", "unknown config key 'adam_sweep'"),
])
def test_bad_values_exit_2_before_anything_is_written(tmp_path, flag, needle):
  r = helpers.run_cli(tmp_path / "run", flag)
  assert r.returncode == 2 and needle in r.stderr, r.stderr[-3000:]
  assert not (tmp_path / "run").exists()


def test_workdir_that_is_a_file_is_an_error_line(tmp_path):
  (tmp_path / "f").write_text("")
  r = helpers.run_cli(tmp_path / "f")
  assert r.returncode == 2 and r.stderr.startswith("error:") and "is a file" in r.stderr


def test_a_non_finite_theta_is_never_exported(tmp_path):
  arch = learned_opt.get("adam_hparams", hidden_size=4)
  theta = arch.init_meta(__import__("jax").random.key(0))
  bad = __import__("jax").tree.map(lambda x: x * np.nan, theta)
  job = types.SimpleNamespace(c=types.SimpleNamespace(eval_select=evaluation.SELECT),
                              workdir=str(tmp_path), arch=arch, best=(math.inf, -1), step=3,
                              state=types.SimpleNamespace(theta=bad),
                              validator=_FixedValidator([math.log(10.0)]))
  train.evaluate_and_export(job)  # a diverged theta scores the finite 10x cap
  assert not (tmp_path / "export" / "best").exists() and job.best == (math.inf, -1)
  job.is_main, job.last, job.c = True, {}, types.SimpleNamespace(final_table=False)
  with pytest.raises(train.DivergedError, match="not finite after outer step 3"):
    train.finish(job)
  assert not (tmp_path / "export").exists()
