"""``python -m meta_train --config configs/NAME.py --workdir DIR [--config.KEY=VALUE ...]``.

Thin by design (flax examples/mnist/main.py): parse flags, load the config,
call ``meta_train.train.run``. Bad flags and config values fail here, before
anything compiles, with a message that names the fix.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a configs/NAME.py file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and exports.")


def _parse(argv):
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    msg = str(e).strip("'\"")
    hint = ""
    if isinstance(e, (AttributeError, KeyError)) or "not found" in msg or "has no" in msg:
      try:
        valid = sorted(_CONFIG.value.keys()) if _CONFIG.present else []
      except Exception:  # the config itself failed to load  # pylint: disable=broad-except
        valid = []
      hint = (f" Unknown config key {msg!r}: check its spelling; valid keys are {valid}."
              if valid else " Check the --config.KEY names against the config file.")
    print(f"error: bad flags: {msg}.{hint}\nUsage: python -m meta_train --config "
          "configs/NAME.py --workdir DIR [--config.KEY=VALUE ...]", file=sys.stderr)
    sys.exit(2)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every file at INFO
  from meta_train import config as config_lib, train  # pylint: disable=g-import-not-at-top
  if _CONFIG.value is None or _WORKDIR.value is None:
    print("error: --config and --workdir are required, e.g. python -m meta_train "
          "--config configs/tiny.py --workdir runs/tiny", file=sys.stderr)
    sys.exit(2)
  try:
    train.run(_CONFIG.value, _WORKDIR.value)
  except (config_lib.ConfigError, train.WorkdirError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse)
