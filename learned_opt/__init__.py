"""learned_opt: learned optimizers as Optax transforms.

How the parts fit: ``base.py`` holds the contract (an architecture is a frozen
dataclass with ``init_meta(key) -> theta`` and ``as_optax(theta, num_steps=N)``)
and ``registry.py`` maps names to architectures. ``features.py`` and
``flat.py`` compute per-parameter and per-tensor features in a flat, segmented
layout, so the compiled update does not grow with the number of tensors.
The architectures are ``mlp.py`` (a per-parameter MLP), ``hyper_lstm.py``
(a VeLO-style per-tensor LSTM hypernetwork over a bank of per-parameter MLPs),
``adam_hparams.py`` (a learned Adam schedule) and ``velo/`` (the published
VeLO, bit-compatible with learned_optimization's HyperV2). ``serialization.py``
saves and loads theta without pickles.
"""

from learned_opt.base import LearnedOptimizer, LearnedOptimizerError, Theta
from learned_opt.registry import architectures, get, register
from learned_opt import adam_hparams
from learned_opt import pretrained
from learned_opt.serialization import load, load_meta, save
from learned_opt import hyper_lstm, mlp
from learned_opt import velo
