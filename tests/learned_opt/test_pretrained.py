"""The shipped-optimizer table: names, info, checksum verification, errors."""

import hashlib

import jax
import jax.numpy as jnp
import optax
import pytest

import learned_opt
from learned_opt import pretrained
from learned_opt.base import LearnedOptimizerError


@pytest.fixture
def fake_entry(tmp_path, monkeypatch):
  """A table entry whose weights live in a temporary package-data folder."""
  arch = learned_opt.get("adam_hparams", hidden_size=4)
  learned_opt.save(tmp_path / "w.lopt", arch, arch.init_meta(jax.random.key(3)))
  digest = hashlib.sha256((tmp_path / "w.lopt").read_bytes()).hexdigest()
  monkeypatch.setattr(pretrained, "_weights_dir", lambda: tmp_path)
  monkeypatch.setitem(pretrained._TABLE, "fake-v0",
                      {"file": "w.lopt", "sha256": digest, "info": {"arch": "adam_hparams"}})
  return tmp_path


def test_every_shipped_entry_loads_and_verifies():
  for name in pretrained.names():
    arch, theta = pretrained.load_meta(name)
    assert arch.name == pretrained.info(name)["arch"]
    assert len(pretrained.info(name)["sha256"]) == 64


def test_load_by_name_trains(fake_entry):
  tx = learned_opt.load("fake-v0", num_steps=50)
  params = {"w": jnp.full((3,), 2.0)}
  state = tx.init(params)
  loss_fn = lambda p: jnp.sum(jnp.square(p["w"]))
  first = loss_fn(params)
  for _ in range(50):
    loss, g = jax.value_and_grad(loss_fn)(params)
    u, state = tx.update(g, state, params, value=loss)
    params = optax.apply_updates(params, u)
  assert loss_fn(params) < first


def test_checksum_mismatch_is_refused(fake_entry):
  data = bytearray((fake_entry / "w.lopt").read_bytes())
  data[-20] ^= 0xFF
  (fake_entry / "w.lopt").write_bytes(bytes(data))
  with pytest.raises(LearnedOptimizerError, match="checksum.*reinstall"):
    pretrained.load_meta("fake-v0")


def test_wrong_architecture_file_is_refused(fake_entry, monkeypatch):
  """An entry whose file holds another architecture than its info says is refused."""
  monkeypatch.setitem(pretrained._TABLE["fake-v0"], "info", {"arch": "mlp"})
  with pytest.raises(LearnedOptimizerError, match="architecture"):
    pretrained.load_meta("fake-v0")


def test_unknown_name_lists_the_available_ones(fake_entry):
  with pytest.raises(LearnedOptimizerError, match="fake-v0"):
    pretrained.info("no-such-optimizer")
  with pytest.raises(LearnedOptimizerError, match="neither an existing file nor a pretrained"):
    learned_opt.load("no-such-optimizer", num_steps=10)


@pytest.mark.skipif(not pretrained.names(), reason="no optimizer ships yet")
def test_recommended_optimizer_trains_a_flax_model_offline():
  import flax.nnx as nnx  # pylint: disable=g-import-not-at-top
  model = nnx.Linear(8, 4, rngs=nnx.Rngs(0))
  tx = learned_opt.load(pretrained.names()[0], num_steps=100)
  opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
  x = jax.random.normal(jax.random.key(1), (32, 8))
  y = jax.random.normal(jax.random.key(2), (32, 4))

  @nnx.jit
  def step(model, opt):
    loss, grads = nnx.value_and_grad(lambda m: jnp.mean(jnp.square(m(x) - y)))(model)
    opt.update(model, grads, value=loss)
    return loss

  losses = [float(step(model, opt)) for _ in range(100)]
  assert all(map(lambda v: v == v, losses)) and losses[-1] < 0.5 * losses[0]
