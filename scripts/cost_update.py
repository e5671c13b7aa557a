"""XLA's own cost model of one update step: flops and bytes per parameter, every architecture
vs optax.adam (issue 15: find where VeLO's time goes before choosing a fix).

Run:
  python scripts/cost_update.py                  # the 8-tensor ~1.18M-parameter tree
  python scripts/cost_update.py --tensors 128 --tree mixed

Load-independent (it reads the compiled program's cost analysis, nothing is timed), so it can
run on a busy machine. "floats accessed" is XLA's "bytes accessed" / 4 / parameters: the
memory traffic of the step, which bounds a memory-bound update's time.
"""

from __future__ import annotations

import argparse
import importlib.util
import os

import jax
import jax.numpy as jnp
import optax

import learned_opt

_SPEC = importlib.util.spec_from_file_location(
    "bench_update", os.path.join(os.path.dirname(__file__), "bench_update.py"))
bench_update = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench_update)  # its make_tree; it also applies the XLA:CPU flags


def cost(tx: optax.GradientTransformationExtraArgs, params) -> tuple[float, float]:
  """(flops, floats accessed) per parameter of the jitted ``update + apply_updates``."""
  n = sum(x.size for x in jax.tree.leaves(params))
  grads = jax.tree.map(lambda p: 0.01 * jnp.ones_like(p), params)
  state = tx.init(params)

  def step(params, state, grads, loss):
    updates, state = tx.update(grads, state, params, value=loss)
    return optax.apply_updates(params, updates), state

  ca = jax.jit(step).lower(params, state, grads, 1.0).compile().cost_analysis()
  ca = ca[0] if isinstance(ca, list) else ca
  return ca.get("flops", 0.0) / n, ca.get("bytes accessed", 0.0) / 4 / n


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--tensors", type=int, default=8)
  p.add_argument("--tree", choices=bench_update.TREES, default="square")
  a = p.parse_args()
  params = bench_update.make_tree(a.tensors, a.tree)
  print(f"| optimizer ({a.tree}, {a.tensors} tensors) | flops / param | floats accessed / param |")
  print("|---|---|---|")
  rows = [("optax.adam", optax.adam(1e-3))]
  for name in learned_opt.architectures():
    arch = learned_opt.get(name)
    rows.append((name, arch.as_optax(arch.init_meta(jax.random.key(0)), num_steps=1000)))
  for name, tx in rows:
    f, b = cost(tx, params)
    print(f"| {name} | {f:.0f} | {b:.1f} |")


if __name__ == "__main__":
  main()
