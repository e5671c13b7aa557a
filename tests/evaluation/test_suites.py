"""Suites load, cover every family, and the tiny and family suites build."""

import pytest

import tasks
from meta_train.evaluation import suites
from meta_train.evaluation.base import EvalError


def test_a_suite_per_family_plus_tiny_and_heldout():
  names = suites.suite_names()
  assert {"tiny", "heldout", *tasks.families()} <= set(names)


@pytest.mark.parametrize("name", suites.suite_names())
def test_suite_loads(name):
  suite = suites.load_suite(name)
  assert suite.tasks and suite.steps >= 1
  ids = [suites.task_id(f, s) for f, s in suite.tasks]
  assert len(set(ids)) == len(ids)


def test_tiny_builds():
  for family, spec in suites.load_suite("tiny").tasks:
    tasks.build_task(family, spec)


def test_heldout_is_outside_the_default_ranges():
  by_family = dict(suites.load_suite("heldout").tasks)
  assert by_family["quadratic"].dim > 64 and by_family["quadratic"].conditioning > 1e3
  assert max(by_family["image_mlp"].hidden_sizes) > 128
  assert by_family["rnn_lm"].dataset == "shakespeare_bytes"
  assert by_family["transformer_lm"].vocab_size > 64


def test_resolve_tasks_mixes_suites_and_families():
  # A family's name is also its suite's name, so "vae" means the vae suite.
  got, steps = suites.resolve_tasks("tiny,vae")
  assert steps == 40 and [f for f, _ in got] == ["quadratic", "image_mlp", "vae", "vae", "vae"]
  assert suites.resolve_tasks("vae")[1] == 500
  with pytest.raises(EvalError, match="valid suites"):
    suites.resolve_tasks("tiny,nope")


def test_val_ood_is_outside_the_default_ranges_and_disjoint_from_heldout():
  """The selection suite extrapolates like heldout does, on other tasks: no spec is shared."""
  ood, held = suites.load_suite("val_ood").tasks, suites.load_suite("heldout").tasks
  by_family = dict(ood)
  assert by_family["quadratic"].dim > 64 and by_family["quadratic"].conditioning > 1e3
  assert max(by_family["image_mlp"].hidden_sizes) > 128
  assert not set(by_family["image_conv"].channels) <= {4, 8, 16, 32}
  assert by_family["rnn_lm"].vocab_size > 64 and by_family["rnn_lm"].data_temperature < 0.3
  assert by_family["transformer_lm"].width not in (16, 32, 64)
  assert by_family["autoencoder"].hidden_sizes[-1] not in (4, 8, 16, 32)
  assert not {suites.task_id(f, s) for f, s in ood} & {suites.task_id(f, s) for f, s in held}
  assert {f for f, _ in ood} == {f for f, _ in held}
  for family, spec in ood:
    tasks.build_task(family, spec)
