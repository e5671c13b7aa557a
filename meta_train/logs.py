"""A run's records: ``metrics.jsonl``, TensorBoard event files and the meta-loss plot.

Process 0 alone writes them. On resume the lines past the restored checkpoint
are dropped (the steps will be recomputed, bit for bit), so ``metrics.jsonl``
never holds a step twice.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import jax
import matplotlib

matplotlib.use("Agg")  # files only: no display on a training machine

import matplotlib.pyplot as plt  # noqa: E402
from tensorboardX import SummaryWriter  # noqa: E402  (event files without TensorFlow)


def read_metrics(path: str) -> list[dict]:
  """The rows of a ``metrics.jsonl``; a line torn by a kill ends the read."""
  if not os.path.exists(path):
    return []
  rows = []
  with open(path) as f:
    for line in f:
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:
        break  # everything after a torn line is recomputed
  return rows


class Logger:
  """metrics.jsonl + TensorBoard (tensorboardX, no TensorFlow); process 0 only."""

  def __init__(self, workdir: str, start_step: int):
    self.active = jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    if not self.active:
      return
    rows = read_metrics(self.path)
    with open(self.path, "w") as f:
      for r in rows:
        if r["step"] <= start_step:
          f.write(json.dumps(r) + "\n")
    self.tb = SummaryWriter(os.path.join(workdir, "tb"))

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    if not self.active:
      return
    row = {"step": step, **{k: float(v) for k, v in metrics.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    for k, v in row.items():
      if k != "step" and math.isfinite(v):
        self.tb.add_scalar(k, v, step)

  def close(self):
    if self.active:
      self.tb.close()


def plot_meta_loss(workdir: str) -> str:
  """``meta_loss.png``: the training meta-loss and the held-out validation losses."""
  rows = read_metrics(os.path.join(workdir, "metrics.jsonl"))
  fig, ax = plt.subplots(figsize=(6, 4))
  ax.plot([r["step"] for r in rows if "meta_loss" in r],
          [r["meta_loss"] for r in rows if "meta_loss" in r], label="meta-loss (train)")
  ev = [r for r in rows if "val_learned" in r]
  if ev:
    ax.plot([r["step"] for r in ev], [r["val_learned"] for r in ev], "o-",
            label="held-out: learned")
    ax.plot([r["step"] for r in ev], [r["val_adam_tuned"] for r in ev], "s--",
            label="held-out: tuned Adam")
  ax.set_xlabel("outer step")
  ax.set_ylabel("normalised (final training) loss")
  ax.legend()
  path = os.path.join(workdir, "meta_loss.png")
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
