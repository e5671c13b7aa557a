"""small_cpu: the recipe for the pretrained optimizer; a few hours on CPU.

Command:  python -m meta_train --config configs/small_cpu.py --workdir runs/small_cpu
Hardware: 2-8 CPU cores. Runtime: ~2-4 hours on 2 cores (20k outer steps).
What it does: truncated PES, the `hyper_lstm` optimizer at its default CPU
size (LSTM 64, bank 16), 8 task groups from the "small" distribution (image
MLPs and CNNs, RNN/transformer LMs, autoencoders, quadratics) visited
round-robin, horizons 100-1000, evaluated every 1000 steps on 4 held-out tasks.
Expected result: held-out normalised loss below Adam at LR 1e-3 on most tasks
(learned_optimization's comparable recipe flattened after ~19 minutes; see
/work/shared/notes/measured-anchors.md). Export: runs/small_cpu/export/best.
"""

from meta_train import config as config_lib


def get_config(arg=None):
  c = config_lib.default()
  c.outer_steps = 20_000
  c.arch = "hyper_lstm"
  c.arch_hparams = config_lib.ml_collections.ConfigDict({"lstm_size": 64, "bank_size": 16})
  c.estimator = "pes"
  c.sigma = 0.01
  c.num_pairs = 1
  c.truncation_length = 25
  c.min_horizon = 100
  c.max_horizon = 1000
  c.task_distribution = "small"
  c.task_family = ""
  c.num_groups = 8
  c.num_slots = 8
  c.pool_size = 8
  c.learning_rate = 1e-3
  c.clip_norm = 1.0
  c.checkpoint_every = 500
  c.eval_every = 1000
  c.eval_num_tasks = 4
  c.eval_num_steps = 500
  c.final_table = True
  c.final_table_tasks = 8
  c.final_table_steps = 500
  if arg == "tiny":
    c.outer_steps, c.num_groups, c.num_slots, c.pool_size = 3, 1, 2, 1
    c.truncation_length, c.min_horizon, c.max_horizon = 3, 5, 8
    c.eval_every, c.final_table = 0, False
    c.arch_hparams = config_lib.ml_collections.ConfigDict({"lstm_size": 8, "bank_size": 2})
  return c
