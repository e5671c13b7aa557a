"""Values that would silently break a learned optimizer are refused where they enter.

Non-finite or out-of-range hyperparameters (``inf > 0`` holds, and NaN fails
every comparison, so a bare ``v > 0`` let both through), non-finite thetas on
save and on load, and a save whose target is a directory.
"""

import dataclasses
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import learned_opt
from learned_opt import serialization, theta_file
from learned_opt.base import LearnedOptimizerError

ARCHS = learned_opt.architectures()
SMALL = {"velo": {"lstm_hidden_size": 8, "param_inits": 4}, "hyper_lstm": {"lstm_size": 16}}


def bad_values(default):
  """Values no field with this default's type may take."""
  if isinstance(default, bool):
    return [1, "yes", None]
  if isinstance(default, int):
    return [-1, 2.5, True, math.inf, None]
  if isinstance(default, float):
    return [math.inf, -math.inf, math.nan, -1.0, 0.0, "1e-3", True, None]
  if isinstance(default, str):
    return ["no_such_choice", 3, None]
  raise AssertionError(f"add bad values for a field of type {type(default).__name__}")


# Values bad_values() lists that a field accepts on purpose.
VALID = {("mlp", "out_init"): [0.0],  # a zero last layer: the rule starts at its base step
         ("mlp", "vector_step_init"): [0.0, -1.0]}  # a log multiplier: 1x, e^-1 on vectors


def field_cases():
  for name in ARCHS:
    for f in dataclasses.fields(type(learned_opt.get(name))):
      for v in bad_values(f.default):
        if v in VALID.get((name, f.name), ()) and not isinstance(v, bool):
          continue
        yield pytest.param(name, f.name, v, id=f"{name}-{f.name}-{v!r}")


@pytest.mark.parametrize("name,field,value", list(field_cases()))
def test_every_hparam_refuses_bad_values(name, field, value):
  with pytest.raises(LearnedOptimizerError, match=field):
    learned_opt.get(name, **{field: value})


@pytest.mark.parametrize("name", ARCHS)
def test_defaults_and_small_sizes_are_accepted(name):
  learned_opt.get(name)
  learned_opt.get(name, **SMALL.get(name, {}))


def test_range_checks_name_the_valid_range():
  with pytest.raises(LearnedOptimizerError, match=r"init_lr must be a finite number in \["):
    learned_opt.get("adam_hparams", init_lr=10.0)  # above the controller's e^2 LR clip
  learned_opt.get("adam_hparams", init_lr=5.0)
  learned_opt.get("velo", ff_hidden_layers=0, lstm_hidden_size=8, param_inits=4)


@pytest.mark.parametrize("wd", [math.inf, math.nan, -1.0, True, "0.1"])
def test_velo_weight_decay_must_be_finite(wd):
  arch = learned_opt.get("velo", **SMALL["velo"])
  theta = arch.init_meta(jax.random.key(0))
  with pytest.raises(LearnedOptimizerError, match="weight_decay must be a finite float"):
    arch.as_optax(theta, num_steps=10, weight_decay=wd)
  arch.as_optax(theta, num_steps=10, weight_decay=np.float32(1e-4))


def poisoned(theta, value):
  """``theta`` with ``value`` in one element of its last leaf; returns it and that leaf's path."""
  leaves = theta_file.leaves_with_names(theta)
  name = leaves[-1][0]
  flat, treedef = jax.tree.flatten(theta)
  flat[-1] = jnp.ravel(flat[-1]).at[0].set(value).reshape(jnp.shape(flat[-1]))
  return jax.tree.unflatten(treedef, flat), name


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", ARCHS)
def test_save_refuses_a_non_finite_theta_and_writes_nothing(name, value, tmp_path):
  arch = learned_opt.get(name, **SMALL.get(name, {}))
  theta, leaf = poisoned(arch.init_meta(jax.random.key(0)), value)
  with pytest.raises(LearnedOptimizerError, match=r"not finite.*export/best") as e:
    learned_opt.save(tmp_path / "theta.lopt", arch, theta)
  assert f"theta{leaf}" in str(e.value)
  assert os.listdir(tmp_path) == []


def test_load_refuses_a_non_finite_theta_file(tmp_path):
  arch = learned_opt.get("adam_hparams")
  theta, leaf = poisoned(arch.init_meta(jax.random.key(0)), np.nan)
  meta = {"arch": arch.name, "hparams": arch.hparams(),
          "feature_version": learned_opt.FEATURE_VERSION}
  path = tmp_path / "old.lopt"  # as save() wrote it before it refused these
  serialization.write(path, meta, {n: np.asarray(x) for n, x in theta_file.leaves_with_names(theta)})
  with pytest.raises(LearnedOptimizerError, match="not finite") as e:
    learned_opt.load_meta(path)
  assert leaf in str(e.value)


def test_save_to_a_directory_is_refused_and_leaves_nothing(tmp_path):
  arch = learned_opt.get("adam_hparams")
  target = tmp_path / "export"
  target.mkdir()
  with pytest.raises(LearnedOptimizerError, match=r"existing directory.*theta\.lopt"):
    learned_opt.save(target, arch, arch.init_meta(jax.random.key(0)))
  assert os.listdir(tmp_path) == ["export"] and os.listdir(target) == []


def test_a_failed_write_leaves_no_temporary(tmp_path, monkeypatch):
  def fail(src, dst):
    raise OSError("disk full")

  monkeypatch.setattr(os, "replace", fail)
  with pytest.raises(OSError, match="disk full"):
    serialization.write(tmp_path / "x.lopt", {}, {"w": np.ones(3)})
  assert os.listdir(tmp_path) == []
