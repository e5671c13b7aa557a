"""The learned-optimizer contract, checked for every registered architecture.

One harness parametrised over ``learned_opt.architectures()`` (as optax's
``contrib/_common_test.py`` is over its optimizers), so a new architecture is
tested automatically.
"""

import chex
import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import learned_opt
from learned_opt.base import LearnedOptimizerError

ARCHS = learned_opt.architectures()
# VeLO at its published size is large for CPU tests; the harness checks the
# contract, so use the smallest sizes each architecture accepts where it matters.
SMALL = {"velo": {"lstm_hidden_size": 8, "param_inits": 4}, "hyper_lstm": {"lstm_size": 16}}


def small(name):
  return learned_opt.get(name, **SMALL.get(name, {}))


def mixed_params():
  """Every rank, a scalar, and a bfloat16 leaf."""
  k = jax.random.split(jax.random.key(1), 5)
  return {
      "scalar": jnp.array(0.3, jnp.float32),
      "vec": 0.1 * jax.random.normal(k[0], (5,), jnp.float32),
      "mat": 0.1 * jax.random.normal(k[1], (4, 6), jnp.float32),
      "t3": 0.1 * jax.random.normal(k[2], (2, 3, 4), jnp.float32),
      "t4": 0.1 * jax.random.normal(k[3], (2, 2, 3, 3), jnp.float32),
      "bf16": (0.1 * jax.random.normal(k[4], (3, 7), jnp.float32)).astype(jnp.bfloat16),
  }


def quad_loss(params):
  return sum(jnp.sum(jnp.square(x.astype(jnp.float32) - 0.5)) for x in jax.tree.leaves(params))


@pytest.fixture(params=ARCHS)
def arch(request):
  return small(request.param)


def test_registry_lists_the_core_architectures():
  assert {"mlp", "hyper_lstm", "adam_hparams"} <= set(ARCHS)


def test_unknown_name_and_hparam_list_valid_ones():
  with pytest.raises(LearnedOptimizerError, match="valid names.*mlp"):
    learned_opt.get("no_such_opt")
  with pytest.raises(LearnedOptimizerError, match="valid hparams.*hidden_size"):
    learned_opt.get("mlp", hidden_sise=3)


def test_standalone_loop_dtypes_and_no_recompile(arch):
  chex.clear_trace_counter()  # the counter is keyed by code, shared across parametrisations
  params = mixed_params()
  theta = arch.init_meta(jax.random.key(0))
  tx = arch.as_optax(theta, num_steps=50)
  state = tx.init(params)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(params, state):
    loss, grads = jax.value_and_grad(quad_loss)(params)
    updates, state = tx.update(grads, state, params, value=loss)
    return optax.apply_updates(params, updates), state, loss

  losses = []
  for _ in range(30):
    params, state, loss = step(params, state)
    losses.append(float(loss))
  for k, v in params.items():
    assert v.dtype == mixed_params()[k].dtype, k
    assert v.shape == mixed_params()[k].shape, k
  assert np.all(np.isfinite(losses))
  assert losses[-1] < losses[0]


def test_state_holds_no_params(arch):
  params = {"w": jnp.full((3, 5), 0.123456, jnp.float32)}
  state = arch.as_optax(arch.init_meta(jax.random.key(0)), num_steps=10).init(params)
  for leaf in jax.tree.leaves(state):
    assert not np.any(np.asarray(leaf, np.float32) == np.float32(0.123456))


def test_inside_chain_with_value(arch):
  # float32 only: optax's own global-norm clip mixes dtypes under strict promotion.
  params = {k: v for k, v in mixed_params().items() if k != "bf16"}
  tx = optax.chain(optax.clip_by_global_norm(1.0),
                   arch.as_optax(arch.init_meta(jax.random.key(0)), num_steps=20))
  state = tx.init(params)
  loss, grads = jax.value_and_grad(quad_loss)(params)
  updates, state = jax.jit(lambda g, s, p, v: tx.update(g, s, p, value=v))(grads, state, params, loss)
  new = optax.apply_updates(params, updates)
  assert quad_loss(new) < loss


def test_flax_nnx_optimizer(arch):
  model = nnx.Linear(4, 3, rngs=nnx.Rngs(0))
  tx = arch.as_optax(arch.init_meta(jax.random.key(0)), num_steps=40)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  x = jax.random.normal(jax.random.key(2), (16, 4))
  y = jax.random.normal(jax.random.key(3), (16, 3))

  @nnx.jit
  def train_step(model, optimizer):
    loss, grads = nnx.value_and_grad(lambda m: jnp.mean(jnp.square(m(x) - y)))(model)
    optimizer.update(model, grads, value=loss)
    return loss

  losses = [float(train_step(model, optimizer)) for _ in range(40)]
  assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_vmap_over_tasks_and_thetas(arch):
  """A batch of tasks (and of perturbed thetas) in one program, as meta-training needs."""
  theta = arch.init_meta(jax.random.key(0))
  thetas = jax.tree.map(lambda t: jnp.stack([t, t * 1.01, t * 0.99]), theta)
  targets = jnp.array([0.5, -1.0, 2.0])

  def run(theta, target):
    tx = arch.as_optax(theta, num_steps=5)
    params = {"w": jnp.zeros((3, 4)), "b": jnp.zeros(())}
    loss_fn = lambda p: jnp.sum(jnp.square(p["w"] - target)) + jnp.square(p["b"] - target)

    def step(carry, _):
      params, state = carry
      loss, g = jax.value_and_grad(loss_fn)(params)
      u, state = tx.update(g, state, params, value=loss)
      return (optax.apply_updates(params, u), state), None

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=5)
    return loss_fn(params)

  batched = jax.jit(jax.vmap(run))(thetas, targets)
  run_one = jax.jit(run)  # one compile for the three single runs (eager dispatch is slow)
  single = jnp.stack([run_one(jax.tree.map(lambda t: t[i], thetas), targets[i]) for i in range(3)])
  np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-6)


def test_errors_name_the_fix(arch):
  theta = arch.init_meta(jax.random.key(0))
  params = {"w": jnp.ones((2, 3))}
  tx = arch.as_optax(theta, num_steps=10)
  state = tx.init(params)
  with pytest.raises(LearnedOptimizerError, match="value=loss"):
    tx.update(params, state, params)
  with pytest.raises(LearnedOptimizerError, match="needs the current parameters"):
    tx.update(params, state, None, value=1.0)
  with pytest.raises(LearnedOptimizerError, match="num_steps"):
    arch.as_optax(theta, num_steps=0)
  with pytest.raises(LearnedOptimizerError, match="non-float"):
    tx.init({"w": jnp.ones((2,)), "idx": jnp.arange(3)})
  other = next(a for a in ARCHS if a != arch.name)
  with pytest.raises(LearnedOptimizerError, match="load_meta"):
    arch.as_optax(small(other).init_meta(jax.random.key(0)), num_steps=10)


def test_save_load_roundtrip_bit_exact(arch, tmp_path):
  theta = arch.init_meta(jax.random.key(7))
  path = tmp_path / "theta.lopt"
  learned_opt.save(path, arch, theta)
  arch2, theta2 = learned_opt.load_meta(path)
  assert arch2 == arch
  chex.assert_trees_all_equal(theta, theta2)
  params = {"w": jnp.ones((3,))}

  @jax.jit
  def first_update(theta):
    tx = arch2.as_optax(theta, num_steps=5)
    return tx.update(params, tx.init(params), params, value=1.0)[0]

  chex.assert_trees_all_equal(first_update(theta2), first_update(theta))
  tx = learned_opt.load(path, num_steps=5)  # the one-call path gives a working transform
  assert jax.tree.structure(tx.init(params)) == jax.tree.structure(
      arch.as_optax(theta, num_steps=5).init(params))


def test_corrupt_truncated_and_mismatched_files(arch, tmp_path):
  theta = arch.init_meta(jax.random.key(7))
  path = tmp_path / "theta.lopt"
  learned_opt.save(path, arch, theta)
  data = path.read_bytes()
  (tmp_path / "trunc").write_bytes(data[: len(data) // 2])
  with pytest.raises(LearnedOptimizerError, match="truncated or corrupt"):
    learned_opt.load_meta(tmp_path / "trunc")
  (tmp_path / "junk").write_bytes(b"hello world, not a theta")
  with pytest.raises(LearnedOptimizerError, match="unrecognised header"):
    learned_opt.load_meta(tmp_path / "junk")
  with pytest.raises(LearnedOptimizerError, match="no such file"):
    learned_opt.load_meta(tmp_path / "missing")


def test_checksum_detects_modified_arrays(tmp_path):
  import json  # pylint: disable=g-import-not-at-top
  arch = learned_opt.get("adam_hparams")
  path = tmp_path / "theta.lopt"
  learned_opt.save(path, arch, arch.init_meta(jax.random.key(0)))
  with np.load(path) as z:
    arrays = {k: z[k] for k in z.files}
  arrays["leaf0"] = arrays["leaf0"].copy()
  arrays["leaf0"][0] ^= 1  # flip one bit of one weight
  with open(path, "wb") as f:  # a file handle: np.savez would append ".npz" to a name
    np.savez(f, **arrays)
  with pytest.raises(LearnedOptimizerError, match="checksum"):
    learned_opt.load_meta(path)
  # A file whose architecture does not match its arrays is refused too.
  meta = json.loads(bytes(arrays["meta"]).decode())
  meta["hparams"]["hidden_size"] = 3
  arrays["leaf0"][0] ^= 1
  arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
  with open(path, "wb") as f:
    np.savez(f, **arrays)
  with pytest.raises(LearnedOptimizerError, match="expects"):
    learned_opt.load_meta(path)


def test_untrained_theta_trains_small_mlp(arch):
  """Every architecture's init already trains a small MLP stably (the documented init)."""
  k = jax.random.split(jax.random.key(3), 3)
  x = jax.random.normal(k[0], (128, 8))
  y = jnp.sin(x @ jnp.linspace(-1.0, 1.0, 8))[:, None]
  params = {"w1": 0.3 * jax.random.normal(k[1], (8, 32)), "b1": jnp.zeros((32,)),
            "w2": 0.2 * jax.random.normal(k[2], (32, 1)), "b2": jnp.zeros((1,))}
  loss_fn = lambda p: jnp.mean(jnp.square(jnp.tanh(x @ p["w1"] + p["b1"][None]) @ p["w2"] + p["b2"][None] - y))
  tx = arch.as_optax(arch.init_meta(jax.random.key(0)), num_steps=200)

  def body(carry, _):
    p, s = carry
    loss, g = jax.value_and_grad(loss_fn)(p)
    u, s = tx.update(g, s, p, value=loss)
    return (optax.apply_updates(p, u), s), loss

  _, losses = jax.jit(lambda p: jax.lax.scan(body, (p, tx.init(p)), None, length=200))(params)
  losses = np.asarray(losses)
  assert np.isfinite(losses).all()
  assert losses[-20:].mean() < 0.6 * losses[:5].mean()


def test_traced_num_steps_under_vmap(arch):
  """Meta-training vmaps over runs of different lengths: num_steps may be a traced int."""
  theta = arch.init_meta(jax.random.key(0))
  params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)}

  def first_update(n):
    tx = arch.as_optax(theta, num_steps=n)
    updates, _ = tx.update(params, tx.init(params), params, value=1.0)
    return updates["w"]

  batched = jax.jit(jax.vmap(first_update))(jnp.array([10, 1000], jnp.int32))
  single = jax.jit(first_update, static_argnums=0)  # a Python int, as users pass it
  np.testing.assert_allclose(batched[0], single(10), rtol=1e-5, atol=1e-8)
  np.testing.assert_allclose(batched[1], single(1000), rtol=1e-5, atol=1e-8)
  with pytest.raises(LearnedOptimizerError, match="num_steps"):
    arch.as_optax(theta, num_steps=jnp.int32(0))


@pytest.mark.parametrize("name,bad", [("mlp", {"hidden_size": 0}), ("hyper_lstm", {"bank_size": -1}),
                                      ("adam_hparams", {"init_lr": 0.0}), ("mlp", {"step_mult": "x"})])
def test_bad_hparam_values_are_refused(name, bad):
  with pytest.raises(LearnedOptimizerError, match="must be"):
    learned_opt.get(name, **bad)
