"""The estimator contract, checked for every registered estimator.

One harness (``estimator_harness.py``) parametrised over
``meta_train.estimators.estimators()``, as the learned-optimizer contract is
over ``learned_opt.architectures()``: a new estimator is tested as soon as it
is registered. Each gets its default hyperparameters (with many antithetic
pairs), the closed-form objective of the harness, and two outer steps.
"""

import dataclasses

import pytest

from meta_train import config as config_lib
from meta_train import estimators
from meta_train.base import Estimator, EstimatorError
from tests.meta_train import estimator_harness as harness

NAMES = estimators.estimators()


def test_registry_lists_the_shipped_estimators():
  assert {"es", "pes", "tes", "nres"} <= set(NAMES)


def test_registry_refuses_duplicates_and_names_the_valid_ones():
  with pytest.raises(EstimatorError, match="already registered"):
    estimators.register_estimator("pes", estimators.get_estimator("pes"))
  with pytest.raises(EstimatorError, match=r"registered: \[.*'pes'.*\]"):
    estimators.get_estimator("no_such_estimator")
  with pytest.raises(EstimatorError, match="identifier"):
    estimators.register_estimator("my-es", estimators.get_estimator("es"))


def test_registry_refuses_hparams_it_cannot_make_a_config_of():

  @dataclasses.dataclass(frozen=True)
  class NoDefault:
    sigma: float

  est = dataclasses.replace(estimators.get_estimator("es"), hparams=NoDefault)
  with pytest.raises(EstimatorError, match="give every field a default"):
    estimators.register_estimator("no_default", est)
  assert "no_default" not in estimators.estimators()
  with pytest.raises(EstimatorError, match="Estimator record"):
    estimators.register_estimator("not_a_record", object())
  assert isinstance(estimators.get_estimator("es"), Estimator)


@pytest.mark.parametrize("name", NAMES)
def test_registration_hparams_and_config_sub_dict_agree(name):
  harness.check_registration(name)


@pytest.mark.parametrize("name", NAMES)
def test_bad_sub_dict_value_names_the_flag(name):
  if "sigma" not in estimators.hparams_fields(name):
    pytest.skip(f"{name} has no sigma")
  c = config_lib.default()
  c.estimator = name
  c[name].sigma = -1.0
  with pytest.raises(config_lib.ConfigError, match=rf"--config\.{name}\.sigma="):
    config_lib.validate(c, devices=False)


@pytest.mark.parametrize("name", NAMES)
def test_ask_evaluate_tell_shapes_round_trip_and_closed_form_gradient(name, tmp_path):
  harness.check_contract(name, tmp_path)


@pytest.mark.parametrize("name", NAMES)
def test_nonfinite_inner_losses_give_a_finite_gradient(name):
  harness.check_nonfinite_losses(name, harness.many_pairs(name))
