"""Learned optimizers shipped with the package (weights are package data).

Each entry names a weights file written by :func:`learned_opt.save`, its
SHA-256 and a free-form ``info`` dict (architecture, training config, compute,
evaluation summary). ``names()`` lists the recommended entry first. When the
behaviour of an entry changes, a new versioned name is added instead.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from typing import Any

from learned_opt import base, serialization

# name -> {"file": ..., "sha256": ..., "info": {...}}; recommended first.
_TABLE: dict[str, dict[str, Any]] = {}


def names() -> list[str]:
  """Names of the shipped optimizers, the recommended one first."""
  return list(_TABLE)


def _entry(name: str) -> dict[str, Any]:
  if name not in _TABLE:
    raise base.LearnedOptimizerError(
        f"unknown pretrained optimizer {name!r}; available: {names()}.")
  return _TABLE[name]


def info(name: str) -> dict[str, Any]:
  """Architecture, hparams, training config, compute, checksum and evaluation summary."""
  e = _entry(name)
  return {"file": e["file"], "sha256": e["sha256"], **e["info"]}


def _weights_dir():
  return importlib.resources.files("learned_opt") / "pretrained_weights"


def load_meta(name: str) -> tuple[base.LearnedOptimizer, base.Theta]:
  """``(arch, theta)`` of a shipped optimizer, after verifying checksum and architecture."""
  e = _entry(name)
  with importlib.resources.as_file(_weights_dir() / e["file"]) as path:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != e["sha256"]:
      raise base.LearnedOptimizerError(
          f"pretrained weights {e['file']} fail their checksum ({digest} != {e['sha256']}); "
          "the installation is corrupt: reinstall learned-opt.")
    arch, theta = serialization.load_meta(path)
  if arch.name != e["info"]["arch"]:
    raise base.LearnedOptimizerError(
        f"pretrained {name!r} should hold architecture {e['info']['arch']!r} but its file holds "
        f"{arch.name!r}; the table and the weights disagree: reinstall learned-opt.")
  return arch, theta
