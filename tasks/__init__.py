"""tasks: training problems for meta-training and evaluation.

How the parts fit: ``base.py`` holds the contract (``Task``, with the optional
``predict``/``has_predictions`` and ``layer_order`` that evaluation reads;
``TaskFamily``, ``stack_tasks``, ``normalize_loss``). A family draws plain-data
specs (``family.sample(key)``) and builds tasks from them
(``family.build(spec)``); ``registry.py`` maps family names to families and
specs to/from JSON. ``sampler.py`` holds the named task distributions (family
weights and a FLOPs cap) and ``sample_task``. The tasks share abstract bases
per data kind: ``model.py`` (``ModelTask``: spec, data, flax module, name),
``image.py`` (``ImageTask`` and the classifier) and ``lm.py`` (the language
model). ``data.py`` holds the dataset containers; ``datasets.py`` makes the
embedded datasets (digits, procedural images, stdlib bytes, Markov languages)
and ``tfds_data.py`` reads any TensorFlow Datasets dataset from array_record
files without TensorFlow. ``augment.py`` wraps tasks (``TaskWrapper``:
parameter reparameterisation, loss scaling, label noise). The families, one per
module, are registered below in one place:
"""

from tasks.base import (MAX_NORMALIZED_LOSS, Task, TaskError, TaskFamily, normalize_loss,
                        stack_tasks)
from tasks.registry import (build_task, families, family_of, get_family, register_family,
                            spec_from_json, spec_to_json)
from tasks.sampler import (DISTRIBUTIONS, Distribution, distributions, get_distribution,
                           register_distribution, resample_dynamic, sample_task,
                           static_signature)
from tasks.datasets import ImageData, TextData
from tasks.model import ModelTask

# The built-in families (each module registers itself with @register_family).
from tasks.quadratic import IllQuadraticSpec, QuadraticSpec, QuadraticTask
from tasks.image_mlp import ImageMLPSpec
from tasks.image_conv import ImageConvSpec
from tasks.rnn_lm import RNNLMSpec
from tasks.transformer_lm import TransformerLMSpec
from tasks.autoencoder import AutoencoderSpec
from tasks.vae import VAESpec
from tasks.deep_autoencoder import DeepAutoencoderSpec
from tasks.augment import (LabelNoiseTask, LossScaledTask, ReparameterizedTask, TaskWrapper,
                           augment)
