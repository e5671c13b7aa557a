"""Every config file loads and validates; velo_like runs on 1 device with its tiny overrides."""

import importlib.util
import math
import os

import pytest

from meta_train import config as config_lib
from tests.meta_train import helpers

CONFIGS = ["tiny", "demo", "small_cpu", "small_cpu_warm", "pretrained_mlp", "velo_like",
           "adaptive_cpu", "prodigy_residual_cpu", "prodigy_muon_cpu", "prodigy_cosine_cpu",
           "prodigy_muon_cosine_cpu", "prodigy_muon_cosine_matdir_cpu", "prodigy_muon_wsd_matdir_cpu",
           "prodigy_muon_wsd_illquad_cpu", "prodigy_muon_wsd_illquad_ctrl_cpu",
           "prodigy_muon_wsd_illquad_vec_cpu", "prodigy_muon_wsd_illquad_vec2x_cpu",
           "prodigy_muon_wsd_illquad_head_cpu", "prodigy_muon_wsd_illquad_timectrl_cpu"]


def _load(name):
  path = os.path.join(helpers.ROOT, "configs", f"{name}.py")
  spec = importlib.util.spec_from_file_location(name, path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


@pytest.mark.parametrize("name", CONFIGS)
def test_config_validates_and_documents_itself(name):
  mod = _load(name)
  for word in ("Command:", "Hardware:", "Runtime:", "Expected"):
    assert word in mod.__doc__, f"configs/{name}.py header lacks {word!r}"
  config_lib.validate(mod.get_config())


def test_velo_like_tiny_runs_on_one_device(tmp_path):
  r = helpers.run_cli(tmp_path, config="velo_like.py:tiny")
  assert r.returncode == 0, r.stderr[-3000:]
  assert (tmp_path / "export" / "final").exists()


@pytest.mark.parametrize("name", ["adaptive_cpu", "prodigy_residual_cpu", "prodigy_muon_cpu",
                                  "prodigy_cosine_cpu", "prodigy_muon_cosine_matdir_cpu",
                                  "prodigy_muon_wsd_matdir_cpu", "prodigy_muon_wsd_illquad_vec2x_cpu"])
def test_adaptive_recipe_tiny_runs(tmp_path, name):
  """The recipe's levers together (distance or Prodigy step scale, learned schedule, nres) run end to end."""
  r = helpers.run_cli(tmp_path, config=f"{name}.py:tiny")
  assert r.returncode == 0, r.stderr[-3000:]
  assert (tmp_path / "export" / "final").exists()


@pytest.mark.parametrize("name,base,field,value", [
    ("prodigy_muon_cosine_cpu", "prodigy_cosine_cpu", "step_scale", "prodigy_muon"),
    ("prodigy_muon_cosine_matdir_cpu", "prodigy_muon_cosine_cpu", "learn_direction", "matrices"),
    ("prodigy_muon_wsd_matdir_cpu", "prodigy_muon_cosine_matdir_cpu", "decay", "wsd"),
])
def test_one_lever_config_is_its_base_with_that_override(name, base, field, value):
  """Each header says the run is its base config with one arch override (run G was started
  that way); the two configs must agree on everything else."""
  mine, ref = _load(name).get_config(), _load(base).get_config()
  assert mine.arch_hparams[field] == value
  ref.arch_hparams[field] = value
  assert mine.to_dict() == ref.to_dict()


def test_illquad_config_is_v6s_recipe_with_an_extra_group_and_ood_selection():
  """Its header names exactly these two changes from prodigy_muon_wsd_matdir_cpu (run K)."""
  mine, ref = (_load("prodigy_muon_wsd_illquad_cpu").get_config(),
               _load("prodigy_muon_wsd_matdir_cpu").get_config())
  ref.extra_groups, ref.eval_suites = "quadratic_ill", "val_ood"
  assert mine.to_dict() == ref.to_dict()


def test_ctrl_config_is_run_ks_recipe_with_the_controllers_outer_lr_raised():
  """Run L: one change from prodigy_muon_wsd_illquad_cpu (run K)."""
  mine, ref = (_load("prodigy_muon_wsd_illquad_ctrl_cpu").get_config(),
               _load("prodigy_muon_wsd_illquad_cpu").get_config())
  ref.outer_lr_mults = "schedule_w=30,log_lr=30"
  assert mine.to_dict() == ref.to_dict()


def test_vec_config_is_run_ls_recipe_with_a_learned_vector_step():
  """Run M: run L's config with the vector step, its outer LR, and 1,000 outer steps."""
  mine, ref = (_load("prodigy_muon_wsd_illquad_vec_cpu").get_config(),
               _load("prodigy_muon_wsd_illquad_ctrl_cpu").get_config())
  ref.arch_hparams.vector_step = True
  ref.outer_lr_mults = "schedule_w=30,log_lr=30,vector_log_lr=30"
  ref.outer_steps = 1000
  assert mine.to_dict() == ref.to_dict()


def test_vec2x_config_is_run_ms_recipe_started_at_twice_the_vector_step():
  """Run N: run M's config with vector_log_lr starting at log 2 and at the plain outer LR."""
  mine, ref = (_load("prodigy_muon_wsd_illquad_vec2x_cpu").get_config(),
               _load("prodigy_muon_wsd_illquad_vec_cpu").get_config())
  ref.arch_hparams.vector_step_init = math.log(2.0)
  ref.outer_lr_mults = "schedule_w=30,log_lr=30"
  assert mine.to_dict() == ref.to_dict()


def test_head_config_is_run_ls_recipe_with_the_output_layers_outer_lr_raised():
  """Run O: run L's config with the MLP's output layer at 30x and 500 outer steps."""
  mine, ref = (_load("prodigy_muon_wsd_illquad_head_cpu").get_config(),
               _load("prodigy_muon_wsd_illquad_ctrl_cpu").get_config())
  ref.outer_lr_mults = "schedule_w=30,log_lr=30,mlp/w1=30,mlp/b1=30"
  ref.outer_steps = 500
  assert mine.to_dict() == ref.to_dict()


def test_timectrl_config_is_run_ls_recipe_with_a_time_only_controller():
  """Run P: run L's config with the controller reading time only and 750 outer steps."""
  mine, ref = (_load("prodigy_muon_wsd_illquad_timectrl_cpu").get_config(),
               _load("prodigy_muon_wsd_illquad_ctrl_cpu").get_config())
  ref.arch_hparams.schedule_inputs = "time"
  ref.outer_steps = 750
  assert mine.to_dict() == ref.to_dict()
