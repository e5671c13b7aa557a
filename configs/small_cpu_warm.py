"""small_cpu_warm: `small_cpu`, warm-started from the shipped `mlp-demo-v0` at a lower outer LR.

Command:  python -m meta_train --config configs/small_cpu_warm.py --workdir runs/small_cpu_warm
Hardware: 2 CPU cores. Runtime: as `small_cpu` (docs/pretrained.md has the measured one).
What it does: the `small_cpu` recipe (default distribution, reparameterisation
augmentation, truncated PES over horizons 100-2000, held-out selection by the
log ratio to Adam) starting from the weights of `mlp-demo-v0` (which saw only
small image MLPs and horizons <= 200) with outer Adam at 3e-4: a curriculum
from the narrow demo distribution to the default one. Compare with `small_cpu`
(fresh init, 1e-3) in docs/pretrained.md.
Expected result: the measured curves and held-out scores are in
docs/pretrained.md ("Attempts").
"""

import pathlib

from meta_train import config as config_lib


def get_config(arg=None):
  path = pathlib.Path(__file__).with_name("small_cpu.py")
  c = config_lib.load_file(f"{path}:{arg}" if arg else str(path))
  c.init_from = "mlp-demo-v0"
  if arg != "tiny":
    c.learning_rate = 3e-4
  return c
