"""Benchmark: ms per update step and compile time, every architecture vs optax.adam.

Run:
  python scripts/bench_update.py                 # all architectures, all trees
  python scripts/bench_update.py --arch velo --tree mixed --repeats 50

Trees (``make_tree``): ~1.18M float32 parameters as 8 tensors and as 128, of two
kinds. ``square``: square matrices plus bias vectors of their side (8 tensors:
4 of 543x543 and 4 of 543), almost all parameters factored. ``mixed``: half the
parameters in matrices, half in large 1-D tensors (8 tensors: 4 of 384x384 and
4 of 147456; 128 tensors: 64 of 96x96 and 64 of 9216), so VeLO's unfactored
(1-D) path carries half the work. Timing: the jitted
``update`` + ``apply_updates`` step, after a warm-up call, median of
``--repeats`` calls with ``block_until_ready``. Compile time: ``lower`` +
``compile`` of that step. Wall and process CPU time (all threads) are both
reported: on a shared machine the CPU time is the steadier number. Results go
to stdout as a Markdown table.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import learned_opt
from learned_opt import xla_cpu  # noqa: E402

xla_cpu.apply()  # before JAX starts its backend (learned_opt/xla_cpu.py)

TARGET_PARAMS = 1_179_648


TREES = ("square", "mixed")


def make_tree(num_tensors: int, kind: str = "square") -> dict[str, jax.Array]:
  """~1.18M params in ``num_tensors`` leaves: half matrices, half vectors (see the docstring)."""
  n_mats = num_tensors // 2
  mat_params = TARGET_PARAMS if kind == "square" else TARGET_PARAMS // 2
  side = int(np.sqrt(mat_params / n_mats))
  vec = side if kind == "square" else (TARGET_PARAMS - mat_params) // n_mats
  tree = {}
  key = jax.random.key(0)
  for i in range(n_mats):
    key, k, kv = jax.random.split(key, 3)
    tree[f"layer{i:03d}/w"] = 0.05 * jax.random.normal(k, (side, side), jnp.float32)
    tree[f"layer{i:03d}/b"] = 0.05 * jax.random.normal(kv, (vec,), jnp.float32)
  return tree


def bench(tx: optax.GradientTransformationExtraArgs, params,
          repeats: int) -> tuple[float, float, float, float]:
  """(wall ms/step, CPU ms/step, compile wall s, compile CPU s); CPU time sums all threads."""
  grads = jax.tree.map(lambda p: 0.01 * jnp.ones_like(p), params)
  state = tx.init(params)

  def step(params, state, grads, loss):
    updates, state = tx.update(grads, state, params, value=loss)
    return optax.apply_updates(params, updates), state

  lowered = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, grads, 1.0)
  t0, c0 = time.perf_counter(), time.process_time()
  compiled = lowered.compile()
  compile_s, compile_cpu = time.perf_counter() - t0, time.process_time() - c0
  params = jax.tree.map(jnp.copy, params)
  params, state = jax.block_until_ready(compiled(params, state, grads, 1.0))
  times, cpus = [], []
  for _ in range(repeats):
    t0, c0 = time.perf_counter(), time.process_time()
    params, state = jax.block_until_ready(compiled(params, state, grads, 1.0))
    times.append(time.perf_counter() - t0)
    cpus.append(time.process_time() - c0)
  return (1e3 * statistics.median(times), 1e3 * statistics.median(cpus), compile_s,
          compile_cpu)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--arch", action="append", help="architecture(s); default: all")
  parser.add_argument("--tensors", type=int, action="append", help="default: 8 and 128")
  parser.add_argument("--tree", choices=TREES, action="append", help="default: all")
  parser.add_argument("--repeats", type=int, default=20)
  args = parser.parse_args()
  archs = args.arch or learned_opt.architectures()
  print(f"machine: {platform.processor() or platform.machine()}, {jax.device_count()} "
        f"{jax.default_backend()} device(s), jax {jax.__version__}")
  print("| optimizer | tree | tensors | params | ms/step wall / cpu | x adam wall / cpu | "
        "compile s wall / cpu | state floats/param |")
  print("|---|---|---|---|---|---|---|---|")
  for kind, n_t in itertools.product(args.tree or TREES, args.tensors or [8, 128]):
    params = make_tree(n_t, kind)
    n = sum(p.size for p in jax.tree.leaves(params))
    adam = bench(optax.adam(1e-3), params, args.repeats)
    rows = [("optax.adam", adam, 2.0)]
    for name in archs:
      arch = learned_opt.get(name)
      theta = arch.init_meta(jax.random.key(0))
      rows.append((name, bench(arch.as_optax(theta, num_steps=1000), params, args.repeats),
                   arch.state_floats_per_param(params)))
    for name, (ms, cpu, c, c_cpu), floats in rows:
      print(f"| {name} | {kind} | {n_t} | {n} | {ms:.2f} / {cpu:.2f} | {ms / adam[0]:.1f} / "
            f"{cpu / adam[1]:.1f} | {c:.2f} / {c_cpu:.2f} | {floats:.2f} |", flush=True)


if __name__ == "__main__":
  main()
