"""adaptive_cpu: an `mlp` optimizer whose step adapts to the task, meta-trained by noise-reuse ES.

Command:  python -m meta_train --config configs/adaptive_cpu.py --workdir runs/adaptive_cpu
Hardware: 2 CPU cores. Runtime: docs/pretrained.md has the measured wall time
and where the run stood; it checkpoints every 250 outer steps, and the same
command resumes a killed or SIGTERM'd run.
What it does (issue 12's levers, each a field here):
- the `mlp` rule (hidden 16) with `step_scale="distance"`: its step is
  relative to Prodigy's online estimate of the distance to the solution
  (learned_opt/step_scale.py), so the step grows on tasks that want a large LR;
  and `schedule=True`: a learned global multiplier from the training fraction
  and the loss trend (Celo's step-size controller, linear);
- noise-reuse ES (`nres`, Li et al. 2023): one perturbation per pair for a
  whole episode, 4 antithetic pairs per task, truncation 25, horizons
  log-uniform in 100-1000, staggered starts;
- 8 task groups of the *default* distribution (image MLPs and CNNs, RNN and
  transformer LMs, autoencoders, VAEs, quadratics), every task reparameterised
  per tensor by factors in [0.1, 10];
- outer Adam at 1e-3 with clipping; non-finite meta-gradient entries count as 0;
- selection on the yardstick: every 250 outer steps theta is scored on 6
  validation tasks (drawn from keys disjoint from training; not the
  `heldout` suite, which is only reported) against per-task LR-tuned Adam at
  500 steps, and the best mean log loss ratio is kept as export/best.
Expected result: not yet measured to the end; docs/pretrained.md says where
the run stands and what its export/best scores on the `heldout` suite.
`:tiny` runs a seconds-long version for tests.
"""

from meta_train import config as config_lib


def get_config(arg=None):
  c = config_lib.default()
  c.seed = 0
  c.outer_steps = 4000
  c.arch = "mlp"
  c.arch_hparams = config_lib.ml_collections.ConfigDict(
      {"hidden_size": 16, "hidden_layers": 1, "step_mult": 1.0, "step_scale": "distance",
       "schedule": True})
  c.estimator = "nres"
  c.nres.sigma = 0.01
  c.nres.num_pairs = 4
  c.nres.truncation_length = 25
  c.nres.min_horizon = 100
  c.nres.max_horizon = 1000
  c.task_distribution = "default"
  c.task_family = ""
  c.augment_reparam = 2.3
  c.num_groups = 8
  c.num_slots = 4
  c.pool_size = 8
  c.learning_rate = 1e-3
  c.clip_norm = 1.0
  c.checkpoint_every = 250
  c.eval_every = 250
  c.eval_num_tasks = 6
  c.eval_num_steps = 500
  c.final_table = True
  c.final_table_tasks = 6
  c.final_table_steps = 500
  if arg == "tiny":
    c.outer_steps, c.num_groups, c.num_slots, c.pool_size = 3, 1, 2, 1
    c.nres.num_pairs, c.nres.truncation_length, c.nres.min_horizon, c.nres.max_horizon = 1, 3, 5, 8
    c.eval_every, c.final_table = 0, False
  return c
