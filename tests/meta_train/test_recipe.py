"""The pretrained-optimizer recipe's pieces: augmentation in pools, warm start, held-out selection."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import learned_opt
import tasks
from meta_train import config as config_lib
from learned_opt import xla_cpu
from meta_train import engine, evaluation, train
from meta_train.evaluation import metrics
from tests.meta_train import helpers


def _group():
  return engine.sample_groups(jax.random.key(3), num_groups=1, distribution="",
                              family="image_mlp")[0]


def test_reparam_pool_wraps_every_task_and_keeps_the_loss():
  g = _group()
  plain = engine.build_pool(g, jax.random.key(1), num_slots=2, pool_size=2)
  aug = engine.build_pool(g, jax.random.key(1), num_slots=2, pool_size=2, reparam=2.3)
  assert isinstance(aug, tasks.ReparameterizedTask)
  seeds = np.asarray(aug.seed).ravel()
  assert len(set(seeds.tolist())) == 4  # every task its own factors
  one = jax.tree.map(lambda x: x[1, 0], aug)
  inner = jax.tree.map(lambda x: x[1, 0], plain)
  k = jax.random.key(0)
  p_aug = one.init(k)
  # Same function of the stored parameters' meaning, different stored scales.
  batch = inner.sample_batch(k)
  np.testing.assert_allclose(one.loss(p_aug, k, batch), inner.loss(inner.init(k), k, batch),
                             rtol=1e-5)
  ratios = [float(jnp.linalg.norm(a) / jnp.linalg.norm(b))
            for a, b in zip(jax.tree.leaves(p_aug), jax.tree.leaves(inner.init(k)))
            if float(jnp.linalg.norm(b)) > 0]
  assert max(ratios) / min(ratios) > 1.5  # tensors were rescaled by different factors


def _cfg(**kw):
  c = config_lib.load_file(os.path.join(helpers.ROOT, "configs", "tiny.py"))
  c.arch, c.arch_hparams = "mlp", config_lib.ml_collections.ConfigDict({"hidden_size": 16})
  for k, v in kw.items():
    c[k] = v
  return c


@pytest.mark.parametrize("bad", [-1.0, 11.0, float("nan")])
def test_bad_augment_value_names_the_fix(bad):
  with pytest.raises(config_lib.ConfigError, match="augment_reparam"):
    config_lib.validate(_cfg(augment_reparam=bad))


def test_init_from_loads_a_shipped_or_saved_theta(tmp_path):
  name = learned_opt.pretrained.names()[0]
  c = _cfg(init_from=name)
  c.arch_hparams = config_lib.ml_collections.ConfigDict(learned_opt.pretrained.info(name)["hparams"])
  arch, _ = config_lib.validate(c)
  _, shipped = learned_opt.pretrained.load_meta(c.init_from)
  got = config_lib.init_theta(c, arch)
  jax.tree.map(np.testing.assert_array_equal, got, shipped)
  path = str(tmp_path / "theta.lopt")
  learned_opt.save(path, arch, shipped)
  jax.tree.map(np.testing.assert_array_equal, config_lib.init_theta(_cfg(init_from=path), arch),
               shipped)


@pytest.mark.parametrize("src,match", [("no/such/file.lopt", "neither a file"),
                                       ("mlp-demo-v0", "set --config.arch")])
def test_bad_init_from_names_the_fix(src, match):
  c = _cfg(init_from=src)
  if src == "mlp-demo-v0":
    c.arch_hparams.hidden_size = 8  # the shipped theta is hidden 16
  with pytest.raises(config_lib.ConfigError, match=match):
    config_lib.validate(c)


def test_old_workdir_without_new_fields_resumes(tmp_path):
  c = _cfg()
  train.check_workdir(str(tmp_path), c)
  saved = json.loads((tmp_path / "config.json").read_text())
  del saved["augment_reparam"], saved["init_from"]  # as written before these fields existed
  (tmp_path / "config.json").write_text(json.dumps(saved))
  train.check_workdir(str(tmp_path), c)  # defaults fill the gap: no error
  with pytest.raises(train.WorkdirError, match="augment_reparam"):
    train.check_workdir(str(tmp_path), _cfg(augment_reparam=1.0))


def _rows(learned, adam):
  """Validation rows as evaluation.Validator makes them (final training losses; here the
  normalised losses equal the raw ones)."""
  return [{"task": f"t{i}/x", "final": l, "adam_final": a,
           "win": metrics.win(metrics.final_loss([l]), a),
           "log_ratio": metrics.log_ratio(l, a),
           "floored_log_ratio": metrics.floored_log_ratio(l, a, 1.0), "speedup": 1.0,
           "norm_final": l,
           "norm_adam_final": a} for i, (l, a) in enumerate(zip(learned, adam))]


def test_selection_score_is_not_dominated_by_a_task_adam_fails():
  adam = [0.5, 0.5, 0.5, 40.0]  # Adam diverges on the last task
  a = evaluation.summarize(_rows([0.25, 0.25, 0.25, 45.0], adam))  # 2x better on 3 tasks
  b = evaluation.summarize(_rows([0.6, 0.6, 0.6, 10.0], adam))  # worse on 3, lucky on the last
  assert a["val_learned"] > b["val_learned"]  # the old mean would have picked b
  assert a[evaluation.SELECT] < b[evaluation.SELECT]  # the log ratio picks a
  assert a["val_win_rate"] == 0.75 and b["val_win_rate"] == 0.25


def test_selection_score_handles_non_finite_losses():
  s = evaluation.summarize(_rows([float("nan"), 0.5], [0.5, 0.5]))
  assert s[evaluation.SELECT] == pytest.approx(np.log(10) / 2)  # NaN counts as 10x Adam
  s = evaluation.summarize(_rows([0.25, 0.5], [float("inf"), 0.5]))  # Adam diverged: left out
  # The remaining task is a tie, which the report's yardstick counts as half a win.
  assert s[evaluation.SELECT] == pytest.approx(0.0) and s["val_win_rate"] == 0.5
  assert evaluation.summarize(_rows([0.0], [0.0]))[evaluation.SELECT] == 0.0  # both solved


_LSTM_INIT = """
import jax
from meta_train import config as config_lib, engine, pes
c = config_lib.load_file("configs/small_cpu.py")
arch, hp = config_lib.validate(c)
g = engine.Group("rnn_lm", tasks.get_family("rnn_lm").sample(jax.random.key(0)))
g = engine.Group("rnn_lm", dataclasses.replace(g.spec, cell="lstm", hidden_size=32, embed_size=8,
                 seq_len=16, batch_size=8, dataset="stdlib_bytes", vocab_size=256))
pool = engine.build_pool(g, jax.random.key(1), num_slots=8, pool_size=1)
init = jax.jit(lambda k, t, p: pes.init(k, arch, hp, t, p))
jax.block_until_ready(init(jax.random.key(0), arch.init_meta(jax.random.key(0)), pool))
print("done")
"""


def test_eight_lstm_slots_initialise_without_hanging():
  # Regression test for the XLA:CPU hang that learned_opt.xla_cpu works around:
  # without the flag this program waits forever (idle threads, no CPU).
  code = ("from learned_opt import xla_cpu; xla_cpu.apply()\n"
          "import dataclasses, tasks\n" + _LSTM_INIT)
  r = subprocess.run([sys.executable, "-c", code], env=helpers.subprocess_env(), cwd=helpers.ROOT,
                     capture_output=True, text=True, timeout=300)
  assert r.returncode == 0 and "done" in r.stdout, r.stderr[-2000:]


def test_xla_cpu_workaround_keeps_a_users_setting(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
  xla_cpu.apply()
  assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2 " + xla_cpu.FLAG
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_concurrency_optimized_scheduler=true")
  xla_cpu.apply()
  assert os.environ["XLA_FLAGS"] == "--xla_cpu_enable_concurrency_optimized_scheduler=true"
  xla_cpu.apply(ftz=True)
  assert os.environ["XLA_FLAGS"].endswith(" --xla_cpu_ftz=true")


def test_sigterm_right_after_resume_exits_cleanly(tmp_path, monkeypatch):
  # A SIGTERM that lands before the first step of a resumed run used to re-save
  # the checkpoint it had just restored, which orbax refuses (exit code 1).
  c = _cfg(outer_steps=2, checkpoint_every=1, eval_every=0, progress=False)
  assert train.run(c, str(tmp_path))["step"] == 2

  class StopAtOnce(train._Stop):
    def __init__(self):
      super().__init__()
      self.requested = True

  monkeypatch.setattr(train, "_Stop", StopAtOnce)
  c.outer_steps = 4
  out = train.run(c, str(tmp_path))
  assert out == {"stopped": True, "step": 2}
