"""Train a flax.nnx MLP on scikit-learn's bundled digits with each learned optimizer.

Run:
  python scripts/train_with_learned_opt.py [--steps 300] [--arch mlp --arch hyper_lstm]
  python scripts/train_with_learned_opt.py --theta runs/demo/export/best --steps 500
  python scripts/train_with_learned_opt.py --theta mlp-demo-v0 --hidden 1024,1024 \
      --adam-lr 3e-4 --adam-lr 1e-3 --adam-lr 3e-3   # a 1.1M-parameter scale test

Each architecture (untrained ``init_meta`` theta unless ``--theta`` names a file
from ``learned_opt.save``) trains the same model from the same init through
``nnx.Optimizer(model, tx, wrt=nnx.Param)`` with ``optimizer.update(model,
grads, value=loss)``, next to ``optax.adam`` at each ``--adam-lr`` (default 1e-3).
``--theta`` takes a ``learned_opt.save`` file, a VeLO checkpoint or a pretrained
name; ``--hidden`` sets the MLP's hidden widths. Prints the training-loss
curve and the final test accuracy. Needs no download (digits ship with
scikit-learn). Runtime: under a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import time

import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

import learned_opt
from learned_opt import xla_cpu  # noqa: E402

xla_cpu.apply()  # before JAX starts its backend (learned_opt/xla_cpu.py)


class MLP(nnx.Module):

  def __init__(self, hidden: tuple[int, ...], rngs: nnx.Rngs):
    sizes = (64,) + hidden + (10,)
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])

  def __call__(self, x):
    for layer in self.layers[:-1]:
      x = jax.nn.relu(layer(x))
    return self.layers[-1](x)


def load_data(seed: int = 0):
  x, y = load_digits(return_X_y=True)
  x = (x / 16.0).astype(np.float32)
  idx = np.random.default_rng(seed).permutation(len(x))
  x, y = x[idx], y[idx].astype(np.int32)
  return (x[:1500], y[:1500]), (x[1500:], y[1500:])


def train(tx: optax.GradientTransformation, steps: int, hidden: tuple[int, ...] = (128,),
          batch: int = 128, seed: int = 0):
  """Trains a fresh MLP; returns (per-step training losses, test accuracy, seconds)."""
  (xtr, ytr), (xte, yte) = load_data()
  model = MLP(hidden, nnx.Rngs(seed))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer, x, y):
    def loss_fn(m):
      return optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads, value=loss)
    return loss

  rng = np.random.default_rng(seed)
  losses = []
  t0 = time.perf_counter()
  for _ in range(steps):
    i = rng.integers(0, len(xtr), batch)
    losses.append(float(step(model, optimizer, jnp.asarray(xtr[i]), jnp.asarray(ytr[i]))))
  seconds = time.perf_counter() - t0
  acc = float(jnp.mean(jnp.argmax(model(jnp.asarray(xte)), -1) == jnp.asarray(yte)))
  return np.array(losses), acc, seconds


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--arch", action="append", help="architecture(s); default: all")
  parser.add_argument("--theta", help="a saved theta file or pretrained name instead of init_meta")
  parser.add_argument("--hidden", default="128", help="hidden widths, e.g. 1024,1024")
  parser.add_argument("--adam-lr", type=float, action="append", help="default: 1e-3")
  args = parser.parse_args()
  hidden = tuple(int(h) for h in args.hidden.split(","))

  runs: dict[str, optax.GradientTransformation] = {
      f"optax.adam({lr:g})": optax.adam(lr) for lr in (args.adam_lr or [1e-3])}
  if args.theta:
    runs[args.theta] = learned_opt.load(args.theta, num_steps=args.steps)
  else:
    for name in args.arch or learned_opt.architectures():
      arch = learned_opt.get(name)
      theta = arch.init_meta(jax.random.key(0))
      runs[f"{name} (untrained)"] = arch.as_optax(theta, num_steps=args.steps)

  marks = sorted({0, args.steps // 4, args.steps // 2, 3 * args.steps // 4, args.steps - 1})
  n_params = sum(a * b + b for a, b in zip((64,) + hidden, hidden + (10,)))
  print(f"digits MLP {'-'.join(map(str, (64,) + hidden + (10,)))} ({n_params:,} params), batch "
        f"128, {args.steps} steps; training loss (mean of 10 steps) at steps "
        + ", ".join(map(str, marks)))
  for label, tx in runs.items():
    losses, acc, seconds = train(tx, args.steps, hidden)
    curve = " ".join(f"{losses[max(0, m - 9):m + 1].mean():.3f}" for m in marks)
    print(f"{label:28s} loss {curve} | test acc {acc:.3f} | {seconds:.1f}s", flush=True)


if __name__ == "__main__":
  main()
