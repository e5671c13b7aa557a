"""demo: the README's main job. Meta-train a small per-parameter MLP optimizer on CPU.

Command:  python -m meta_train --config configs/demo.py --workdir runs/demo
Hardware: 2 CPU cores. Runtime: measured 8 min 26 s wall, everything included
(compilation, 500 outer steps, 5 validations against tuned Adam, the final
table, plot), on 2 cores of an AMD EPYC with the full test suite running beside
it (load average 2.4-3.5); before validation used tuned Adam the same config
took 2 min 46 s to 4 min 52 s.
What it does: truncated PES (Vicol et al. 2021) meta-trains the `mlp` learned
optimizer (hidden 16) on 4 task groups of small image MLPs from the embedded
task distribution (digits and procedural images, no download), with
log-uniform horizons of 50-200 steps; every 100 outer steps it scores theta on
2 held-out tasks against per-task LR-tuned Adam (meta_train/evaluation, the
benchmark's yardstick) and keeps the best as export/best. It ends by printing
a table on 4 other held-out tasks: the meta-trained optimizer (export/best) vs
Adam at LR 1e-3 vs tuned Adam (best of 14 LRs), and saves
runs/demo/meta_loss.png, final_table.json and export/{final,best}.
Expected result (the recorded run, seed 0; normalised final training loss
after 200 steps, lower is better; export/best from outer step 300):

  task                               meta-trained  Adam 1e-3 tuned Adam tuned LR speedup
  image_mlp/digits8/128x16_relu            0.0158     0.0690     0.0195  7.0e-03    0.78
  image_mlp/shapes8/32x128x16_tanh         0.0882     0.4504     0.0974  7.0e-03    1.18
  image_mlp/prototypes8/64_relu            0.0001     0.0913     0.0003  1.4e-02    2.14
  image_mlp/shapes8/128_swish              0.0038     0.4426     0.0015  2.9e-02    0.88
  meta-trained beats tuned Adam on 3 of 4 tasks; median speedup 1.03x

i.e. on tasks of the family it was meta-trained on; the held-out suite of
docs/eval_report (other families) is harder (README).
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
  c.pes.sigma = 0.01
  c.pes.num_pairs = 1
  c.pes.truncation_length = 10
  c.pes.min_horizon = 50
  c.pes.max_horizon = 200
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
    c.outer_steps, c.num_slots, c.pes.truncation_length = 4, 2, 4
    c.pes.min_horizon, c.pes.max_horizon, c.num_groups = 8, 16, 1
    c.eval_every, c.final_table_tasks, c.final_table_steps = 2, 1, 20
  return c
