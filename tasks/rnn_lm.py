"""Recurrent character/token language models with three really different cells.

``vanilla`` is an Elman cell (``tanh(W x + U h + b)``), ``lstm`` a
Hochreiter-Schmidhuber LSTM with four gates and a cell state, and ``gru`` a
Cho et al. (2014) GRU with reset and update gates and no cell state (flax's
``SimpleCell``, ``LSTMCell`` and ``GRUCell``). learned_optimization's "GRU"
tasks actually build an LSTM; these do not.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from tasks import common
from tasks.base import PRNGKey, TaskFamily
from tasks.lm import LanguageModelTask, check_text_spec, sample_text_fields, text_data
from tasks.registry import register_family

FAMILY = "rnn_lm"
CELLS = {"vanilla": nn.SimpleCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}
# Matrix multiplies per step relative to a vanilla cell (gates).
_GATES = {"vanilla": 1, "lstm": 4, "gru": 3}


@common.spec_dataclass(static=("cell", "hidden_size", "embed_size", "seq_len", "batch_size",
                               "dataset", "vocab_size"))
class RNNLMSpec:
  """Static: cell, hidden_size, embed_size, seq_len, batch_size, dataset, vocab_size.
  Leaves: init_scale, data_seed, data_temperature (markov entropy)."""
  cell: str = "lstm"  # vanilla, lstm or gru
  hidden_size: int = 32
  embed_size: int = 16
  seq_len: int = 16
  batch_size: int = 16
  dataset: str = "markov"  # stdlib_bytes, markov, shakespeare_bytes, tfds:<name>
  vocab_size: int = 16  # 256 for byte datasets
  init_scale: float = 1.0
  data_seed: int = 0
  data_temperature: float = 1.0  # markov only: higher is higher entropy


class RNNLM(nn.Module):
  cell: str
  hidden_size: int
  embed_size: int
  vocab_size: int

  @nn.compact
  def __call__(self, tokens: jax.Array) -> jax.Array:
    x = nn.Embed(self.vocab_size, self.embed_size)(tokens)
    h = nn.RNN(CELLS[self.cell](features=self.hidden_size))(x)
    return nn.Dense(self.vocab_size)(h)

  def layer_order(self) -> list[str]:
    # nn.RNN keeps the cell's parameters under the cell class's auto-name.
    return ["Embed_0", f"{CELLS[self.cell].__name__}_0", *common.dense_names(1)]


@register_family(FAMILY)
class RNNLMFamily(TaskFamily):
  """Ranges: cell {vanilla, lstm, gru}, hidden {16, 32, 64, 128}, embed {8, 16, 32},
  seq_len {8, 16, 32}, batch {8, 16, 32}, data stdlib bytes or Markov (vocab 8-64,
  temperature log-uniform [0.3, 3])."""
  spec_type = RNNLMSpec

  def sample(self, key: PRNGKey) -> RNNLMSpec:
    rng = common.host_rng(key)
    return RNNLMSpec(
        cell=common.choice(rng, sorted(CELLS)),
        hidden_size=common.choice(rng, (16, 32, 64, 128)),
        embed_size=common.choice(rng, (8, 16, 32)),
        seq_len=common.choice(rng, (8, 16, 32)),
        batch_size=common.choice(rng, (8, 16, 32)),
        **common.sample_init_fields(rng),
        **sample_text_fields(rng))

  def build(self, spec: RNNLMSpec) -> LanguageModelTask:
    common.check_spec_type(spec, RNNLMSpec, FAMILY)
    common.check(spec.cell in CELLS, FAMILY,
                 f"cell must be one of {sorted(CELLS)}, got {spec.cell!r}")
    common.check_positive_ints(spec, FAMILY, ("hidden_size", "embed_size"))
    check_text_spec(spec, FAMILY)
    return LanguageModelTask(
        spec=spec, data=text_data(spec),
        model=RNNLM(spec.cell, spec.hidden_size, spec.embed_size, spec.vocab_size),
        label=f"{FAMILY}/{spec.dataset}/{spec.cell}{spec.hidden_size}_t{spec.seq_len}")

  def flops(self, spec: RNNLMSpec) -> float:
    h, e, v = spec.hidden_size, spec.embed_size, spec.vocab_size
    per_token = 2.0 * _GATES[spec.cell] * (e + h) * h + 2.0 * h * v
    return common.TRAIN_STEP_FLOPS_FACTOR * spec.batch_size * spec.seq_len * per_token

  def example_spec(self) -> RNNLMSpec:
    return RNNLMSpec(cell="lstm", hidden_size=32, embed_size=16, seq_len=16, batch_size=16,
                     dataset="markov", vocab_size=16, data_temperature=0.5)
