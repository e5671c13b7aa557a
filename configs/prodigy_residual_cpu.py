"""prodigy_residual_cpu: an `mlp` rule learned as a residual on Prodigy's update, by noise-reuse ES.

Command:  python -m meta_train --config configs/prodigy_residual_cpu.py --workdir runs/prodigy_residual_cpu
Hardware: 2 CPU cores. Runtime: ~1.2 s per outer step once compiled, about
20 minutes for the 1,000 outer steps plus validation and the final table
(docs/pretrained.md has the measured times). It checkpoints every 250 outer
steps, and the same command resumes a killed or SIGTERM'd run.
This config makes the shipped `mlp-prodigy-cpu-v2` (its export/best, outer
step 750; the run was made before commit 27693b7 refactored the Prodigy code
path, so a re-run may differ from the file in the last float bits).
What it does: adaptive_cpu's recipe (nres, 4 pairs, truncation 25, horizons
100-1000, 8 groups of the default distribution reparameterised per tensor in
[0.1, 10], validation on 6 tasks disjoint from training and from `heldout`)
with two changes, each an issue-12 lever:
- `step_scale="prodigy"` (learned_opt/step_scale.py): the step is Prodigy's
  own update plus the MLP's direction, times exp of its magnitude, so the
  untrained rule *is* optax.contrib.prodigy and meta-training starts from the
  LR-free baseline rather than below it; the learned schedule stays on;
- Celo2's outer LR (5e-5; at 3e-4, `--config.learning_rate=3e-4`, every
  evaluation was worse than the init) and VeLO's sign shaping of each
  antithetic difference, which the adaptive_cpu run found steadier;
- 1,000 outer steps: the validation score was best at step 750 and worse at
  1,000 (docs/pretrained.md).
Expected result (measured, docs/pretrained.md): export/best at step 750,
validation mean log ratio -0.024 (3 of 6 wins); on `heldout` 4 of 6 wins at
a median speedup of 0.84x against tuned Adam at 500 steps, 1 of 6 at 0.46x at
2,000.
`:tiny` runs a seconds-long version for tests.
"""

from meta_train import config as config_lib


def get_config(arg=None):
  c = config_lib.load_beside(__file__, "adaptive_cpu", arg)
  c.arch_hparams.step_scale = "prodigy"
  c.learning_rate = 5e-5
  c.nres.shaping = "sign"
  if arg != "tiny":
    c.outer_steps = 1000
  return c
