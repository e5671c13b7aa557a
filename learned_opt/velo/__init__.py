"""VeLO, the published learned optimizer, loadable from its released checkpoints.

How the parts fit: ``hyper_v2.py`` holds the ``velo`` architecture, which
computes the same update as learned_optimization's ``HyperV2`` (Metz et al.,
2022, "VeLO: Training Versatile Learned Optimizers by Scaling Up");
``checkpoint.py`` reads learned_optimization's msgpack ``params`` files (no
TensorFlow, gin, haiku or flax) into that architecture's theta layout, so it
imports ``hyper_v2.py`` and never the reverse; ``layout.py`` is the flat
blocked layout that keeps the compiled graph independent of the number of
parameter tensors.

Examples:
  >>> import learned_opt
  >>> arch, theta = learned_opt.velo.load_checkpoint("params")  # doctest: +SKIP
  >>> tx = arch.as_optax(theta, num_steps=10_000)  # doctest: +SKIP
"""

from learned_opt.velo.checkpoint import load_checkpoint, read_msgpack_tree, theta_from_haiku
from learned_opt.velo.hyper_v2 import Velo, VeloState, scale_by_velo

__all__ = ["Velo", "VeloState", "load_checkpoint", "read_msgpack_tree", "scale_by_velo",
           "theta_from_haiku"]
