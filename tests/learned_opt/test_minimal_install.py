"""learned_opt works on a minimal install: without the `train` extra and without tasks/meta_train.

A fresh interpreter (independent of tests/conftest.py, which imports more)
installs a ``sys.meta_path`` finder that makes every package outside
``pyproject.toml``'s core ``dependencies`` unimportable, then loads the
shipped optimizer and takes one update step.
"""

import os
import subprocess
import sys
import textwrap

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
# The `train` extra, plus the repository's other two packages.
BLOCKED = ("tensorflow_datasets", "matplotlib", "sklearn", "tensorboardX", "orbax", "flax",
           "ml_collections", "tqdm", "tasks", "meta_train")

SCRIPT = textwrap.dedent("""
    import sys

    BLOCKED = {blocked!r}

    class Block:
      def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
          raise ImportError(f"{{name}} is not installed (minimal-install test)")
        return None

    sys.meta_path.insert(0, Block())

    import jax, jax.numpy as jnp, numpy as np
    import learned_opt

    tx = learned_opt.load("mlp-demo-v0", num_steps=10)
    params = {{"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.zeros((3,))}}
    loss_fn = lambda p: jnp.sum(jnp.square(p["w"])) + jnp.sum(jnp.square(p["b"] - 1.0))
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, state = tx.update(grads, tx.init(params), params, value=loss)
    assert all(np.isfinite(np.asarray(u)).all() for u in jax.tree.leaves(updates)), updates
    assert any(np.abs(np.asarray(u)).max() > 0 for u in jax.tree.leaves(updates)), updates
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not loaded, loaded
    print("ok")
""")


def test_load_and_update_without_train_dependencies():
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  out = subprocess.run([sys.executable, "-c", SCRIPT.format(blocked=BLOCKED)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300, check=False)
  assert out.returncode == 0 and out.stdout.strip().endswith("ok"), (
      f"learned_opt needs a package outside its core dependencies:\n{out.stdout}\n{out.stderr}")
