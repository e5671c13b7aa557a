"""The K-FAC baseline (meta_train/evaluation/kfac.py).

Without kfac-jax only the refusals run (the module imports, a run names the
install command, a task without a dense structure is refused); the rest skip.

The preconditioner is checked against dense computations on tiny problems, using
kfac-jax's estimator on the loss the baseline registers, with the exact-GGN
estimation mode so that one batch gives a deterministic estimate (the
optimizer's ``ggn_curvature_prop`` is its unbiased stochastic version):

- the Kronecker factors ``A_l = E[a a^T]`` (layer inputs with a 1 for the bias)
  and ``G_l = E[g g^T]`` (the loss's square-root curvature back-propagated to
  the pre-activations) of a two-layer tanh net with squared loss, against numpy
  from the same batch;
- for one dense layer with squared loss the GGN is the Hessian and is exactly
  Kronecker, so K-FAC's curvature times a vector must equal the Hessian-vector
  product of the task's loss (this checks the loss registration's normalisation);
  its damped inverse times the gradient must equal a dense solve
  ``(H + l I)^-1 g``, and the factored damping the optimizer uses must equal
  ``(A + pi sqrt(l) I)^-1 (x) (G + sqrt(l)/pi I)^-1`` (Martens & Grosse, sec. 6.3).
"""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tasks
from meta_train.evaluation import baselines, kfac, runner
from meta_train.evaluation.base import EvalError, Setting
from tasks import dense

SETTING = Setting(num_steps=40, num_points=40, num_evals=2, snapshot_cycles=2).check()


def _kfac_jax():
  return pytest.importorskip("kfac_jax")


def test_the_module_imports_without_kfac_jax():
  # A None entry in sys.modules makes `import kfac_jax` raise ImportError.
  code = ("import sys; sys.modules['kfac_jax'] = None\n"
          "from meta_train.evaluation import kfac, baselines\n"
          "assert kfac.kfac_jax is None and 'kfac' in baselines.baselines()\n")
  subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_without_kfac_jax_a_run_names_the_install_command(monkeypatch):
  monkeypatch.setattr(kfac, "kfac_jax", None)
  task = tasks.build_task("deep_autoencoder")
  with pytest.raises(EvalError, match=r"pip install -e '\.\[kfac\]'"):
    kfac.kfac_run(task, 0, SETTING)


UNSTRUCTURED = {
    "quadratic": lambda: tasks.build_task("quadratic"),
    "image_conv": lambda: tasks.build_task("image_conv"),
    # A reparameterised task's parameters are not the dense layers' weights.
    "reparameterised_image_mlp": lambda: tasks.augment(
        tasks.build_task("image_mlp"), jax.random.key(0), reparam=True),
}


@pytest.mark.parametrize("name", sorted(UNSTRUCTURED))
def test_a_task_without_a_dense_structure_is_refused_naming_why(name):
  task = UNSTRUCTURED[name]()
  with pytest.raises(EvalError, match="declares no dense structure") as err:
    baselines.get_baseline("kfac").fn(task, 0, SETTING)
  assert "image_mlp, autoencoder, deep_autoencoder" in str(err.value)


@pytest.mark.parametrize("family", tasks.families())
def test_the_refusal_names_exactly_the_families_that_declare_a_structure(family):
  fam = tasks.get_family(family)
  declares = fam.build(fam.example_spec()).dense_structure() is not None
  assert declares == (family in kfac.DENSE_FAMILIES), family


def test_kfac_jax_imports_without_tensorflow():
  _kfac_jax()
  code = ("import sys, kfac_jax\n"
          "from meta_train.evaluation import kfac\n"
          "assert kfac.kfac_jax is not None\n"
          "assert 'tensorflow' not in sys.modules, 'kfac-jax pulled in TensorFlow'\n"
          "assert 'tensorflow_probability.substrates.jax' in sys.modules\n")
  subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


@pytest.mark.parametrize("family", kfac.DENSE_FAMILIES)
def test_the_registered_loss_is_the_task_loss(family):
  kfac_jax = _kfac_jax()
  task = tasks.build_task(family)
  structure = task.dense_structure()
  params = task.init(jax.random.key(0))
  batch = task.sample_batch(jax.random.key(1))
  estimator = kfac_jax.BlockDiagonalCurvature(kfac.registered_loss(structure))
  size = structure.inputs(batch).shape[0]
  with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
    registered = estimator.compute_func_from_registered((params, batch), size)
  np.testing.assert_allclose(registered, task.loss(params, jax.random.key(2), batch), rtol=1e-5)


def _estimate(structure, params, batch):
  """kfac-jax's exact-GGN estimate from one batch (EMA weights 0 and 1: this batch only)."""
  kfac_jax = _kfac_jax()
  estimator = kfac_jax.BlockDiagonalCurvature(kfac.registered_loss(structure),
                                              default_estimation_mode="ggn_exact")
  args, n = (params, batch), batch["x"].shape[0]
  with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
    state = estimator.init(jax.random.key(0), args, exact_powers_to_cache=None,
                           approx_powers_to_cache=None)
    state = estimator.update_curvature_matrix_estimate(
        state, ema_old=0.0, ema_new=1.0, identity_weight=0.0, batch_size=n,
        rng=jax.random.key(1), func_args=args)
  return estimator, state


def _problem(sizes, activations):
  rng = np.random.default_rng(0)
  layers = tuple(dense.DenseLayer(f"Dense_{i}", a) for i, a in enumerate(activations))
  structure = dense.DenseStructure(layers, "mse", inputs=lambda b: b["x"],
                                   targets=lambda b: b["y"])
  params = {l.name: {"kernel": jnp.asarray(rng.normal(size=(a, b)), jnp.float32),
                     "bias": jnp.asarray(rng.normal(size=(b,)), jnp.float32)}
            for l, a, b in zip(layers, sizes[:-1], sizes[1:])}
  batch = {"x": jnp.asarray(rng.normal(size=(8, sizes[0])), jnp.float32),
           "y": jnp.asarray(rng.normal(size=(8, sizes[-1])), jnp.float32)}
  return structure, params, batch


def _with_ones(x):
  return np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)


def test_kronecker_factors_match_numpy():
  structure, params, batch = _problem((3, 4, 2), ("tanh", "linear"))
  _, state = _estimate(structure, params, batch)
  factors = {tuple(f.value.shape[0] for f in s.factors): [np.asarray(f.value) for f in s.factors]
             for s in state.blocks_states}
  x = np.asarray(batch["x"], np.float64)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  h = np.tanh(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])
  n, d_out = x.shape[0], 2
  # mean((out - y)^2) = sum(...) / (n d_out): per example, the output curvature is 2/d_out I,
  # and its square root back-propagated through W_1 and tanh' gives the hidden layer's g.
  w2 = p["Dense_1"]["kernel"]
  g0 = sum(np.outer(dh * w2[:, k], dh * w2[:, k]) for dh in 1.0 - h**2 for k in range(d_out))
  expected = {(4, 4): [_with_ones(x).T @ _with_ones(x) / n, 2.0 / d_out * g0 / n],
              (5, 2): [_with_ones(h).T @ _with_ones(h) / n, 2.0 / d_out * np.eye(d_out)]}
  assert set(factors) == set(expected)
  for shape, (a, g) in expected.items():
    np.testing.assert_allclose(factors[shape][0], a, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(factors[shape][1], g, rtol=1e-4, atol=1e-5)


def _flat(p):
  """One layer's parameters as ``vec([W; b])``, row-major: the order ``np.kron(A, G)`` acts in."""
  layer = p["Dense_0"]
  return np.concatenate([np.asarray(layer["kernel"]), np.asarray(layer["bias"])[None]]).ravel()


def _unflat(v, d_in, d_out):
  m = jnp.asarray(v.reshape(d_in + 1, d_out), jnp.float32)
  return {"Dense_0": {"kernel": m[:-1], "bias": m[-1]}}


def test_the_preconditioner_matches_a_dense_solve():
  d_in, d_out, damping = 3, 2, 0.1
  structure, params, batch = _problem((d_in, d_out), ("linear",))
  estimator, state = _estimate(structure, params, batch)
  loss = lambda v: structure.loss_fn(
      dense.forward(structure, _unflat(v, d_in, d_out), batch["x"])[0], batch["y"])
  theta = jnp.asarray(_flat(params))
  hessian = np.asarray(jax.hessian(loss)(theta), np.float64)
  grad = np.asarray(jax.grad(loss)(theta), np.float64)
  v = np.random.default_rng(1).normal(size=theta.shape)
  kw = dict(use_cached=False, pmap_axis_name=None)
  with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
    curv_v = estimator.multiply(state, _unflat(v, d_in, d_out), identity_weight=0.0,
                                exact_power=True, **kw)
    exact = estimator.multiply_inverse(state, _unflat(grad, d_in, d_out),
                                       identity_weight=damping, exact_power=True, **kw)
    factored = estimator.multiply_inverse(state, _unflat(grad, d_in, d_out),
                                          identity_weight=damping, exact_power=False, **kw)
  np.testing.assert_allclose(_flat(curv_v), hessian @ v, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(_flat(exact), np.linalg.solve(hessian + damping * np.eye(len(v)),
                                                           grad), rtol=1e-4, atol=1e-5)
  a, g = (np.asarray(f.value, np.float64) for f in state.blocks_states[0].factors)
  pi = np.sqrt((np.trace(a) / len(a)) / (np.trace(g) / len(g)))
  damped = np.kron(a + pi * np.sqrt(damping) * np.eye(len(a)),
                   g + np.sqrt(damping) / pi * np.eye(len(g)))
  np.testing.assert_allclose(_flat(factored), np.linalg.solve(damped, grad), rtol=1e-4,
                             atol=1e-5)


def test_kfac_trains_a_deep_autoencoder_below_its_starting_loss():
  _kfac_jax()
  task = tasks.build_task("deep_autoencoder")  # the 8x8 scaled variant
  rec = kfac.kfac_run(task, 0, SETTING)
  assert len(rec.train) == SETTING.num_points and rec.eval_steps == list(SETTING.eval_steps())
  assert rec.train_steps == runner.window_means(np.zeros(SETTING.num_steps),
                                                SETTING.num_points)[1]
  assert np.all(np.isfinite(rec.train)) and np.all(np.isfinite(rec.eval))
  assert np.mean(rec.train[-5:]) < 0.85 * np.mean(rec.train[:5]), rec.train
  assert rec.steps == SETTING.num_steps + kfac.HPARAMS["num_burnin_steps"]
  assert rec.compile_s > 0 and rec.run_s > 0
  # The same initial parameters and first batch as every other method (common random numbers).
  adam = baselines.get_baseline("adam_default").fn(task, 0, SETTING)
  np.testing.assert_allclose(rec.train[0], adam.train[0], rtol=1e-5)
