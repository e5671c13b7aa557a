"""tiny: a smoke run for tests; a few outer steps in seconds.

Command:  python -m meta_train --config configs/tiny.py --workdir /tmp/lopt_tiny
Hardware: any CPU (1 core is enough). Runtime: ~10-20 s, mostly compilation.
Expected: 6 outer steps of PES on small quadratics with adam_hparams; writes
metrics.jsonl, tb/, meta_loss.png, checkpoints/, export/final and export/best.
The meta-loss is ~0.1-1 and finite; nothing is learned in 6 steps.
"""

from meta_train import config as config_lib


def get_config(arg=None):
  del arg  # already tiny
  c = config_lib.default()
  c.outer_steps = 6
  c.arch = "adam_hparams"
  c.arch_hparams = config_lib.ml_collections.ConfigDict({"hidden_size": 4, "init_lr": 0.01})
  c.estimator = "pes"
  # Tiny for every estimator, so --config.estimator=tes or =es stays a smoke run.
  for sub in (c.pes, c.tes):
    sub.num_pairs = 2
    sub.truncation_length = 5
    sub.min_horizon = 10
    sub.max_horizon = 20
  c.es.num_pairs = 2
  c.es.horizon = 10
  c.task_family = "quadratic"
  c.num_slots = 4
  c.pool_size = 2
  c.learning_rate = 1e-2
  c.checkpoint_every = 2
  c.eval_every = 3
  c.eval_num_tasks = 1
  c.eval_num_steps = 20
  c.final_table_tasks = 1
  c.final_table_steps = 20
  c.progress = False
  return c
