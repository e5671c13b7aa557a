"""``--import MODULE``: plug-ins (task families, estimators, architectures) from outside the repo.

A plug-in is an ordinary Python module that registers what it defines when it
is imported (``@tasks.register_family``, ``meta_train.register_estimator``,
``@learned_opt.register``). Both CLIs import the modules named by ``--import``
before they read a config or a task list, so a family defined in the user's own
file can be meta-trained and evaluated without editing this repository.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType


class PluginError(ImportError):
  """A ``--import`` that cannot be imported; the message names the fix."""


def import_module(name: str) -> ModuleType:
  """Imports ``name``: a dotted module name (found on ``sys.path`` or in the current
  directory) or the path of a ``.py`` file."""
  if name.endswith(".py"):
    return _import_file(name)
  if os.getcwd() not in sys.path:
    # Scripts run as `python scripts/evaluate.py` have scripts/ on sys.path, not the
    # directory the user runs from, where their plug-in usually lives.
    sys.path.append(os.getcwd())
  try:
    return importlib.import_module(name)
  except ModuleNotFoundError as e:
    if e.name != name.split(".")[0] and e.name != name:
      raise  # the plug-in itself imports something missing: show that error as it is
    raise PluginError(
        f"--import {name!r}: no module named {name!r} on sys.path or in {os.getcwd()!r}. "
        "Pass a module name importable from the current directory (e.g. --import my_family "
        "for ./my_family.py) or a path to a .py file.") from None


def _import_file(path: str) -> ModuleType:
  if not os.path.isfile(path):
    raise PluginError(f"--import {path!r}: no such file; pass an existing .py file or a "
                      "module name.")
  name = os.path.splitext(os.path.basename(path))[0]
  if name in sys.modules:
    return sys.modules[name]  # imported already: registering twice would raise
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  spec.loader.exec_module(module)
  return module


def import_all(names: list[str] | tuple[str, ...]) -> list[ModuleType]:
  """Imports every ``--import`` value, in order."""
  return [import_module(n) for n in names]


def scan_argv(argv: list[str]) -> list[str]:
  """The values of ``--import X`` / ``--import=X`` in ``argv`` (before flags are parsed:
  a config file may name what a plug-in registers)."""
  out = []
  for i, arg in enumerate(argv):
    if arg == "--import" and i + 1 < len(argv):
      out.append(argv[i + 1])
    elif arg.startswith("--import="):
      out.append(arg[len("--import="):])
  return out
