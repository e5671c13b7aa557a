"""Estimator sub-dicts in the config: validation, flag hints, and old workdirs (flat fields).

Before estimators had sub-dicts, ``config.json`` held their fields flat
(``sigma``, ``truncation_length``, ``horizon``, ...) and shared by all of them.
``config.upgrade`` moves those into the saved estimator's sub-dict, so such a
workdir resumes on the same trajectory, or is refused naming the field.
"""

import json
import shutil

import chex
import pytest

from meta_train import config as config_lib
from meta_train import estimators, train
from meta_train.base import PESHParams, TESHParams
from tests.meta_train import helpers

# configs/tiny.py's estimator fields as the code before sub-dicts wrote them to config.json.
OLD_TINY_FLAT = {"sigma": 0.01, "noise": "normal", "num_pairs": 2, "truncation_length": 5,
                 "min_horizon": 10, "max_horizon": 20, "horizon": 10, "shaping": "raw",
                 "meta_loss": "final", "num_eval_batches": 1}


def old_layout(current: dict, **flat) -> dict:
  """``current`` (a config.json) as that code wrote it: flat fields, no sub-dicts."""
  out = {k: v for k, v in current.items() if k not in estimators.estimators()}
  return {**out, **OLD_TINY_FLAT, **flat}


def tiny_json(**kw) -> dict:
  c = helpers.load_config("tiny")
  for k, v in kw.items():
    c[k] = v
  return json.loads(c.to_json_best_effort())


@pytest.mark.parametrize("name", ["pes", "tes"])
def test_upgrade_moves_the_fields_the_truncated_estimators_read(name):
  up = config_lib.upgrade(old_layout(tiny_json(), estimator=name))
  assert up[name] == {"sigma": 0.01, "noise": "normal", "num_pairs": 2, "truncation_length": 5,
                      "min_horizon": 10, "max_horizon": 20}
  assert not set(OLD_TINY_FLAT) & set(up) and "es" not in up


def test_upgrade_moves_the_fields_es_read():
  up = config_lib.upgrade(old_layout(tiny_json(), estimator="es", shaping="sign"))
  assert up["es"] == {"sigma": 0.01, "noise": "normal", "num_pairs": 2, "horizon": 10,
                      "shaping": "sign", "meta_loss": "final", "num_eval_batches": 1}
  assert "pes" not in up


def test_upgrade_leaves_the_current_layout_alone():
  current = tiny_json()
  assert config_lib.upgrade(current) == current
  # A sub-dict named like an old flat field is a sub-dict, not a flat field.
  odd = {**current, "horizon": {"sigma": 0.1}}
  assert config_lib.upgrade(odd) == odd


def test_with_defaults_fills_fields_added_to_an_hparams_dataclass():
  saved = config_lib.upgrade(old_layout(tiny_json()))
  full = config_lib.with_defaults(saved)
  assert full["pes"]["stagger"] is True and full["pes"]["num_steps"] == 0
  assert full["pes"]["truncation_length"] == 5  # the saved value wins
  assert config_lib.differences(full, tiny_json()) == []


def test_only_the_selected_estimators_sub_dict_is_compared():
  saved = tiny_json()
  c = helpers.load_config("tiny")
  c.es.horizon, c.tes.sigma = 7, 0.3  # not the estimator this run uses
  assert config_lib.differences(saved, json.loads(c.to_json_best_effort())) == []
  c.pes.sigma = 0.02
  assert config_lib.differences(saved, json.loads(c.to_json_best_effort())) == [
      ("pes.sigma", 0.01, 0.02)]
  assert config_lib.incompatible_fields(saved, tiny_json(estimator="tes")) == ["estimator"]


def test_old_workdir_resumes_on_the_same_trajectory(tmp_path, capsys):
  c = helpers.load_config("tiny")
  c.outer_steps, c.checkpoint_every, c.keep_checkpoints, c.eval_every = 4, 2, 5, 0
  full = train.run(c, str(tmp_path))
  # As a run of the old code left it after 2 steps: a flat config.json, checkpoint 2.
  shutil.rmtree(tmp_path / "checkpoints" / "4")
  path = tmp_path / "config.json"
  path.write_text(json.dumps(old_layout(json.loads(path.read_text()))))
  capsys.readouterr()
  resumed = train.run(c, str(tmp_path))
  assert "Resuming from checkpoint at outer step 2" in capsys.readouterr().out
  chex.assert_trees_all_equal(resumed["theta"], full["theta"])
  # A different value of the estimator's field is refused, naming it.
  c.pes.sigma = 0.5
  with pytest.raises(train.WorkdirError, match=r"pes\.sigma: 0\.01 -> 0\.5"):
    train.check_workdir(str(tmp_path), c)
  assert "sigma" in json.loads(path.read_text())  # left untouched


def test_flat_flags_are_pointed_to_the_selected_estimators_sub_dict():
  c = helpers.load_config("tiny")
  for key, field in (("sigma", "sigma"), ("sigmaa", "sigma"), ("max_horizon", "max_horizon")):
    msg = config_lib.unknown_key_message(c, key)
    assert f"Did you mean --config.pes.{field}?" in msg and "config.estimator = 'pes'" in msg
  c.estimator = "es"
  assert "Did you mean --config.es.horizon?" in config_lib.unknown_key_message(c, "horizon")
  assert config_lib.unknown_key_message(c, "es.horizon") is None


def test_each_estimator_validates_into_its_own_hparams():
  c = helpers.load_config("tiny")
  _, hp = config_lib.validate(c)
  assert hp == PESHParams(num_pairs=2, truncation_length=5, min_horizon=10, max_horizon=20)
  c.estimator = "tes"
  _, hp = config_lib.validate(c)
  assert type(hp) is TESHParams and hp.truncation_length == 5


@pytest.mark.parametrize("field,value,needle", [
    ("max_horizon", 5, r"--config\.pes\.max_horizon="),
    ("noise", "uniform", r"--config\.pes\.noise="),
    ("sigma", 0.0, r"--config\.pes\.sigma="),
])
def test_bad_sub_dict_values_name_the_flag(field, value, needle):
  c = helpers.load_config("tiny")
  c.pes[field] = value
  with pytest.raises(config_lib.ConfigError, match=needle):
    config_lib.validate(c, devices=False)


def test_a_missing_or_extended_sub_dict_names_the_fix():
  c = helpers.load_config("tiny")
  c.pes.mode = "tes"  # the old PESHParams field: TESHParams is its own estimator now
  with pytest.raises(config_lib.ConfigError, match=r"unknown fields \['mode'\]"):
    config_lib.validate(c, devices=False)
  del c["pes"]
  with pytest.raises(config_lib.ConfigError, match="config_lib.estimator_config"):
    config_lib.validate(c, devices=False)
