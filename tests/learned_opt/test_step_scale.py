"""The step-scale levers of ``mlp`` (learned_opt/step_scale.py): each trains, and each means
what it says (distance estimate grows to the task's scale; param_rms follows the params)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import learned_opt
from learned_opt import features, step_scale
from learned_opt.base import LearnedOptimizerError


def _train(tx, loss_fn, params, steps):
  def body(carry, _):
    p, s = carry
    loss, g = jax.value_and_grad(loss_fn)(p)
    u, s = tx.update(g, s, p, value=loss)
    return (optax.apply_updates(p, u), s), loss

  (p, s), losses = jax.jit(lambda p: jax.lax.scan(body, (p, tx.init(p)), None,
                                                   length=steps))(params)
  return p, s, np.asarray(losses)


def _small_regression(seed, n, d_in, hidden, target):
  """A one-hidden-layer tanh MLP regressing ``target(x @ w)``: ``(loss_fn, params)``."""
  k = jax.random.split(jax.random.key(seed), 3)
  x = jax.random.normal(k[0], (n, d_in))
  y = target(x @ jnp.linspace(-1.0, 1.0, d_in))[:, None]
  params = {"w1": 0.3 * jax.random.normal(k[1], (d_in, hidden)), "b1": jnp.zeros((hidden,)),
            "w2": 0.2 * jax.random.normal(k[2], (hidden, 1)), "b2": jnp.zeros((1,))}
  loss_fn = lambda p: jnp.mean(jnp.square(
      jnp.tanh(x @ p["w1"] + p["b1"][None]) @ p["w2"] + p["b2"][None] - y))
  return loss_fn, params


@pytest.mark.parametrize("scale,mult", [("fixed", 1e-3), ("param_rms", 1e-2), ("distance", 1.0),
                                        ("prodigy", 1.0), ("prodigy_muon", 1.0)])
@pytest.mark.parametrize("schedule", [False, True])
def test_untrained_rule_trains_a_small_mlp(scale, mult, schedule):
  loss_fn, params = _small_regression(3, 128, 8, 32, jnp.sin)
  arch = learned_opt.get("mlp", step_scale=scale, step_mult=mult, schedule=schedule)
  theta = arch.init_meta(jax.random.key(0))
  assert ("schedule_w" in theta) == schedule
  _, _, losses = _train(arch.as_optax(theta, num_steps=300), loss_fn, params, 300)
  assert np.isfinite(losses).all()
  assert losses[-20:].mean() < 0.6 * losses[:5].mean()


def test_distance_estimate_grows_to_the_distance_and_no_further():
  """On a quadratic whose solution is 3 away per coordinate, d rises from 1e-6 to the order
  of that distance (Prodigy's estimate lower-bounds it for convex losses) and the rule
  converges 100x further than the fixed 1e-3 step in the same steps."""
  target = 3.0 * jnp.ones((64,))
  loss_fn = lambda p: 0.5 * jnp.sum(jnp.square(p["x"] - target))
  arch = learned_opt.get("mlp", step_scale="distance", step_mult=1.0)
  _, state, losses = _train(arch.as_optax(arch.init_meta(jax.random.key(0)), num_steps=400),
                            loss_fn, {"x": jnp.zeros((64,))}, 400)
  d = float(state.extra.d)
  assert 0.1 < d <= 3.0 * 1.05, d
  assert losses[-1] < 1e-2 * losses[0]
  fixed = learned_opt.get("mlp")
  _, _, fixed_losses = _train(fixed.as_optax(fixed.init_meta(jax.random.key(0)), num_steps=400),
                              loss_fn, {"x": jnp.zeros((64,))}, 400)
  assert fixed_losses[-1] > 100 * losses[-1]


def test_distance_estimate_ignores_a_nonfinite_step():
  state = step_scale.init_distance(jnp.zeros((1, 128)))
  state = step_scale.update_distance(state, jnp.ones((1, 128)), -jnp.ones((1, 128)))
  bad = step_scale.update_distance(state, jnp.ones((1, 128)), jnp.full((1, 128), jnp.nan))
  assert np.isfinite(float(bad.d)) and float(bad.d) == float(state.d)


def test_param_rms_step_follows_a_reparameterisation():
  """Params x c with gradients / c (the same linear model) gives steps x c exactly."""
  arch = learned_opt.get("mlp", step_scale="param_rms", step_mult=1e-2)
  tx = arch.as_optax(arch.init_meta(jax.random.key(0)), num_steps=10)
  p = {"w": jax.random.normal(jax.random.key(1), (16, 8))}
  g = {"w": jax.random.normal(jax.random.key(2), (16, 8))}
  c = 10.0
  u1, _ = tx.update(g, tx.init(p), p, value=jnp.float32(1.0))
  pc, gc = jax.tree.map(lambda v: c * v, p), jax.tree.map(lambda v: v / c, g)
  u2, _ = tx.update(gc, tx.init(pc), pc, value=jnp.float32(1.0))
  np.testing.assert_allclose(u2["w"], c * u1["w"], rtol=1e-3, atol=1e-7)  # the features' epsilons


def test_bad_step_scale_names_the_choices():
  with pytest.raises(LearnedOptimizerError, match=r"step_scale='size'.*'distance'"):
    learned_opt.get("mlp", step_scale="size")
  with pytest.raises(LearnedOptimizerError, match=r"decay='linear'.*'cosine'.*'wsd'"):
    learned_opt.get("mlp", decay="linear")
  with pytest.raises(LearnedOptimizerError, match="schedule must be True or False"):
    learned_opt.get("mlp", schedule=1)


def test_saved_levers_round_trip(tmp_path):
  arch = learned_opt.get("mlp", step_scale="distance", step_mult=1.0, schedule=True)
  theta = arch.init_meta(jax.random.key(0))
  path = str(tmp_path / "t.lopt")
  learned_opt.save(path, arch, theta)
  arch2, theta2 = learned_opt.load_meta(path)
  assert arch2 == arch
  np.testing.assert_array_equal(theta2["schedule_w"], theta["schedule_w"])


def _wsd(n):  # optax's spelling of decay="wsd": constant, then linear to 0 over the last 20%
  return optax.join_schedules([optax.constant_schedule(1.0),
                               optax.linear_schedule(1.0, 0.0, n // 5)], [n - n // 5])


@pytest.mark.parametrize("decay", ["none", "cosine", "wsd"])
def test_prodigy_base_at_zero_outputs_is_optax_prodigy(decay):
  """With the MLP's last layer at 0, step_scale="prodigy" takes optax.contrib.prodigy's steps;
  with a decay, those of prodigy with that LR schedule (the decay also weighs d)."""
  loss_fn, params = _small_regression(5, 64, 6, 16, jnp.cos)
  arch = learned_opt.get("mlp", step_scale="prodigy", step_mult=1.0, decay=decay)
  lr = {"none": 1.0, "cosine": optax.cosine_decay_schedule(1.0, 200), "wsd": _wsd(200)}[decay]
  theta = arch.init_meta(jax.random.key(0))
  last = f"w{len(theta['mlp']) // 2 - 1}"
  theta["mlp"][last] = jnp.zeros_like(theta["mlp"][last])
  p_ours, state, ours = _train(arch.as_optax(theta, num_steps=200), loss_fn, params, 200)
  with jax.numpy_dtype_promotion("standard"):  # optax's prodigy raises a float to an int32 count
    p_ref, _, ref = _train(optax.contrib.prodigy(lr), loss_fn, params, 200)
  assert float(state.extra.distance.d) > 100 * step_scale.DISTANCE_INIT  # d did move
  np.testing.assert_allclose(ours, ref, rtol=2e-3)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-5), p_ours, p_ref)
  # and an untrained theta (small random last layer) stays close to it
  theta = arch.init_meta(jax.random.key(0))
  _, _, near = _train(arch.as_optax(theta, num_steps=200), loss_fn, params, 200)
  assert abs(near[-1] - ref[-1]) < 0.2 * ref[0]


def test_prodigy_base_ignores_a_nonfinite_step():
  state = step_scale.init_prodigy(jnp.zeros((1, 128)))
  state, _, _ = step_scale.update_prodigy(state, jnp.ones((1, 128)), -jnp.ones((1, 128)))
  bad, d, direction = step_scale.update_prodigy(state, jnp.ones((1, 128)),
                                                jnp.full((1, 128), jnp.nan))
  assert float(bad.distance.d) == float(state.distance.d) and np.isfinite(float(d))
  assert np.isfinite(np.asarray(direction)).all()


# --- step_scale="prodigy_muon": Muon's orthogonalised direction on matrices.


@pytest.mark.parametrize("shape", [(3, 40, 24), (2, 24, 40), (1, 16, 16)])
def test_newton_schulz_pushes_singular_values_near_one(shape):
  x = jax.random.normal(jax.random.key(0), shape) * jnp.linspace(0.3, 3.0, shape[-1])[None, None]
  o = np.asarray(step_scale.newton_schulz(x))
  sv = np.linalg.svd(o, compute_uv=False)
  assert sv.min() > 0.6 and sv.max() < 1.25, (sv.min(), sv.max())
  # and it keeps the singular vectors: o is close to U V^T
  u, _, vt = np.linalg.svd(np.asarray(x), full_matrices=False)
  cos = np.sum(o * (u @ vt), axis=(-2, -1)) / (np.linalg.norm(o, axis=(-2, -1))
                                                * np.linalg.norm(u @ vt, axis=(-2, -1)))
  assert cos.min() > 0.97
  assert np.all(np.asarray(step_scale.newton_schulz(jnp.zeros(shape))) == 0)


def _zero_last(arch):
  theta = arch.init_meta(jax.random.key(0))
  last = f"w{len(theta['mlp']) // 2 - 1}"
  theta["mlp"][last] = jnp.zeros_like(theta["mlp"][last])
  return theta


def test_prodigy_muon_first_step_is_the_scaled_orthogonalised_gradient():
  """On the first step Prodigy's m is (1 - b1) d g, so the matrix's step is d times
  MUON_RMS sqrt(max(rows, cols)) NS(g); a vector's step is Prodigy's."""
  arch = learned_opt.get("mlp", step_scale="prodigy_muon", step_mult=1.0)
  params = {"w": jnp.zeros((12, 20)), "conv": jnp.zeros((3, 3, 4, 6)), "b": jnp.zeros((20,))}
  k = jax.random.split(jax.random.key(1), 3)
  # Small enough that the rule's gradient clip (features.GRAD_CLIP) does not act.
  grads = {"w": 0.01 * jax.random.normal(k[0], (12, 20)),
           "conv": 0.01 * jax.random.normal(k[1], (3, 3, 4, 6)),
           "b": 0.01 * jax.random.normal(k[2], (20,))}
  tx = arch.as_optax(_zero_last(arch), num_steps=10)
  u, _ = tx.update(grads, tx.init(params), params, value=jnp.float32(1.0))
  d = step_scale.DISTANCE_INIT
  want_w = -d * step_scale.MUON_RMS * np.sqrt(20) * step_scale.newton_schulz(grads["w"])
  np.testing.assert_allclose(u["w"], want_w, rtol=1e-3, atol=1e-12)
  conv = step_scale.newton_schulz(grads["conv"].reshape(36, 6)).reshape(3, 3, 4, 6)
  np.testing.assert_allclose(u["conv"], -d * step_scale.MUON_RMS * 6.0 * conv, rtol=1e-3,
                             atol=1e-12)
  ref = learned_opt.get("mlp", step_scale="prodigy", step_mult=1.0)
  rtx = ref.as_optax(_zero_last(ref), num_steps=10)
  ru, _ = rtx.update(grads, rtx.init(params), params, value=jnp.float32(1.0))
  np.testing.assert_allclose(u["b"], ru["b"], rtol=1e-6)


def test_prodigy_muon_on_vectors_only_is_prodigy():
  loss_fn = lambda p: jnp.sum(jnp.square(p["x"] - 2.0) * jnp.linspace(0.1, 2.0, 32))
  params = {"x": jnp.zeros((32,))}
  out = []
  for scale in ("prodigy", "prodigy_muon"):
    arch = learned_opt.get("mlp", step_scale=scale, step_mult=1.0)
    _, _, losses = _train(arch.as_optax(_zero_last(arch), num_steps=100), loss_fn, params, 100)
    out.append(losses)
  np.testing.assert_array_equal(out[0], out[1])


def test_out_init_zero_starts_at_the_base_rule_and_bad_values_name_the_field():
  arch = learned_opt.get("mlp", step_scale="prodigy_muon", step_mult=1.0, out_init=0.0)
  theta = arch.init_meta(jax.random.key(0))
  jax.tree.map(np.testing.assert_array_equal, theta, _zero_last(arch))
  assert learned_opt.get("mlp").out_init == 0.01  # the shipped thetas' init
  for bad in (-0.1, float("nan"), 2.0):
    with pytest.raises(LearnedOptimizerError, match="out_init"):
      learned_opt.get("mlp", out_init=bad)


@pytest.mark.parametrize("decay,factor", [
    ("cosine", lambda t: 0.5 * (1 + np.cos(np.pi * t))),
    ("wsd", lambda t: min(1.0, (1 - t) / 0.2))])
def test_decay_scales_a_fixed_step_by_the_training_fraction(decay, factor):
  """decay="cosine" multiplies the step by (1 + cos(pi t)) / 2, t = step / num_steps, and
  "wsd" by min(1, (1 - t) / 0.2): same state and gradient, the step at t is that factor
  times the undecayed one."""
  p = {"w": jax.random.normal(jax.random.key(1), (16, 8))}
  g = {"w": jax.random.normal(jax.random.key(2), (16, 8))}
  steps = {}
  for name in ("none", decay):
    arch = learned_opt.get("mlp", decay=name)
    tx = arch.as_optax(arch.init_meta(jax.random.key(0)), num_steps=10)
    state, out = tx.init(p), []
    for _ in range(10):
      u, state = tx.update(g, state, p, value=jnp.float32(1.0))
      out.append(np.asarray(u["w"]))
    steps[name] = out
  for k in range(10):
    np.testing.assert_allclose(steps[decay][k], factor(k / 10) * steps["none"][k], rtol=1e-5,
                               atol=1e-9)
  assert np.abs(steps["none"][0]).max() > 0


# --- learn_direction: where the MLP adds a learned direction ("all", "matrices", "none").


@pytest.mark.parametrize("scale", ["prodigy", "prodigy_muon"])
def test_without_learned_direction_a_zero_gradient_takes_a_zero_step(scale):
  """The additive learned direction is a drift at a minimum (its bias and global-feature terms do
  not vanish with the gradient); where it is off, the step does vanish."""
  params = {"w": jnp.ones((8, 12)), "b": jnp.ones((12,))}
  zeros = jax.tree.map(jnp.zeros_like, params)
  steps = {}
  for where in step_scale.DIRECTIONS:
    arch = learned_opt.get("mlp", step_scale=scale, step_mult=1.0, out_init=0.5,
                           learn_direction=where)
    theta = arch.init_meta(jax.random.key(3))
    theta["mlp"]["b1"] = theta["mlp"]["b1"] + 0.3  # a trained theta's output biases are not 0
    tx = arch.as_optax(theta, num_steps=10)
    u, _ = tx.update(zeros, tx.init(params), params, value=jnp.float32(1.0))
    steps[where] = {k: float(jnp.abs(v).max()) for k, v in u.items()}
  assert steps["all"]["w"] > 0 and steps["all"]["b"] > 0
  assert steps["matrices"]["w"] > 0 and steps["matrices"]["b"] == 0
  assert steps["none"] == {"w": 0.0, "b": 0.0}


def test_without_learned_direction_the_step_keeps_the_base_direction_and_zero_is_the_base():
  """Each element's step is the base's times a positive size; at out_init=0 it is the base rule."""
  loss_fn, params = _small_regression(2, 64, 6, 16, jnp.sin)
  grads = jax.grad(loss_fn)(params)
  base = learned_opt.get("mlp", step_scale="prodigy_muon", step_mult=1.0, decay="cosine")
  btx = base.as_optax(_zero_last(base), num_steps=50)
  ref, _ = btx.update(grads, btx.init(params), params, value=jnp.float32(1.0))
  for where, out_init in [("none", 0.0), ("matrices", 0.0), ("none", 0.5)]:
    arch = learned_opt.get("mlp", step_scale="prodigy_muon", step_mult=1.0, decay="cosine",
                           out_init=out_init, learn_direction=where)
    theta = arch.init_meta(jax.random.key(0))
    assert theta["mlp"]["w1"].shape == (16, 1 if where == "none" else 2)
    tx = arch.as_optax(theta, num_steps=50)
    u, _ = tx.update(grads, tx.init(params), params, value=jnp.float32(1.0))
    if out_init == 0.0:
      jax.tree.map(np.testing.assert_array_equal, u, ref)
      continue
    ratios = np.concatenate([np.asarray(a)[np.asarray(b) != 0] / np.asarray(b)[np.asarray(b) != 0]
                             for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(ref))])
    assert 0 < ratios.min() < ratios.max()  # a learned, positive, per-element size
  assert learned_opt.get("mlp").learn_direction == "all"  # the shipped thetas' rule
  with pytest.raises(LearnedOptimizerError, match="learn_direction.*matrices"):
    learned_opt.get("mlp", learn_direction="vectors")


def test_learn_direction_round_trips_and_a_two_output_theta_is_refused(tmp_path):
  arch = learned_opt.get("mlp", step_scale="prodigy", step_mult=1.0, learn_direction="none")
  theta = arch.init_meta(jax.random.key(0))
  path = str(tmp_path / "t.lopt")
  learned_opt.save(path, arch, theta)
  arch2, theta2 = learned_opt.load_meta(path)
  assert arch2 == arch and theta2["mlp"]["w1"].shape == (16, 1)
  wrong = learned_opt.get("mlp", step_scale="prodigy", step_mult=1.0).init_meta(jax.random.key(0))
  with pytest.raises(LearnedOptimizerError, match=r"expects \(1,\)"):
    arch.as_optax(wrong, num_steps=10)


def test_vector_step_scales_exactly_the_non_matrix_tensors():
  """``vector_step``: at init (0) the rule's steps are the plain rule's; at v, every tensor
  that is not a matrix (biases, a quadratic's vector) steps e^v times as far and matrices
  are unchanged. Checked over 3 steps, so the moments and Prodigy's d see the same path."""
  loss_fn, params = _small_regression(7, 64, 6, 16, jnp.sin)
  plain = learned_opt.get("mlp", step_scale="prodigy_muon", step_mult=1.0, decay="wsd")
  vec = learned_opt.get("mlp", step_scale="prodigy_muon", step_mult=1.0, decay="wsd",
                        vector_step=True)
  theta = plain.init_meta(jax.random.key(0))
  vtheta = vec.init_meta(jax.random.key(0))
  assert set(vtheta) - set(theta) == {"vector_log_lr"} and float(vtheta["vector_log_lr"]) == 0.0

  def steps(arch, th):
    tx, out = arch.as_optax(th, num_steps=10), []
    state = tx.init(params)
    for _ in range(3):  # the same gradients at the same params each step
      loss, g = jax.value_and_grad(loss_fn)(params)
      u, state = tx.update(g, state, params, value=loss)
      out.append(u)
    return out

  for a, b in zip(steps(plain, theta), steps(vec, vtheta)):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-12), a, b)
  v = 0.7
  for a, b in zip(steps(plain, theta), steps(vec, dict(vtheta, vector_log_lr=jnp.float32(v)))):
    for name in a:
      mult = 1.0 if step_scale.is_matrix(a[name].shape) else np.exp(v)  # w2 (16, 1) is not
      np.testing.assert_allclose(b[name], mult * a[name], rtol=1e-5, atol=1e-12)
    assert np.abs(a["b1"]).max() > 0 and np.abs(a["w1"]).max() > 0


def test_vector_step_init_sets_the_start_and_needs_vector_step():
  arch = learned_opt.get("mlp", step_scale="prodigy_muon", step_mult=1.0, vector_step=True,
                         vector_step_init=0.5)
  assert float(arch.init_meta(jax.random.key(0))["vector_log_lr"]) == 0.5
  with pytest.raises(LearnedOptimizerError, match="needs vector_step=True"):
    learned_opt.get("mlp", vector_step_init=0.5)
  with pytest.raises(LearnedOptimizerError, match=r"vector_step_init must be a finite number"):
    learned_opt.get("mlp", vector_step=True, vector_step_init=float("nan"))


@pytest.mark.parametrize("scale", ["prodigy", "prodigy_muon"])
def test_split_d_is_the_rule_on_each_group_alone(scale):
  """``split_d``: on a tree of matrices and other tensors, the matrices' steps are the plain
  rule's on the matrices alone and the rest's the plain rule's on the rest alone (each group
  its own Prodigy d); on a tree with no matrix it is the plain rule exactly. The gradient is
  held fixed while the params move, so the groups are independent and d grows."""
  loss_fn, params = _small_regression(3, 64, 6, 16, jnp.sin)
  g = jax.grad(loss_fn)(params)
  kw = dict(step_scale=scale, step_mult=1.0, decay="wsd", out_init=0.0)
  plain, split = learned_opt.get("mlp", **kw), learned_opt.get("mlp", split_d=True, **kw)
  theta = plain.init_meta(jax.random.key(0))

  def run(arch, names):
    p, gg = {k: params[k] for k in names}, {k: g[k] for k in names}
    tx, out = arch.as_optax(theta, num_steps=40), []
    state, update = tx.init(p), jax.jit(tx.update)
    for _ in range(30):
      u, state = update(gg, state, p, value=jnp.float32(1.0))
      p = optax.apply_updates(p, u)
      out.append(u)
    return out, state

  mats = [k for k in params if step_scale.is_matrix(params[k].shape)]
  rest = [k for k in params if k not in mats]
  assert mats == ["w1"] and rest == ["b1", "w2", "b2"]  # w2 (16, 1) is not a matrix
  both, state = run(split, list(params))
  d = np.asarray(state.extra.distance.d)
  # Both grew; under Muon's direction the matrices' own estimate grows far more slowly
  # (3.2e-6 against the rest's 5.9e-2 here: a low-rank gradient's inner product with an
  # orthogonalised step is small next to its L1 norm).
  assert d.shape == (2,) and (d > 3 * step_scale.DISTANCE_INIT).all() and d[0] != d[1]
  for names in (mats, rest):
    alone, _ = run(plain, names)
    for a, b in zip(alone, both):
      for k in names:
        np.testing.assert_allclose(b[k], a[k], rtol=2e-5, atol=1e-12)
  for a, b in zip(run(plain, rest)[0], run(split, rest)[0]):  # no matrix: exactly the plain rule
    jax.tree.map(np.testing.assert_array_equal, a, b)
  shared, _ = run(plain, list(params))  # and one shared d is a different rule
  assert not np.allclose(shared[-1]["b1"], both[-1]["b1"], rtol=1e-4)


def test_split_d_needs_a_prodigy_scale():
  p = jnp.zeros((1, 128))
  with pytest.raises(ValueError, match="needs the matrix mask"):
    step_scale.update_prodigy(step_scale.init_prodigy(p, split=True), p, p)
  with pytest.raises(ValueError, match="takes none"):
    step_scale.update_prodigy(step_scale.init_prodigy(p), p, p, mask=p)
  with pytest.raises(LearnedOptimizerError, match="split_d=True splits Prodigy's d"):
    learned_opt.get("mlp", step_scale="fixed", split_d=True)
  assert learned_opt.get("mlp", step_scale="prodigy", split_d=True).split_d


def test_time_only_schedule_ignores_the_loss_and_follows_the_time():
  """``schedule_inputs="time"``: ``schedule_w`` covers the time features only, the step does
  not depend on the loss values fed in, and a weight on the training fraction scales it by
  exactly ``exp(w * frac)``; the default schedule does react to the loss."""
  loss_fn, params = _small_regression(5, 64, 6, 16, jnp.sin)
  g = jax.grad(loss_fn)(params)
  kw = dict(step_scale="prodigy", step_mult=1.0, schedule=True, out_init=0.0)
  timed = learned_opt.get("mlp", schedule_inputs="time", **kw)
  both = learned_opt.get("mlp", **kw)
  theta = timed.init_meta(jax.random.key(0))
  assert theta["schedule_w"].shape == (features.NUM_TIME_FEATURES,)

  def steps(arch, th, losses):
    tx = arch.as_optax(th, num_steps=10)
    state, out = tx.init(params), []
    for loss in losses:
      u, state = tx.update(g, state, params, value=jnp.float32(loss))
      out.append(u["w1"])
    return np.stack(out)

  ups, downs = [3.0, 2.0, 1.0, 0.5], [0.5, 1.0, 2.0, 3.0]
  np.testing.assert_array_equal(steps(timed, theta, ups), steps(timed, theta, downs))
  w = theta["schedule_w"].at[0].set(0.7)  # time feature 0 is the training fraction
  frac = np.arange(4) / 10.0
  np.testing.assert_allclose(steps(timed, dict(theta, schedule_w=w), ups),
                             np.exp(0.7 * frac)[:, None, None] * steps(timed, theta, ups),
                             rtol=1e-5)
  full = both.init_meta(jax.random.key(0))
  wl = full["schedule_w"].at[features.NUM_TIME_FEATURES].set(1.0)  # a loss-feature weight
  assert not np.allclose(steps(both, dict(full, schedule_w=wl), ups),
                         steps(both, dict(full, schedule_w=wl), downs))
  with pytest.raises(LearnedOptimizerError, match="schedule_inputs"):
    learned_opt.get("mlp", schedule_inputs="loss")
