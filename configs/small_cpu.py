"""small_cpu: the recipe of the shipped optimizer `mlp-small-cpu-v1`; ~1 hour on 2 CPU cores.

Command:  python -m meta_train --config configs/small_cpu.py --workdir runs/small_cpu
Hardware: 2 CPU cores (more cores or a GPU only make it faster). Runtime: see
docs/pretrained.md for the measured wall time; it checkpoints every 500 outer
steps, and the same command resumes a killed or SIGTERM'd run.
What it does: truncated PES (truncation 25, antithetic, sigma 0.01) meta-trains
the `mlp` learned optimizer (hidden 16, 435 meta-parameters; small enough
that an 8-slot ES gradient is informative) on 16 task groups drawn from the
*default* distribution (image MLPs and CNNs, RNN and transformer LMs,
autoencoders, VAEs, quadratics), every task reparameterised per tensor by
factors in [0.1, 10] (VeLO/Celo augmentation), with log-uniform horizons of
100-2000 inner steps. Every 500 outer steps it scores theta on 8 held-out
tasks of the same distribution (500 steps each) by the mean log ratio of its
loss to Adam(1e-3)'s, and keeps the best as export/best.
Expected result: docs/pretrained.md has the measured curves and the
evaluation of the shipped export on the held-out suite.
`:stage2` continues from stage 1's export/best at a 10x lower outer LR (stage
1's held-out score got worse after ~500 outer steps at 1e-3):
  python -m meta_train --config configs/small_cpu.py:stage2 --workdir runs/small_cpu_stage2
`:tiny` runs a seconds-long version for tests.
"""

from meta_train import config as config_lib


def get_config(arg=None):
  c = config_lib.default()
  c.seed = 0
  c.outer_steps = 10_000
  c.arch = "mlp"
  c.arch_hparams = config_lib.ml_collections.ConfigDict({"hidden_size": 16, "hidden_layers": 1})
  c.estimator = "pes"
  c.pes.sigma = 0.01
  c.pes.num_pairs = 1
  c.pes.truncation_length = 25
  c.pes.min_horizon = 100
  c.pes.max_horizon = 2000
  c.task_distribution = "default"
  c.task_family = ""
  c.augment_reparam = 2.3
  c.num_groups = 16
  c.num_slots = 8
  c.pool_size = 8
  c.learning_rate = 1e-3
  c.clip_norm = 1.0
  c.checkpoint_every = 500
  c.eval_every = 500
  c.eval_num_tasks = 8
  c.eval_num_steps = 500
  c.final_table = True
  c.final_table_tasks = 8
  c.final_table_steps = 500
  if arg == "stage2":
    c.init_from = "runs/small_cpu/export/best"
    c.learning_rate = 1e-4
    c.outer_steps = 6000
  if arg == "tiny":
    c.outer_steps, c.num_groups, c.num_slots, c.pool_size = 3, 1, 2, 1
    c.pes.truncation_length, c.pes.min_horizon, c.pes.max_horizon = 3, 5, 8
    c.eval_every, c.final_table = 0, False
  return c
