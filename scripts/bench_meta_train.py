"""Benchmark: seconds per PES outer step and inner steps per second.

Setup (issue 5): truncated PES, 8 tasks of a small image-MLP family (digits
8x8, one hidden layer of 32), truncation 10, one antithetic pair per task, for
a VeLO-size `velo` learned optimizer and the default `hyper_lstm`, plus the
quadratic family. Reference: learned_optimization's truncated PES took 0.91 s
per outer step with a VeLO-size optimizer here (0.47 s on a quadratic).

  python scripts/bench_meta_train.py [--steps 5] [--archs velo,hyper_lstm] [--devices 4]
  python scripts/bench_meta_train.py --archs velo --tasks image_mlp --noise rademacher \
      --perturbation dense,lowrank --pairs 1,2,4,8     # memory as a function of pairs

``--perturbation`` times each population form (``PESHParams.perturbation``):
dense copies of theta per particle, or implicit / low-rank parts. The XLA
temp column is the compiled outer step's scratch memory
(``memory_analysis().temp_size_in_bytes``); the state column is the estimator's
state (inner trainings, plus PES's ``accum``, a theta per pair; NRES keeps a
key per pair instead).

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
from learned_opt import xla_cpu  # noqa: E402

xla_cpu.apply()  # before JAX starts its backend (learned_opt/xla_cpu.py)


# learned_optimization's truncated PES here, VeLO-size optimizer, same setup
# (docs/benchmarks.md, ../shared/notes/measured-anchors.md): s per outer step.
REFERENCE_S = {"image_mlp": 0.91, "quadratic": 0.47}


def bench(arch_name: str, family: str, spec, *, steps: int, num_slots: int = 8,
          noise: str = "normal", perturbation: str = "dense", rank: int = 1,
          num_pairs: int = 1, estimator: str = "pes") -> dict:
  arch = learned_opt.get(arch_name)
  hp = estimators.get_estimator(estimator).hparams(sigma=0.01, num_pairs=num_pairs, truncation_length=10, min_horizon=100,
                  max_horizon=1000, noise=noise, perturbation=perturbation, rank=rank)
  mesh = engine.make_mesh()
  group = engine.Group(family, spec)
  pool = engine.put_global(jax.tree.map(np.asarray, engine.build_pool(
      group, jax.random.key(0), num_slots=num_slots, pool_size=1)), engine.slot_sharding(mesh))
  tx = engine.outer_optimizer(learning_rate=1e-4, clip_norm=1.0)
  theta = engine.put_global(jax.tree.map(np.asarray, arch.init_meta(jax.random.key(0))),
                            engine.replicated(mesh))
  opt_state = engine.put_global(jax.tree.map(np.asarray, tx.init(theta)), engine.replicated(mesh))
  state = engine.jit_init(arch, estimator, hp, mesh)(jax.random.key_data(jax.random.key(1)), theta,
                                                  pool)
  step = engine.jit_outer_step(arch, estimator, hp, tx, mesh)
  key0 = jax.random.key_data(jax.random.key(0))
  t0 = time.perf_counter()
  mem = step.lower(theta, opt_state, pool, state, key0).compile().memory_analysis()
  compile_s = time.perf_counter() - t0
  times = []
  for s in range(steps + 1):
    t0 = time.perf_counter()
    theta, opt_state, state, m = step(theta, opt_state, pool, state,
                                      jax.random.key_data(jax.random.key(s)))
    jax.block_until_ready((theta, m))
    times.append(time.perf_counter() - t0)
  dt = float(np.median(times[1:]))
  inner = num_slots * estimators.get_estimator(estimator).inner_steps(hp)
  n_theta = sum(int(np.size(x)) for x in jax.tree.leaves(theta))
  state_bytes = sum(x.nbytes for x in jax.tree.leaves(state))
  return {"arch": arch_name, "task": family, "theta_params": n_theta, "noise": noise,
          "compile_s": compile_s, "s_per_outer_step": dt, "inner_steps_per_s": inner / dt,
          "temp_mb": mem.temp_size_in_bytes / 2**20, "state_mb": state_bytes / 2**20}


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
  p.add_argument("--perturbation", default="dense,implicit,lowrank",
                 help="population forms to time (PESHParams.perturbation)")
  p.add_argument("--rank", type=int, default=1, help="rank of the lowrank form")
  p.add_argument("--estimator", default="pes", help="pes, tes or nres (the same unroll; "
                 "nres keeps a key per pair where pes keeps a theta)")
  p.add_argument("--pairs", default="1", help="antithetic pairs per slot, e.g. 1,2,4,8: the "
                 "memory columns then show how the population grows with pairs")
  args = p.parse_args()
  if args.devices:
    jax.config.update("jax_num_cpu_devices", args.devices)
  print(f"machine: {machine()}")
  print(f"estimator: {args.estimator}; jax {jax.__version__}, devices: {jax.device_count()} ({jax.devices()[0].platform})")
  image = tasks.get_family("image_mlp").example_spec()
  quad = tasks.QuadraticSpec(dim=8, conditioning=10.0, noise=0.01)
  print("| arch | task | noise | perturbation | pairs | theta | compile s | s/outer step | "
        "inner steps/s | vs learned_optimization | XLA temp MiB | estimator state MiB |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|")
  for name in [a for a in args.archs.split(",") if a in learned_opt.architectures()]:
    for fam, spec in (("image_mlp", image), ("quadratic", quad)):
      if fam not in args.tasks.split(","):
        continue
      for noise in args.noise.split(","):
        for form in args.perturbation.split(","):
          for pairs in (int(x) for x in args.pairs.split(",")):
            r = bench(name, fam, spec, steps=args.steps, noise=noise, perturbation=form,
                      rank=args.rank, num_pairs=pairs, estimator=args.estimator)
            ref = (REFERENCE_S.get(fam) if pairs == 1 and name == "velo"
                   and args.estimator == "pes" else None)
            vs = f"{ref / r['s_per_outer_step']:.2f}x" if ref else ""
            label = f"lowrank (r={args.rank})" if form == "lowrank" else form
            print(f"| {r['arch']} | {fam} | {noise} | {label} | {pairs} | {r['theta_params']} | "
                  f"{r['compile_s']:.1f} | {r['s_per_outer_step']:.3f} | "
                  f"{r['inner_steps_per_s']:.0f} | {vs} | {r['temp_mb']:.1f} | "
                  f"{r['state_mb']:.1f} |", flush=True)
  print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  main()
