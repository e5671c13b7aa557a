"""Resolving learned optimizers and the input ablations (from outside learned_opt)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import learned_opt
from meta_train.evaluation import optimizers
from meta_train.evaluation.base import EvalError


def test_resolve_names_files_and_errors(tmp_path):
  spec = optimizers.resolve("mlp")
  assert spec.label == "mlp" and "untrained" in spec.source
  path = tmp_path / "theta.lopt"
  learned_opt.save(path, spec.arch, spec.theta)
  spec2 = optimizers.resolve(f"mine={path}")
  assert spec2.label == "mine" and spec2.arch == spec.arch
  with pytest.raises(EvalError, match="not an architecture"):
    optimizers.resolve("no_such_optimizer")
  bad = tmp_path / "bad"
  bad.write_bytes(b"garbage")
  with pytest.raises(EvalError, match="cannot load"):
    optimizers.resolve(str(bad))


def test_momenta_ablation_applies_to_flat_states_only():
  assert optimizers.supports_momenta_ablation(optimizers.resolve("mlp"))
  assert not optimizers.supports_momenta_ablation(optimizers.resolve("adam_hparams"))


def _step(spec, ablation, num_steps=10):
  params = {"w": jnp.linspace(-1.0, 1.0, 12, dtype=jnp.float32).reshape(3, 4)}
  grads = jax.tree.map(lambda p: 0.1 * p + 0.05, params)
  with jax.numpy_dtype_promotion("standard"):
    tx = optimizers.LearnedTx(spec.arch)(optimizers.hparams_for(spec, ablation), num_steps)
    state = tx.init(params)
    for loss in (3.0, 2.0):
      updates, state = tx.update(grads, state, params, value=jnp.float32(loss))
  return np.asarray(updates["w"])


@pytest.mark.parametrize("arch", ["mlp", "adam_hparams"])
def test_unablated_wrapper_equals_plain_transform(arch):
  spec = optimizers.resolve(arch)
  params = {"w": jnp.linspace(-1.0, 1.0, 12, dtype=jnp.float32).reshape(3, 4)}
  grads = jax.tree.map(lambda p: 0.1 * p + 0.05, params)
  with jax.numpy_dtype_promotion("standard"):
    tx = spec.arch.as_optax(spec.theta, num_steps=10)
    state = tx.init(params)
    for loss in (3.0, 2.0):
      plain, state = tx.update(grads, state, params, value=jnp.float32(loss))
  np.testing.assert_allclose(_step(spec, None), np.asarray(plain["w"]), rtol=1e-6)


def test_momenta_ablation_changes_the_update():
  spec = optimizers.resolve("mlp")
  assert not np.allclose(_step(spec, None), _step(spec, "no_momenta"))


def test_unknown_ablation():
  with pytest.raises(EvalError, match="valid"):
    optimizers.hparams_for(optimizers.resolve("mlp"), "no_grads")
