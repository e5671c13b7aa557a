"""Every continuous and seed field of every registered family's spec is checked in ``build``:
NaN, inf and out-of-range values are a TaskError naming the field, never a task that trains
on NaN, a silently clamped value, or a numpy error from deep inside the data code."""

import dataclasses
import re

import pytest

import tasks

FAMILIES = tasks.families()


def _fields(name, kind):
  """The example spec's field names holding a ``kind`` value (bools are not ints here)."""
  spec = tasks.get_family(name).example_spec()
  return [f.name for f in dataclasses.fields(spec)
          if isinstance(getattr(spec, f.name), kind)
          and not isinstance(getattr(spec, f.name), bool)]


def _refused(name, field, value):
  family = tasks.get_family(name)
  spec = dataclasses.replace(family.example_spec(), **{field: value})
  with pytest.raises(tasks.TaskError, match=rf"bad {name} spec: {re.escape(field)} must be"):
    family.build(spec)


FLOAT_FIELDS = [(n, f) for n in FAMILIES for f in _fields(n, float)]
SEED_FIELDS = [(n, f) for n in FAMILIES for f in _fields(n, int)
               if f == "seed" or f.endswith("_seed")]


def test_every_family_has_checked_continuous_and_seed_fields():
  assert {n for n, _ in FLOAT_FIELDS} == set(FAMILIES)
  assert {n for n, _ in SEED_FIELDS} == set(FAMILIES)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), "1.0", None])
@pytest.mark.parametrize("name,field", FLOAT_FIELDS)
def test_a_non_finite_float_field_is_refused_naming_it(name, field, value):
  _refused(name, field, value)


@pytest.mark.parametrize("value", [-1, 2**31, 1.5, True])
@pytest.mark.parametrize("name,field", SEED_FIELDS)
def test_a_seed_outside_int32_naturals_is_refused_naming_it(name, field, value):
  _refused(name, field, value)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("value", [0.0, -1.0])
def test_init_scale_must_be_positive(name, value):
  _refused(name, "init_scale", value)


@pytest.mark.parametrize("name,field,value", [
    ("quadratic", "conditioning", 0.5),
    ("quadratic", "conditioning", 1e7),  # the float32 matrix would not be that quadratic
    ("quadratic", "noise", -0.1),
    ("rnn_lm", "data_temperature", 0.0),
    ("rnn_lm", "data_temperature", 1e-4),  # below the clamp in datasets.markov_transitions
    ("transformer_lm", "data_temperature", -1.0),
])
def test_out_of_range_values_are_refused_naming_the_field(name, field, value):
  _refused(name, field, value)


@pytest.mark.parametrize("name,changes", [
    ("quadratic", {"conditioning": 1.0, "noise": 0.0, "seed": 2**31 - 1}),
    ("quadratic", {"conditioning": 1e6, "init_scale": 1}),  # an int from hand-written JSON
    ("rnn_lm", {"data_temperature": 1e-3, "data_seed": 0}),
])
def test_values_on_the_bounds_build(name, changes):
  family = tasks.get_family(name)
  family.build(dataclasses.replace(family.example_spec(), **changes))
