"""VeLO: checkpoint reading, agreement with learned_optimization, training, errors."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import msgpack
import numpy as np
import optax
import pytest
from flax import nnx

import learned_opt
from learned_opt import velo
from learned_opt.base import LearnedOptimizerError

DATA = Path(__file__).parents[1] / "data"
SHARED = Path(__file__).parents[2].parent / "shared" / "reference" / "velo"


# ----------------------------------------------------------------------------
# Helpers: a msgpack writer in learned_optimization's format, the tolerance rule.
# ----------------------------------------------------------------------------


def _nd(a: np.ndarray) -> msgpack.ExtType:
  a = np.ascontiguousarray(a)
  return msgpack.ExtType(1, msgpack.packb([list(a.shape), a.dtype.name.encode(), a.tobytes()]))


def pack(tree) -> bytes:
  """Encodes nested dicts of numpy arrays as flax.serialization.to_bytes does."""

  def enc(x):
    if isinstance(x, dict):
      return {k: enc(v) for k, v in x.items()}
    if isinstance(x, np.ndarray):
      return _nd(x)
    return x

  return msgpack.packb(enc(tree))


def tiny_haiku_theta(h: int = 4, k: int = 2, ff: int = 4, seed: int = 0) -> dict:
  """A random HyperV2 theta in haiku naming (on-disk layout), sizes H=h, K=k."""
  rng = np.random.default_rng(seed)
  r = lambda *s: (0.3 * rng.standard_normal(s)).astype(np.float32)
  widths = (1, 1, 1, 3, 1, 3, 1, 3, 1, 3, 3, 3, 3, 3)
  mods = {"b0": r(k, ff), "b1": r(k, ff), "b2": r(k, 3)}
  for i in sorted(range(14), key=str):  # haiku sorts keys: w0__0, w0__1, w0__10, ...
    mods[f"w0__{i}"] = r(k, widths[i], ff)
  mods["w1"], mods["w2"] = r(k, ff, ff), r(k, ff, 3)
  lin = lambda i, o: {"b": r(o), "w": r(i, o)}
  return {
      "ff_mod_stack": {"~": mods},
      "lstm_init_state": {"hidden": r(1, h), "cell": r(1, h)},
      "rnn_params": {"linear": lin(30, h), "linear_1": lin(30, h), "linear_2": lin(30, h),
                     "rnn/linear": lin(2 * h, 4 * h), "rnn_to_controls": lin(h, k),
                     "step_size": lin(h, 1)},
  }


def assert_within_reference_tolerance(got: np.ndarray, ref: np.ndarray, p0: np.ndarray) -> float:
  """The reference README's two-part rule; returns the worst ratio to the allowance."""
  err = np.abs(got.astype(np.float64) - ref)
  r1 = np.max(err / (1e-6 + 1e-5 * np.abs(ref)))
  allow2 = 1e-3 * np.max(np.abs(ref - p0)) + 4 * np.spacing(np.float32(np.max(np.abs(ref))))
  r2 = np.max(err) / allow2
  assert r1 <= 1 and r2 <= 1, (r1, r2)
  return float(max(r1, r2))


def run_case(arch, theta, case) -> list[dict[str, np.ndarray]]:
  """Runs the recorded steps of a case; returns params after every step."""
  paths = sorted(k[len("param/"):] for k in case if k.startswith("param/"))
  params = {p: jnp.asarray(case[f"param/{p}"]) for p in paths}
  tx = arch.as_optax(theta, num_steps=int(case["num_steps"]))
  state = tx.init(params)
  update = jax.jit(tx.update)
  out = []
  for t in range(int(case["T"])):
    grads = {p: jnp.asarray(case[f"grad/{t}/{p}"]) for p in paths}
    updates, state = update(grads, state, params, value=jnp.asarray(case[f"loss/{t}"]))
    params = optax.apply_updates(params, updates)
    out.append({p: np.asarray(v) for p, v in params.items()})
  return out


def check_case(arch, theta, case, outputs=None) -> float:
  worst = 0.0
  for t, params in enumerate(outputs or run_case(arch, theta, case)):
    for p, got in params.items():
      worst = max(worst, assert_within_reference_tolerance(
          got, case[f"expected/{t}/{p}"], case[f"param/{p}"]))
  return worst


# ----------------------------------------------------------------------------
# Agreement with learned_optimization.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["small", "velo"])
def test_reference_checkpoints_reproduce_learned_optimization(name):
  folder = SHARED / name
  if not folder.is_dir():
    pytest.skip(f"{folder} not present (shared reference data)")
  arch, theta = velo.load_checkpoint(folder / "params")
  expected_h = {"small": 32, "velo": 512}[name]
  assert arch.lstm_hidden_size == expected_h
  with np.load(folder / "case.npz") as z:
    check_case(arch, theta, dict(z))


def test_golden_small_case_without_shared_data():
  """The `small` reference case, shipped in tests/data, so this runs anywhere."""
  arch, theta = velo.load_checkpoint(DATA / "velo_small_params")
  with np.load(DATA / "velo_small_case.npz") as z:
    case = dict(z)
  outputs = run_case(arch, theta, case)
  check_case(arch, theta, case, outputs)
  # Our own outputs, recorded when this passed: guards against silent drift.
  for t, params in enumerate(outputs):
    for p, got in params.items():
      np.testing.assert_allclose(got, case[f"ours/{t}/{p}"], rtol=1e-6, atol=1e-8)


def test_golden_tiny_checkpoint():
  """A tiny H=4, K=2 checkpoint written in learned_optimization's format."""
  arch, theta = velo.load_checkpoint(DATA / "velo_tiny_params")
  assert (arch.lstm_hidden_size, arch.param_inits) == (4, 2)
  with np.load(DATA / "velo_tiny_case.npz") as z:
    case = dict(z)
  for t, params in enumerate(run_case(arch, theta, case)):
    for p, got in params.items():
      np.testing.assert_allclose(got, case[f"expected/{t}/{p}"], rtol=1e-6, atol=1e-8)


def test_learned_opt_load_reads_a_velo_checkpoint():
  tx = learned_opt.load(DATA / "velo_tiny_params", num_steps=10)
  params = {"w": jnp.ones((3, 2)), "b": jnp.zeros((2,))}
  updates, _ = tx.update(params, tx.init(params), params, value=1.0)
  assert jax.tree.map(jnp.shape, updates) == jax.tree.map(jnp.shape, params)
  arch, theta = learned_opt.load_meta(DATA / "velo_tiny_params")
  assert arch.name == "velo" and arch.lstm_hidden_size == 4


# ----------------------------------------------------------------------------
# The checkpoint reader: layouts and errors.
# ----------------------------------------------------------------------------


def _same_theta(a, b):
  chex_leaves = jax.tree.leaves(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a, b))
  assert jax.tree.structure(a) == jax.tree.structure(b) and all(chex_leaves)


def test_old_layouts_load(tmp_path):
  hk = tiny_haiku_theta()
  new = tmp_path / "new"
  new.write_bytes(pack({"params": hk, "gen_id": "", "step": 0}))
  _, theta = velo.load_checkpoint(new)

  tuple_keys = tmp_path / "tuple_keys"  # the (theta, "", 0) tuple of no_config checkpoints
  tuple_keys.write_bytes(pack({"0": hk, "1": "", "2": 0}))
  with pytest.warns(UserWarning, match="use_bugged_next_lstm_state"):
    _same_theta(velo.load_checkpoint(tuple_keys)[1], theta)

  old = dict(hk)
  old["lstm_init_state"] = {"name": "LSTMState", "fields": {"0": "hidden", "1": "cell"},
                            "values": {"0": hk["lstm_init_state"]["hidden"],
                                       "1": hk["lstm_init_state"]["cell"]}}
  namedtuple = tmp_path / "namedtuple"
  namedtuple.write_bytes(pack({"0": old, "1": "", "2": 0}))
  with pytest.warns(UserWarning, match="older"):
    _same_theta(velo.load_checkpoint(namedtuple)[1], theta)


def test_theta_mapping_concatenates_blocks_in_numeric_order(tmp_path):
  hk = tiny_haiku_theta()
  path = tmp_path / "p"
  path.write_bytes(pack({"params": hk, "gen_id": "", "step": 0}))
  arch, theta = velo.load_checkpoint(path)
  mods = hk["ff_mod_stack"]["~"]
  np.testing.assert_array_equal(theta["mlp"]["w0"][:, 3:6], mods["w0__3"])
  np.testing.assert_array_equal(theta["mlp"]["w0"][:, -3:], mods["w0__13"])
  learned_opt.base.check_theta(arch, theta)


def _write(tmp_path, name, data: bytes) -> Path:
  path = tmp_path / name
  path.write_bytes(data)
  return path


def test_errors_are_clear(tmp_path):
  good = pack({"params": tiny_haiku_theta(), "gen_id": "", "step": 0})
  cases = {
      "missing": (tmp_path / "nope", "no such file"),
      "text": (_write(tmp_path, "text", b"hello world"), "not a learned_optimization checkpoint"),
      "truncated": (_write(tmp_path, "trunc", good[: len(good) // 2]), "truncated"),
      "trailing": (_write(tmp_path, "trail", good + b"\x00"), "trailing bytes"),
      "wrong_arch": (_write(tmp_path, "arch", pack({"params": {"ff_mod": {"w": np.ones(3, np.float32)}},
                                                    "gen_id": "", "step": 0})), "wrong architecture"),
  }
  bad_array = msgpack.ExtType(1, msgpack.packb([[4, 4], b"float32", b"\x00" * 12]))
  hk = tiny_haiku_theta()
  corrupt = pack({"params": {**hk, "lstm_init_state": {"hidden": bad_array, "cell": bad_array}}})
  cases["corrupt"] = (_write(tmp_path, "corrupt", corrupt), "corrupt array")
  hk2 = tiny_haiku_theta()
  hk2["rnn_params"]["rnn/linear"]["w"] = np.zeros((3, 3), np.float32)
  cases["shape"] = (_write(tmp_path, "shape", pack({"params": hk2})), "rnn_params/rnn/linear/w")
  for name, (path, message) in cases.items():
    with pytest.raises(LearnedOptimizerError, match=message):
      velo.load_checkpoint(path)


# ----------------------------------------------------------------------------
# Behaviour as an Optax / nnx optimizer.
# ----------------------------------------------------------------------------


def momentum_theta(arch) -> dict:
  """A hand-built theta under which VeLO is RMS-normalised momentum (a descent method).

  Controls are constant 0.01, so every tensor gets ``100 * mean_k(0.01 W) = W``;
  the MLP outputs ``direction = m_0.9 / sqrt(rms)`` (input column 7) and the
  step-size head outputs 300.
  """
  theta = jax.tree.map(jnp.zeros_like, arch.init_meta(jax.random.key(0)))
  k, ff = arch.param_inits, arch.ff_hidden_size
  w0 = np.zeros((k, 30, ff), np.float32)
  w0[:, 7, 0], w0[:, 7, 1] = 1.0, -1.0  # relu(x), relu(-x)
  w1 = np.zeros((k, ff, ff), np.float32)
  w1[:, 0, 0], w1[:, 1, 1] = 1.0, 1.0
  w2 = np.zeros((k, ff, 3), np.float32)
  w2[:, 0, 0], w2[:, 1, 0] = 1.0, -1.0
  theta["mlp"].update(w0=jnp.asarray(w0), w1=jnp.asarray(w1), w2=jnp.asarray(w2))
  theta["to_controls"]["b"] = jnp.full((k,), 0.01, jnp.float32)
  theta["step_size"]["b"] = jnp.float32(300.0)
  return theta


def test_trains_nnx_model_with_value():
  arch = learned_opt.get("velo", lstm_hidden_size=8, param_inits=4)
  tx = arch.as_optax(momentum_theta(arch), num_steps=40)
  model = nnx.Linear(4, 1, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (64, 4))
  y = x @ jnp.asarray([[1.0], [-2.0], [0.5], [3.0]])
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer):
    loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
    optimizer.update(model, grads, value=loss)
    return loss

  losses = [float(step(model, optimizer)) for _ in range(40)]
  assert np.isfinite(losses).all()
  assert losses[-1] < 0.2 * losses[0], losses


def test_weight_decay_matches_learned_optimization_wrapper():
  """weight_decay adds wd*p to the gradient and wd*sum(p**2) to the loss, as LO's prefab."""
  arch, theta = velo.load_checkpoint(DATA / "velo_tiny_params")
  wd = 0.1
  params = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.full((4,), 0.5)}
  grads = jax.tree.map(lambda p: 0.1 * jnp.cos(p), params)
  tx_wd = arch.as_optax(theta, num_steps=10, weight_decay=wd)
  tx = arch.as_optax(theta, num_steps=10)
  l2 = sum(jnp.sum(p * p) for p in jax.tree.leaves(params))
  s_wd, s = tx_wd.init(params), tx.init(params)
  for _ in range(3):
    u_wd, s_wd = tx_wd.update(grads, s_wd, params, value=2.0)
    u, s = tx.update(jax.tree.map(lambda g, p: g + wd * p, grads, params), s, params,
                     value=2.0 + wd * l2)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9), u_wd, u)
  assert not np.allclose(u_wd["w"], tx.update(grads, tx.init(params), params, value=2.0)[0]["w"])
  with pytest.raises(LearnedOptimizerError, match="weight_decay"):
    arch.as_optax(theta, num_steps=10, weight_decay=-1.0)


def test_dtypes_scalars_and_past_the_horizon():
  arch, theta = velo.load_checkpoint(DATA / "velo_tiny_params")
  tx = arch.as_optax(theta, num_steps=2)
  params = {"s": jnp.float32(0.3), "v": jnp.ones((5,), jnp.bfloat16),
            "k": jnp.ones((2, 3, 4), jnp.float32)}
  state = tx.init(params)
  update = jax.jit(tx.update)
  for _ in range(5):  # 2.5x num_steps: the training fraction goes past 1
    updates, state = update(params, state, params, value=jnp.float32(1.0))
    params = optax.apply_updates(params, updates)
  assert jax.tree.map(lambda u: u.dtype, updates) == jax.tree.map(lambda p: p.dtype, params)
  assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))
  assert update._cache_size() == 1  # no recompilation


def test_needs_value_and_params_not_a_key():
  arch, theta = velo.load_checkpoint(DATA / "velo_tiny_params")
  tx = arch.as_optax(theta, num_steps=5)
  params = {"w": jnp.ones((2, 2))}
  state = tx.init(params)
  with pytest.raises(LearnedOptimizerError, match="value=loss"):
    tx.update(params, state, params)
  with pytest.raises(LearnedOptimizerError, match="parameters"):
    tx.update(params, state, None, value=1.0)
  with pytest.raises(LearnedOptimizerError, match="num_steps"):
    arch.as_optax(theta, num_steps=0)
