"""Next-token language-model tasks: one Task class shared by rnn_lm and transformer_lm.

A batch is ``{"tokens": int32 [batch, seq_len + 1]}``: random windows of the
split's token stream; the model reads ``tokens[:, :-1]`` and predicts
``tokens[:, 1:]``.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from tasks import common, datasets
from tasks.base import Params, PRNGKey, Split
from tasks.datasets import TextData
from tasks.model import ModelTask


def sample_text_batch(data: TextData, key: PRNGKey, split: Split, batch_size: int,
                      seq_len: int) -> dict[str, jax.Array]:
  """Random windows of ``seq_len + 1`` tokens; pure and jittable."""
  stream = data.train if split == "train" else data.eval
  starts = jax.random.randint(key, (batch_size,), 0, stream.shape[0] - seq_len - 1)
  window = lambda s: jax.lax.dynamic_slice(stream, (s,), (seq_len + 1,))
  return {"tokens": jax.vmap(window)(starts)}


@common.task_dataclass()
class LanguageModelTask(ModelTask):
  """Mean next-token cross-entropy of ``model`` on a token stream.

  ``spec`` has batch_size, seq_len, vocab_size (static) and init_scale;
  ``data`` is a ``TextData``.
  """
  has_predictions = True

  @property
  def vocab_size(self) -> int:
    return self.spec.vocab_size

  @property
  def batch_spec(self) -> dict[str, jax.ShapeDtypeStruct]:
    return {"tokens": jax.ShapeDtypeStruct((self.spec.batch_size, self.spec.seq_len + 1),
                                           jnp.int32)}

  def example_inputs(self) -> tuple[jax.Array, ...]:
    return (jnp.zeros((1, self.spec.seq_len), jnp.int32),)

  def predict(self, params: Params, batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    tokens = batch["tokens"]
    return self.apply(params, tokens[:, :-1]), tokens[:, 1:]

  def loss(self, params: Any, key: PRNGKey, batch: dict[str, jax.Array]) -> jax.Array:
    del key
    return common.softmax_xent(*self.predict(params, batch))

  def sample_batch(self, key: PRNGKey, split: Split = "train") -> dict[str, jax.Array]:
    return sample_text_batch(self.data, key, split, self.spec.batch_size, self.spec.seq_len)

  def reference_loss(self) -> float:
    # The loss of predicting the uniform distribution over the vocabulary.
    return math.log(self.vocab_size)


def check_text_spec(spec: Any, family: str) -> None:
  """Checks the fields both LM families share."""
  common.check(spec.dataset in datasets.TEXT_DATASETS or datasets.is_tfds(spec.dataset), family,
               f"dataset must be one of {list(datasets.TEXT_DATASETS)} or 'tfds:<name>', "
               f"got {spec.dataset!r}")
  common.check(isinstance(spec.vocab_size, int) and 2 <= spec.vocab_size <= 256, family,
               f"vocab_size must be an int in [2, 256], got {spec.vocab_size!r}")
  common.check(spec.dataset == "markov" or spec.vocab_size == 256, family,
               f"byte-level dataset {spec.dataset!r} needs vocab_size=256, "
               f"got {spec.vocab_size!r}")
  for field in ("seq_len", "batch_size"):
    value = getattr(spec, field)
    common.check(isinstance(value, int) and 1 <= value <= 4096, family,
                 f"{field} must be an int in [1, 4096], got {value!r}")
  common.check_float(spec, family, "init_scale", low=0.0, low_open=True)
  common.check_seed(spec, family, "data_seed")
  # markov_transitions would silently clamp a lower temperature to MIN_TEMPERATURE.
  common.check_float(spec, family, "data_temperature", low=datasets.MIN_TEMPERATURE)


def text_data(spec: Any) -> TextData:
  return datasets.text_dataset(spec.dataset, spec.data_seed, vocab_size=spec.vocab_size,
                               temperature=spec.data_temperature)


def sample_text_fields(rng: Any) -> dict[str, Any]:
  """Dataset fields shared by the LM families: half bytes of stdlib, half Markov chains."""
  if rng.random() < 0.5:
    return dict(dataset="stdlib_bytes", vocab_size=256, data_temperature=1.0)
  return dict(dataset="markov", vocab_size=common.choice(rng, (8, 16, 32, 64)),
              data_temperature=common.log_uniform(rng, 0.3, 3.0))
