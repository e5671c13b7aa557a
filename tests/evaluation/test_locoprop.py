"""LocoProp (meta_train/evaluation/locoprop.py): its local problems, targets and baseline.

The local problem of a linear layer with squared loss has a closed form, and
the first inner gradient step must be BackProp's; both pin the targets and the
losses' scaling, which a wrong sign, a missing 1/2 or a per-batch (instead of
per-example) target would break.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tasks
from meta_train.evaluation import baselines, locoprop
from meta_train.evaluation.base import EvalError, NotApplicable, Setting
from tasks import dense

SETTING = Setting(num_steps=40, num_points=8, num_evals=2, snapshot_cycles=2).check()


def _example(family):
  fam = tasks.get_family(family)
  return fam.build(fam.example_spec())


def _layer_problem(seed, n=16, d_in=5, d_out=3):
  ks = jax.random.split(jax.random.key(seed), 5)
  a = jax.random.normal(ks[0], (n, d_in))
  target = jax.random.normal(ks[1], (n, d_out))
  p0 = {"kernel": jax.random.normal(ks[2], (d_in, d_out)), "bias": jax.random.normal(ks[3], (d_out,))}
  p = jax.tree.map(lambda u: u + 0.3, p0)  # a point away from p0, where the proximity pulls
  return a, target, p0, p


def _augmented(a, p):
  """Inputs with a column of ones, and the kernel with the bias as its last row (float64)."""
  a1 = np.concatenate([np.asarray(a, np.float64), np.ones((a.shape[0], 1))], 1)
  theta = np.concatenate([np.asarray(p["kernel"], np.float64),
                          np.asarray(p["bias"], np.float64)[None, :]], 0)
  return a1, theta


def test_inner_loop_reaches_the_closed_form_of_the_linear_squared_problem():
  a, target, p0, _ = _layer_problem(0)
  eta = 0.5
  a1, theta0 = _augmented(a, p0)
  n = a1.shape[0]
  hess = a1.T @ a1 / n + np.eye(a1.shape[1]) / eta
  # argmin 1/2 ||A theta - Y||^2 / N + 1/(2 eta) ||theta - theta0||^2.
  exact = np.linalg.solve(hess, a1.T @ np.asarray(target, np.float64) / n + theta0 / eta)
  config = locoprop.LocopropConfig(inner_opt="gd", eta=eta, inner_steps=600).check()
  lr = jnp.float32(1.0 / np.linalg.eigvalsh(hess).max())
  p, _ = locoprop.solve_layer(p0, locoprop.inner_init(p0), a, target, lr, kind="linear",
                              config=config)
  _, theta = _augmented(a, p)
  np.testing.assert_allclose(theta, exact, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["linear", "tanh"])
def test_one_inner_gd_step_is_the_hand_computed_step(kind):
  a, target, p0, p = _layer_problem(1)
  eta, lr = 0.7, 0.05
  config = locoprop.LocopropConfig(inner_opt="gd", eta=eta).check()
  new, _ = locoprop.inner_step(p, locoprop.inner_init(p), a, target, p0, jnp.float32(lr),
                               kind=kind, config=config)
  a1, theta = _augmented(a, p)
  _, theta0 = _augmented(a, p0)
  f = (lambda z: z) if kind == "linear" else np.tanh
  residual = f(a1 @ theta) - np.asarray(target, np.float64)
  expected = theta - lr * (a1.T @ residual / a1.shape[0] + (theta - theta0) / eta)
  np.testing.assert_allclose(_augmented(a, new)[1], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", locoprop.MATCHED)
def test_matching_loss_gradient_is_transfer_minus_target(kind):
  z = 2.0 * jax.random.normal(jax.random.key(2), (6, 4))
  target = jax.random.uniform(jax.random.key(3), (6, 4), minval=-0.9, maxval=0.9)
  grad = jax.grad(lambda z: jnp.sum(locoprop.matching_loss(kind, z, target)))(z)
  np.testing.assert_allclose(grad, locoprop.transfer(kind)(z) - target, rtol=1e-5, atol=1e-6)


def test_matched_transfers_are_the_dense_activations():
  z = jnp.linspace(-3.0, 3.0, 13)
  for kind in ("relu", "tanh", "sigmoid", "elu"):
    np.testing.assert_allclose(locoprop.transfer(kind)(z), dense.activation(kind)(z))


def test_local_kinds_match_each_layer_and_the_output_link():
  mlp, ae = _example("image_mlp").dense_structure(), _example("autoencoder").dense_structure()
  assert locoprop.local_kinds(mlp, "m") == ("relu", "softmax")  # softmax-xent's link
  assert locoprop.local_kinds(ae, "m") == ("relu", "linear", "relu", "linear")
  assert locoprop.local_kinds(ae, "s") == ("linear",) * 4
  gelu = mlp._replace(layers=(dense.DenseLayer("Dense_0", "gelu"), mlp.layers[1]))
  assert locoprop.local_kinds(gelu, "m") == ("linear", "softmax")  # no convex integral


def test_trace_is_the_dense_forward_pass():
  task = _example("autoencoder")
  structure = task.dense_structure()
  params = task.init(jax.random.key(0))
  batch = task.sample_batch(jax.random.key(1))
  tr = locoprop.trace(structure, params, batch)
  out, ref = dense.forward(structure, params, structure.inputs(batch))
  np.testing.assert_allclose(tr.loss, structure.loss_fn(out, structure.targets(batch)), rtol=1e-6)
  for (x, z), a, zz in zip(ref, tr.inputs, tr.pre):
    np.testing.assert_allclose(a, x, rtol=1e-6)
    np.testing.assert_allclose(zz, z, rtol=1e-6)


@pytest.mark.parametrize("family,variant", [("image_mlp", "m"), ("autoencoder", "m"),
                                            ("image_mlp", "s")])
def test_first_inner_gd_step_is_backprop(family, variant):
  # f(z_t) - target = gamma dl/dz for every layer, so step 1 is W_t - lr gamma dL/dW.
  task = _example(family)
  params = task.init(jax.random.key(0))
  batch = task.sample_batch(jax.random.key(1))
  lr, gamma = 0.1, 0.5
  config = locoprop.LocopropConfig(variant=variant, gamma=gamma, inner_opt="gd",
                                   inner_steps=1).check()
  new, _, loss = locoprop.update(params, locoprop.init(params), batch, jnp.float32(lr),
                                 structure=task.dense_structure(), config=config)
  ref_loss, grads = jax.value_and_grad(task.loss)(params, jax.random.key(2), batch)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
  expected = jax.tree.map(lambda p, g: p - lr * gamma * g, params, grads)
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-6), new, expected)


@pytest.mark.parametrize("family", ["image_mlp", "autoencoder"])
def test_baseline_trains_a_dense_task(family):
  assert "locoprop" in baselines.baselines()
  rec = baselines.get_baseline("locoprop").fn(_example(family), 0, SETTING)
  assert len(rec.train) == SETTING.num_points and len(rec.eval) == SETTING.num_evals
  assert np.isfinite(rec.train[-1]) and rec.train[-1] < rec.train[0], rec.train
  assert np.isfinite(rec.eval[-1])
  assert rec.steps == len(baselines.ADAM_GRID) * SETTING.num_steps  # the grid is paid for
  assert rec.extra["inner_lr"] in baselines.ADAM_GRID
  assert rec.train[-1] == pytest.approx(min(rec.extra["trials"].values()))


@pytest.mark.parametrize("family", ["quadratic", "image_conv"])
def test_tasks_without_dense_structure_are_refused(family):
  # NotApplicable (an EvalError): the evaluation records the reason and goes on.
  with pytest.raises(NotApplicable, match=r"dense_structure\(\).*declares none.*image_mlp"):
    baselines.get_baseline("locoprop").fn(_example(family), 0, SETTING)
  assert issubclass(NotApplicable, EvalError)


def test_bad_config_is_refused():
  with pytest.raises(EvalError, match="'m' or 's'"):
    locoprop.LocopropConfig(variant="x").check()
