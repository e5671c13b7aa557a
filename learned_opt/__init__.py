"""learned_opt: learned optimizers as Optax transforms.

How the parts fit: ``base.py`` holds the contract (an architecture is a frozen
dataclass with ``init_meta(key) -> theta`` and ``as_optax(theta, num_steps=N)``,
and ``FEATURE_VERSION``, the version of what a theta computes) and
``registry.py`` maps names to architectures. ``features.py`` and ``flat.py``
compute per-parameter and per-tensor features in a flat, segmented layout, so
the compiled update does not grow with the number of tensors. The
architectures are ``mlp.py`` (a per-parameter MLP), ``hyper_lstm.py`` (a
VeLO-style per-tensor LSTM hypernetwork over a bank of per-parameter MLPs),
``adam_hparams.py`` (a learned Adam schedule) and ``velo/`` (the published
VeLO, bit-compatible with learned_optimization's HyperV2). Every architecture
checks its inputs with ``base.py``'s shared checks (params, gradient tree,
loss) and, through ``empty_leaves.py``, never sees zero-size parameter leaves;
each keeps its parameters and state finite through NaN/inf losses and
gradients.

Weights, bottom up: ``serialization.py`` is the ``.lopt`` file format (named
arrays, checksum, atomic write, no pickles); ``theta_file.py`` stores an
architecture and its theta in it (``save``) and restores them, refusing
another feature version; ``pretrained.py`` is the table of shipped weights;
``weights.py`` is the one front door, ``resolve(name_or_path) -> (arch,
theta)``, behind ``load_meta`` and ``load``.
"""

from learned_opt.base import FEATURE_VERSION, LearnedOptimizer, LearnedOptimizerError, Theta
from learned_opt.registry import architectures, get, register
from learned_opt import adam_hparams, hyper_lstm, mlp
from learned_opt import velo
from learned_opt import pretrained
from learned_opt import serialization, theta_file, weights
from learned_opt.theta_file import save
from learned_opt.weights import load, load_meta, resolve

__all__ = [
    "FEATURE_VERSION", "LearnedOptimizer", "LearnedOptimizerError", "Theta", "adam_hparams",
    "architectures", "get", "hyper_lstm", "load", "load_meta", "mlp", "pretrained", "register",
    "resolve", "save", "serialization", "theta_file", "velo", "weights",
]
