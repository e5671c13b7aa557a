"""prodigy_muon_cpu: an `mlp` rule learned as a residual on Prodigy with Muon's direction.

Command:  python -m meta_train --config configs/prodigy_muon_cpu.py --workdir runs/prodigy_muon_cpu
Hardware: 2 CPU cores. Runtime: docs/pretrained.md has the measured wall time
(about 1.5 s per outer step once compiled); it checkpoints every 250 outer
steps, and the same command resumes a killed or SIGTERM'd run.
What it does: configs/prodigy_residual_cpu.py (adaptive_cpu's tasks and NRES,
sign shaping, validation on 6 tasks disjoint from training and from
`heldout`) at outer LR 3e-4, with three changes, each an issue-12 lever
measured in docs/pretrained.md:
- `step_scale="prodigy_muon"` (learned_opt/step_scale.py): Prodigy's d times
  Muon's orthogonalised momentum on every matrix (Prodigy's direction on
  vectors), plus the MLP's residual; untrained it is that LR-free rule;
- `accumulate=8`: each update of theta averages the meta-gradients of all 8
  task groups (one outer step visits one group), so no update follows one
  family's noise;
- `eval_select="val_floored_log_ratio"`: export/best is picked by the mean
  log loss ratio with losses floored at 1% of each task's starting loss, so
  tasks trained to near-zero loss cannot dominate the choice.
Expected result (measured, docs/pretrained.md; SIGTERM'd at step 798):
export/best at step 250, 3 of 6 validation wins at a median 1.23x, better
than its untrained init on both validation suites; on `heldout` 2 of 6 wins
at 500 steps (0.68x) and 1 of 6 at 2,000 (0.38x), behind the shipped
mlp-prodigy-cpu-v2: it does not ship.
`:tiny` runs a seconds-long version for tests.
"""

from meta_train import config as config_lib


def get_config(arg=None):
  c = config_lib.load_beside(__file__, "prodigy_residual_cpu", arg)
  c.arch_hparams.step_scale = "prodigy_muon"
  c.learning_rate = 3e-4
  c.accumulate = 8
  c.eval_select = "val_floored_log_ratio"
  if arg == "tiny":
    c.accumulate = 2  # :tiny runs 3 outer steps: one update
  else:
    c.outer_steps = 1500
  return c
