"""``python -m meta_train --config configs/NAME.py --workdir DIR [--config.KEY=VALUE ...]``.

Thin by design (flax examples/mnist/main.py): parse flags, load the config,
call ``meta_train.train.run``.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a configs/NAME.py file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and exports.")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every file at INFO
  from meta_train import config as config_lib, train
  try:
    train.run(_CONFIG.value, _WORKDIR.value)
  except (config_lib.ConfigError, train.WorkdirError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
