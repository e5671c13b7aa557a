"""pretrained_mlp: the recipe of the shipped `mlp-small-v0` optimizer.

Command:  python -m meta_train --config configs/pretrained_mlp.py --workdir runs/pretrained_mlp
Hardware: 2 CPU cores. Runtime: ~15-25 min (8,000 outer steps).
What it does: the `small_cpu` recipe (truncated PES, truncation 25, 8 task
groups from the "small" distribution, horizons 100-1000, held-out evaluation
every 1000 steps keeping the best theta as export/best) with the `mlp` learned
optimizer (hidden 16, 435 meta-parameters) and an outer LR of 3e-4. Why not
`hyper_lstm`: with 24,561 meta-parameters and this ES budget its meta-loss
rose after ~3,000 steps at LR 1e-3 (see docs/pretrained.md); an ES gradient's
variance grows with the dimension, so the small MLP is the safer CPU choice.
Expected result: see docs/pretrained.md (measured, not hoped for).
"""

import importlib.util
import pathlib

from meta_train import config as config_lib


def _small_cpu():
  path = pathlib.Path(__file__).with_name("small_cpu.py")
  spec = importlib.util.spec_from_file_location("small_cpu_config", path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def get_config(arg=None):
  c = _small_cpu().get_config(arg)
  c.arch = "mlp"
  c.arch_hparams = config_lib.ml_collections.ConfigDict({"hidden_size": 16})
  if arg != "tiny":
    c.outer_steps = 8000
    c.learning_rate = 3e-4
    c.checkpoint_every = 1000
  return c
