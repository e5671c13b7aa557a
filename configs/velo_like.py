"""velo_like: the large-scale recipe after VeLO (Metz et al. 2022), for accelerators.

Command: (one phase; pass the phase as the config arg)
  python -m meta_train --config configs/velo_like.py:phase1 --workdir runs/velo/phase1
  (then phase2 .. phase4, each starting from the previous phase's export; see
  docs/meta_train.md for multi-host launch on SLURM and TPU pods)
Hardware: VeLO used ~4000 TPU-months; this recipe is sized for 64-512 GPU/TPU
chips (num_slots divisible by the device count). Runtime: days per phase.
What it does: antithetic full-unroll ES with sign fitness shaping (VeLO's
estimator) on the `velo` architecture (LSTM 512, 256 per-parameter MLPs),
over the default task distribution with big meta-batches; horizons grow from
~200 (phase 1) to 200k inner steps (phase 4), as VeLO's curriculum did.
Expected result: a general-purpose learned optimizer; no number is claimed
here because this recipe has not been run at full scale in this repository.
`:tiny` shrinks everything so one device runs it in seconds (tested).
"""

from meta_train import config as config_lib

# (horizon, num_slots, num_pairs, task_distribution) per phase.
_PHASES = {
    "phase1": (200, 512, 8, "small"),
    "phase2": (2_000, 1024, 8, "default"),
    "phase3": (20_000, 2048, 4, "default"),
    "phase4": (200_000, 4096, 2, "default"),
}


def get_config(arg=None):
  arg = arg or "phase1"
  tiny = arg == "tiny"
  horizon, slots, pairs, dist = _PHASES["phase1" if tiny else arg]
  c = config_lib.default()
  c.outer_steps = 5_000
  c.arch = "velo"
  c.arch_hparams = config_lib.ml_collections.ConfigDict({})
  c.estimator = "es"
  c.es.shaping = "sign"
  c.es.meta_loss = "final"
  c.es.num_eval_batches = 4
  c.es.sigma = 0.01
  c.es.horizon = horizon
  c.es.num_pairs = pairs
  c.num_slots = slots
  c.task_distribution = dist
  c.num_groups = 64
  c.pool_size = 16
  c.learning_rate = 1e-4
  c.clip_norm = 1.0
  c.accumulate = 4
  c.checkpoint_every = 20
  c.keep_checkpoints = 5
  c.eval_every = 100
  c.eval_num_tasks = 16
  c.eval_num_steps = 1000
  if tiny:
    c.outer_steps, c.es.horizon, c.es.num_pairs, c.num_slots = 2, 4, 1, 1
    c.num_groups, c.pool_size, c.accumulate, c.es.num_eval_batches = 1, 1, 2, 1
    c.task_family, c.eval_every = "quadratic", 0
  return c
