"""Small decoder-only (GPT-style, pre-LayerNorm) Transformer language models.

Shape follows nanoGPT's ``model.py``: token + learned position embeddings,
``depth`` blocks of causal self-attention and a 4x MLP, a final LayerNorm and
an untied output projection.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from tasks import common
from tasks.base import PRNGKey, TaskFamily
from tasks.lm import LanguageModelTask, check_text_spec, sample_text_fields, text_data
from tasks.registry import register_family

FAMILY = "transformer_lm"


@common.spec_dataclass(static=("width", "depth", "num_heads", "seq_len", "batch_size",
                               "dataset", "vocab_size"))
class TransformerLMSpec:
  """Static: width, depth, num_heads, seq_len, batch_size, dataset, vocab_size.
  Leaves: init_scale, data_seed, data_temperature (markov entropy)."""
  width: int = 32
  depth: int = 2
  num_heads: int = 2  # must divide width
  seq_len: int = 16
  batch_size: int = 16
  dataset: str = "markov"
  vocab_size: int = 16
  init_scale: float = 1.0
  data_seed: int = 0
  data_temperature: float = 1.0


class Block(nn.Module):
  width: int
  num_heads: int

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    h = nn.LayerNorm()(x)
    x = x + nn.MultiHeadDotProductAttention(num_heads=self.num_heads)(h, h, mask=mask)
    h = nn.LayerNorm()(x)
    h = nn.Dense(self.width)(nn.gelu(nn.Dense(4 * self.width)(h)))
    return x + h


class TransformerLM(nn.Module):
  width: int
  depth: int
  num_heads: int
  seq_len: int
  vocab_size: int

  @nn.compact
  def __call__(self, tokens: jax.Array) -> jax.Array:
    x = nn.Embed(self.vocab_size, self.width)(tokens)
    pos = self.param("position", nn.initializers.normal(0.02), (self.seq_len, self.width))
    x = x + pos[None, :tokens.shape[1]]
    mask = nn.make_causal_mask(jnp.ones(tokens.shape, jnp.int32))
    for _ in range(self.depth):
      x = Block(self.width, self.num_heads)(x, mask)
    return nn.Dense(self.vocab_size)(nn.LayerNorm()(x))

  def layer_order(self) -> list[str]:
    blocks = [f"Block_{i}" for i in range(self.depth)]
    return ["Embed_0", "position", *blocks, "LayerNorm_0", *common.dense_names(1)]


@register_family(FAMILY)
class TransformerLMFamily(TaskFamily):
  """Ranges: width {16, 32, 64}, depth 1-3, heads {1, 2, 4} (dividing width),
  seq_len {8, 16, 32}, batch {8, 16, 32}, data as rnn_lm."""
  spec_type = TransformerLMSpec

  def sample(self, key: PRNGKey) -> TransformerLMSpec:
    rng = common.host_rng(key)
    return TransformerLMSpec(
        width=common.choice(rng, (16, 32, 64)),
        depth=int(rng.integers(1, 4)),
        num_heads=common.choice(rng, (1, 2, 4)),
        seq_len=common.choice(rng, (8, 16, 32)),
        batch_size=common.choice(rng, (8, 16, 32)),
        **common.sample_init_fields(rng),
        **sample_text_fields(rng))

  def build(self, spec: TransformerLMSpec) -> LanguageModelTask:
    common.check_spec_type(spec, TransformerLMSpec, FAMILY)
    common.check_positive_ints(spec, FAMILY, ("width", "depth", "num_heads"))
    common.check(spec.width % spec.num_heads == 0, FAMILY,
                 f"num_heads ({spec.num_heads}) must divide width ({spec.width})")
    check_text_spec(spec, FAMILY)
    return LanguageModelTask(
        spec=spec, data=text_data(spec),
        model=TransformerLM(spec.width, spec.depth, spec.num_heads, spec.seq_len,
                            spec.vocab_size),
        label=f"{FAMILY}/{spec.dataset}/w{spec.width}d{spec.depth}h{spec.num_heads}"
        f"_t{spec.seq_len}")

  def flops(self, spec: TransformerLMSpec) -> float:
    w, t, v = spec.width, spec.seq_len, spec.vocab_size
    # Per token and layer: QKV + output projections (4 w^2) and the MLP (8 w^2) as
    # multiply-adds, plus attention scores and mixing over t positions.
    per_token = spec.depth * (2.0 * 12 * w * w + 2.0 * 2 * t * w) + 2.0 * w * v
    return common.TRAIN_STEP_FLOPS_FACTOR * spec.batch_size * t * per_token

  def example_spec(self) -> TransformerLMSpec:
    return TransformerLMSpec(width=32, depth=1, num_heads=2, seq_len=16, batch_size=16,
                             dataset="markov", vocab_size=16, data_temperature=0.5)
