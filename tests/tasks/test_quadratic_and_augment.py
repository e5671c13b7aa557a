"""The quadratic's closed form, and the augmentation wrappers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tasks


def test_quadratic_optimum_is_exact():
  task = tasks.build_task("quadratic", tasks.QuadraticSpec(dim=6, conditioning=100.0, noise=0.5))
  batch = task.sample_batch(jax.random.key(0))
  opt = task.optimum()
  assert float(task.loss(opt, None, batch)) == pytest.approx(float(task.optimal_loss()), abs=1e-5)
  mean_grad = jax.grad(lambda p: task.loss(p, None, {"eps": jnp.zeros(6)}))(opt)
  np.testing.assert_allclose(mean_grad["x"], 0.0, atol=1e-4)
  # Noise-free gradient descent with step 1/L converges to the optimum.
  det = tasks.build_task("quadratic", tasks.QuadraticSpec(dim=6, conditioning=10.0))
  params = det.init(jax.random.key(1))
  step = jax.jit(lambda p: jax.tree.map(
      lambda x, g: x - g / 10.0, p, jax.grad(det.loss)(p, None, {"eps": jnp.zeros(6)})))
  for _ in range(300):
    params = step(params)
  np.testing.assert_allclose(params["x"], det.optimum()["x"], atol=1e-3)
  # The reference is the expected loss at init: the normalised loss starts near 1.
  mean_init_loss = jax.jit(lambda t, keys: jnp.mean(jax.vmap(
      lambda k: t.loss(t.init(k), None, {"eps": jnp.zeros(6)}))(keys)))
  mean = mean_init_loss(det, jax.random.split(jax.random.key(2), 2000))
  assert float(det.normalizer(mean)) == pytest.approx(1.0, rel=0.1)


def test_ill_conditioned_family_keeps_its_ranges_and_the_reported_quadratics_outside():
  """quadratic_ill trains recipes on slow quadratics; heldout's must stay outside its ranges."""
  from meta_train.evaluation import suites  # pylint: disable=g-import-not-at-top
  family = tasks.get_family("quadratic_ill")
  specs = [family.sample(jax.random.key(i)) for i in range(200)]
  assert all(type(s) is tasks.IllQuadraticSpec for s in specs)
  assert {s.dim for s in specs} == {32, 64}
  assert all(1e2 <= s.conditioning <= 3e3 and 1e-2 <= s.noise <= 0.3 for s in specs)
  held = [spec for fam, spec in suites.load_suite("heldout").tasks if fam == "quadratic"]
  assert held and all(s.dim > 64 and s.conditioning > 3e3 for s in held)
  task = family.build(specs[0])
  assert task.name == f"quadratic_ill/d{specs[0].dim}"
  with pytest.raises(tasks.TaskError, match="bad quadratic_ill spec: expected a IllQuadraticSpec"):
    family.build(tasks.QuadraticSpec(dim=4))


def test_reparameterisation_keeps_the_loss():
  task = tasks.build_task("image_mlp")
  wrapped = tasks.augment(task, jax.random.key(0))
  assert isinstance(wrapped, tasks.ReparameterizedTask)

  @jax.jit  # one compilation instead of hundreds of eager flax ops
  def run(wrapped, key):
    k1, k2 = jax.random.split(key)
    params = wrapped.init(k1)
    batch = wrapped.sample_batch(k2)
    inner = wrapped.to_inner(params)
    return (params, inner, wrapped.inner.init(k1), wrapped.loss(params, None, batch),
            wrapped.inner.loss(inner, None, batch), wrapped.predict(params, batch)[0],
            wrapped.inner.predict(inner, batch)[0])

  params, inner, inner_init, loss, inner_loss, logits, inner_logits = run(
      wrapped, jax.random.key(1))
  np.testing.assert_allclose(loss, inner_loss, rtol=1e-5)
  # predict sees the represented model too: the stored parameters are mapped back first.
  np.testing.assert_allclose(logits, inner_logits, rtol=1e-4, atol=1e-5)
  for a, b in zip(jax.tree.leaves(inner), jax.tree.leaves(inner_init)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  ratios = [float(jnp.linalg.norm(p) / jnp.linalg.norm(q))
            for p, q in zip(jax.tree.leaves(params), jax.tree.leaves(inner)) if jnp.any(q != 0)]
  assert max(ratios) / min(ratios) > 1.5  # really different per-tensor scales
  # Wrapped tasks stack and vmap across seeds.
  other = tasks.augment(task, jax.random.key(5))
  stacked = tasks.stack_tasks([wrapped, other])
  out = jax.jit(jax.vmap(lambda t, k: run(t, k)[3]))(
      stacked, jax.random.split(jax.random.key(0), 2))
  assert out.shape == (2,) and jnp.all(jnp.isfinite(out))


def test_loss_scaling_and_label_noise():
  task = tasks.build_task("image_mlp")
  wrapped = tasks.augment(task, jax.random.key(0), reparam=False, loss_scale_range=(1e-3, 1e3),
                          label_noise=0.5)

  @jax.jit
  def normalised(wrapped, key):
    params = wrapped.init(key)
    batch = wrapped.sample_batch(key, "eval")
    return (wrapped.normalizer(wrapped.loss(params, None, batch)),
            task.normalizer(task.loss(params, None, batch)))

  np.testing.assert_allclose(*normalised(wrapped, jax.random.key(1)), rtol=1e-5)
  noisy = wrapped.sample_batch(jax.random.key(3), "train")["label"]
  clean = task.sample_batch(jax.random.split(jax.random.key(3), 3)[0], "train")["label"]
  assert 0 < int(jnp.sum(noisy != clean)) < noisy.shape[0]
  with pytest.raises(tasks.TaskError, match="label noise"):
    tasks.augment(tasks.build_task("quadratic"), jax.random.key(0), label_noise=0.1)
