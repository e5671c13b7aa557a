"""demo: the README's main job. Meta-train a small per-parameter MLP optimizer on CPU.

Command:  python -m meta_train --config configs/demo.py --workdir runs/demo
Hardware: 2 CPU cores. Runtime: about 5-8 minutes (compilation included).
What it does: truncated PES (Vicol et al. 2021) meta-trains the `mlp` learned
optimizer on small image-MLP tasks from the embedded task distribution
(digits and procedural images, no download), with staggered horizons of
50-200 steps. Then it prints a table on 4 held-out tasks: the meta-trained
optimizer vs Adam at LR 1e-3 vs Adam at its best LR from a 7-point sweep, and
saves runs/demo/meta_loss.png and runs/demo/export/{final,best}.
Expected result: the meta-loss falls within the first ~100 outer steps; the
meta-trained optimizer beats Adam at its default LR on most held-out tasks and
comes within reach of the tuned Adam (see docs/meta_train.md for a recorded run).
`python -m meta_train --config configs/demo.py:tiny ...` runs a seconds-long version.
"""

from meta_train import config as config_lib


def get_config(arg=None):
  c = config_lib.default()
  c.seed = 0
  c.outer_steps = 500
  c.arch = "mlp"
  c.arch_hparams = config_lib.ml_collections.ConfigDict({"hidden_size": 16, "hidden_layers": 1})
  c.estimator = "pes"
  c.sigma = 0.01
  c.num_pairs = 1
  c.truncation_length = 10
  c.min_horizon = 50
  c.max_horizon = 200
  c.task_family = "image_mlp"
  c.num_groups = 4
  c.num_slots = 8
  c.pool_size = 4
  c.learning_rate = 3e-3
  c.clip_norm = 1.0
  c.checkpoint_every = 100
  c.eval_every = 100
  c.eval_num_tasks = 2
  c.eval_num_steps = 200
  c.final_table = True
  c.final_table_tasks = 4
  c.final_table_steps = 200
  if arg == "tiny":
    c.outer_steps, c.num_slots, c.truncation_length = 4, 2, 4
    c.min_horizon, c.max_horizon, c.num_groups = 8, 16, 1
    c.eval_every, c.final_table_tasks, c.final_table_steps = 2, 1, 20
    c.adam_sweep = (1e-3, 1e-2)
  return c
