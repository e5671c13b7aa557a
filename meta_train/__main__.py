"""``python -m meta_train --config configs/NAME.py --workdir DIR [--config.KEY=VALUE ...]``.

``--import MODULE`` (repeatable) first imports a plug-in: a task family,
estimator or architecture defined outside the repo (``meta_train/plugins.py``).

Thin by design (flax examples/mnist/main.py): parse flags, load the config,
call ``meta_train.train.run``. Bad flags and config values fail here, before
anything compiles, with a message that names the fix.
"""

import os
import sys

from learned_opt import xla_cpu

xla_cpu.apply(ftz=True)  # before JAX starts its backend (see learned_opt/xla_cpu.py)

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from meta_train import config as config_lib  # noqa: E402
from meta_train import plugins, train  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a configs/NAME.py file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and exports.")
# Read by _parse before the other flags (see plugins.scan_argv); defined so absl accepts it.
flags.DEFINE_multi_string("import", [], "A module or .py file to import first: a task family, "
                          "estimator or architecture defined outside the repo (repeatable).")


def _config_spec(argv) -> str | None:
  """The ``--config`` argument of ``argv`` (``path[:arg]``), None if there is none."""
  spec = None
  for i, arg in enumerate(argv):
    if arg == "--config" and i + 1 < len(argv):
      spec = argv[i + 1]
    elif arg.startswith("--config="):
      spec = arg[len("--config="):]
  return spec


def _root_cause(e: BaseException) -> BaseException:
  while e.__cause__ is not None:
    e = e.__cause__
  return e


def _load_config(argv):
  """``--config``'s ConfigDict; a file that is missing, broken or returns no config exits 2.

  ml_collections loads the file while flags are parsed but raises only when
  the value is read, as a chain of errors whose root says what is wrong.
  """
  c = _CONFIG.value
  if type(c).__name__ == "_ErrorConfig":  # ml_collections' stand-in for a file that failed
    _config_load_failed(argv, object.__getattribute__(c, "_error"))
  if not isinstance(c, config_lib.ml_collections.ConfigDict):
    print(f"error: --config {_config_spec(argv)}: get_config returned a {type(c).__name__}, "
          f"not a ConfigDict. {_CONFIG_USAGE}", file=sys.stderr)
    sys.exit(2)
  return c


_CONFIG_USAGE = "Pass a configs/NAME.py file whose get_config(arg=None) returns a ConfigDict."


def _config_load_failed(argv, e: BaseException):
  path = (_config_spec(argv) or "").partition(":")[0]
  if not os.path.isfile(path):
    print(f"error: --config file {path!r} does not exist; pass the path of a config file, e.g. "
          "--config configs/tiny.py.", file=sys.stderr)
    sys.exit(2)
  root = _root_cause(e)
  where = f" (line {root.lineno})" if isinstance(root, SyntaxError) and root.lineno else ""
  print(f"error: cannot load --config {_config_spec(argv)}{where}: {type(root).__name__}: "
        f"{root}. {_CONFIG_USAGE}", file=sys.stderr)
  sys.exit(2)


def _unknown_key_hint(argv) -> str | None:
  """Names the unknown ``--config.KEY`` in ``argv``, its close matches and the valid keys."""
  spec = _config_spec(argv)
  if spec is None:
    return None
  try:
    c = config_lib.load_file(spec)
  except Exception:  # pylint: disable=broad-except
    return None  # the config file itself is broken: the flags library's message says so
  for arg in argv:
    if arg.startswith("--config."):
      msg = config_lib.unknown_key_message(c, arg[len("--config."):].split("=", 1)[0])
      if msg:
        return msg
  return None


def _parse(argv):
  # Plug-ins first: the config file may name a family or estimator they register.
  try:
    plugins.import_all(plugins.scan_argv(argv[1:]))
  except plugins.PluginError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    msg = _unknown_key_hint(argv) or f"bad flags: {str(e).strip()}"
    print(f"error: {msg}\nUsage: python -m meta_train --config configs/NAME.py --workdir DIR "
          "[--config.KEY=VALUE ...]", file=sys.stderr)
    sys.exit(2)
  except Exception as e:  # pylint: disable=broad-except
    # Anything else was raised by executing the config file itself.
    _config_load_failed(argv, e)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every file at INFO
  if _config_spec(sys.argv) is None or _WORKDIR.value is None:
    print("error: --config and --workdir are required, e.g. python -m meta_train "
          "--config configs/tiny.py --workdir runs/tiny", file=sys.stderr)
    sys.exit(2)
  config = _load_config(sys.argv)
  try:
    train.run(config, _WORKDIR.value)
  except (config_lib.ConfigError, train.WorkdirError, train.DivergedError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse)
