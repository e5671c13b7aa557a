"""Benchmark: seconds per PES outer step and inner steps per second.

Setup (issue 5): truncated PES, 8 tasks of a small image-MLP family (digits
8x8, one hidden layer of 32), truncation 10, one antithetic pair per task, for
a VeLO-size `velo` learned optimizer and the default `hyper_lstm`, plus the
quadratic family. Reference: learned_optimization's truncated PES took 0.91 s
per outer step with a VeLO-size optimizer here (0.47 s on a quadratic).

  python scripts/bench_meta_train.py [--steps 5] [--archs velo,hyper_lstm] [--devices 4]

``--devices N`` fakes N CPU devices (``jax_num_cpu_devices``) and shards the 8
task slots over them; on a 2-core machine that measures the sharding overhead,
not a speed-up. Results are recorded in docs/benchmarks.md.
"""

import argparse
import os
import platform
import subprocess
import time

import jax
import numpy as np

import learned_opt
import tasks
from meta_train import engine, estimators
from meta_train.base import PESHParams
from learned_opt import xla_cpu  # noqa: E402

xla_cpu.apply()  # before JAX starts its backend (learned_opt/xla_cpu.py)


def bench(arch_name: str, family: str, spec, *, steps: int, num_slots: int = 8,
          noise: str = "normal") -> dict:
  arch = learned_opt.get(arch_name)
  hp = PESHParams(sigma=0.01, num_pairs=1, truncation_length=10, min_horizon=100,
                  max_horizon=1000, noise=noise)
  mesh = engine.make_mesh()
  group = engine.Group(family, spec)
  pool = engine.put_global(jax.tree.map(np.asarray, engine.build_pool(
      group, jax.random.key(0), num_slots=num_slots, pool_size=1)), engine.slot_sharding(mesh))
  tx = engine.outer_optimizer(learning_rate=1e-4, clip_norm=1.0)
  theta = engine.put_global(jax.tree.map(np.asarray, arch.init_meta(jax.random.key(0))),
                            engine.replicated(mesh))
  opt_state = engine.put_global(jax.tree.map(np.asarray, tx.init(theta)), engine.replicated(mesh))
  state = engine.jit_init(arch, "pes", hp, mesh)(jax.random.key_data(jax.random.key(1)), theta,
                                                  pool)
  step = engine.jit_outer_step(arch, "pes", hp, tx, mesh)
  times = []
  for s in range(steps + 1):
    t0 = time.perf_counter()
    theta, opt_state, state, m = step(theta, opt_state, pool, state,
                                      jax.random.key_data(jax.random.key(s)))
    jax.block_until_ready((theta, m))
    times.append(time.perf_counter() - t0)
  dt = float(np.median(times[1:]))
  inner = num_slots * estimators.get_estimator("pes").inner_steps(hp)
  n_theta = sum(int(np.size(x)) for x in jax.tree.leaves(theta))
  return {"arch": arch_name, "task": family, "theta_params": n_theta, "noise": noise,
          "first_step_s": times[0], "s_per_outer_step": dt, "inner_steps_per_s": inner / dt}


def machine() -> str:
  try:
    model = [l.split(":", 1)[1].strip() for l in subprocess.run(
        ["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines()
             if l.startswith("Model name")][0]
  except (OSError, IndexError):
    model = platform.processor()
  return f"{model}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--archs", default="velo,hyper_lstm")
  p.add_argument("--tasks", default="image_mlp,quadratic")
  p.add_argument("--devices", type=int, default=0, help="fake this many CPU devices")
  p.add_argument("--noise", default="normal,rademacher", help="PES noise kinds to time")
  args = p.parse_args()
  if args.devices:
    jax.config.update("jax_num_cpu_devices", args.devices)
  print(f"machine: {machine()}")
  image = tasks.get_family("image_mlp").example_spec()
  quad = tasks.QuadraticSpec(dim=8, conditioning=10.0, noise=0.01)
  print(f"devices: {jax.device_count()} ({jax.devices()[0].platform})")
  print(f"{'arch':<12} {'task':<10} {'noise':<10} {'theta':>9} {'compile+1st (s)':>16} "
        f"{'s/outer step':>13} {'inner steps/s':>14}")
  for name in [a for a in args.archs.split(",") if a in learned_opt.architectures()]:
    for fam, spec in (("image_mlp", image), ("quadratic", quad)):
      if fam not in args.tasks.split(","):
        continue
      for noise in args.noise.split(","):
        r = bench(name, fam, spec, steps=args.steps, noise=noise)
        print(f"{r['arch']:<12} {r['task']:<10} {noise:<10} {r['theta_params']:>9} "
              f"{r['first_step_s']:>16.1f} {r['s_per_outer_step']:>13.3f} "
              f"{r['inner_steps_per_s']:>14.0f}", flush=True)
  print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  main()
