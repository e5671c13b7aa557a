"""The dense structure a task may declare: for curvature and local-loss optimizers.

K-FAC (Martens & Grosse 2015) and LocoProp (Amid, Anil & Warmuth 2022) need
more than ``task.loss``: the layers (each a dense map and its elementwise
activation), each layer's inputs and pre-activations, and the output loss as
a named kind (K-FAC registers it with kfac-jax; LocoProp matches each layer's
local loss to its activation). A task that is a plain stack of dense layers
opts in by returning a :class:`DenseStructure` from ``task.dense_structure()``;
the default is ``None``, and a method that needs one refuses the task with a
message that says why.

The contract, tested for every task that declares one
(``tests/tasks/test_dense.py``): ``structure.loss_fn(forward(structure, params,
structure.inputs(batch))[0], structure.targets(batch))`` equals
``task.loss(params, key, batch)``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from tasks import common

# The output losses a structure may name, each a mean over the batch (and, for
# the elementwise ones, over output units, as the tasks' own losses are).
LOSS_KINDS = ("mse", "softmax_xent", "sigmoid_xent")
# Elementwise activations a layer may have ("linear": none).
ACTIVATION_NAMES = ("linear", "relu", "tanh", "sigmoid", *sorted(set(common.ACTIVATIONS) - {
    "relu", "tanh"}))


class DenseLayer(NamedTuple):
  """One dense map ``z = x @ params[name]["kernel"] + params[name]["bias"]``, then ``act(z)``."""

  name: str
  activation: str  # one of ACTIVATION_NAMES


class DenseStructure(NamedTuple):
  """A task's network as dense layers from input to output, and its output loss."""

  layers: tuple[DenseLayer, ...]
  loss: str  # one of LOSS_KINDS, applied to the last layer's activation output
  inputs: Callable[[Any], jax.Array]  # batch -> [N, d_in]
  targets: Callable[[Any], jax.Array]  # batch -> targets of the loss

  def loss_fn(self, outputs: jax.Array, targets: jax.Array) -> jax.Array:
    return output_loss(self.loss, outputs, targets)


def mirrored_autoencoder(names: list[str], depth: int, act: str) -> tuple[DenseLayer, ...]:
  """An autoencoder's layers: ``depth`` encoder layers (the last a linear code), the mirrored
  decoder, then a linear output (reconstructions, or logits for a sigmoid loss)."""
  acts = (act,) * (depth - 1) + ("linear",) + (act,) * (depth - 1) + ("linear",)
  return tuple(DenseLayer(n, a) for n, a in zip(names, acts))


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
  if name == "linear":
    return lambda z: z
  if name == "sigmoid":
    return jax.nn.sigmoid
  if name in common.ACTIVATIONS:
    return common.ACTIVATIONS[name]
  raise ValueError(f"unknown dense activation {name!r}; valid: {list(ACTIVATION_NAMES)}.")


def output_loss(kind: str, outputs: jax.Array, targets: jax.Array) -> jax.Array:
  """The named loss of the network's outputs (logits for the cross-entropies)."""
  if kind == "mse":
    return jnp.mean((outputs - targets) ** 2)
  if kind == "softmax_xent":
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(outputs, targets))
  if kind == "sigmoid_xent":
    return jnp.mean(optax.sigmoid_binary_cross_entropy(outputs, targets))
  raise ValueError(f"unknown output loss {kind!r}; valid: {list(LOSS_KINDS)}.")


def forward(structure: DenseStructure, params: Any,
            x: jax.Array) -> tuple[jax.Array, list[tuple[jax.Array, jax.Array]]]:
  """``(outputs, [(layer input, pre-activation) per layer])`` of the network on ``x``."""
  trace = []
  for layer in structure.layers:
    p = params[layer.name]
    z = x @ p["kernel"] + p["bias"][None, :]  # x is [N, d_in]
    trace.append((x, z))
    x = activation(layer.activation)(z)
  return x, trace
