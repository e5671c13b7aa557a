"""The static flat layout in which VeLO's update runs.

All parameter tensors are raveled (C order), each padded to a whole number of
blocks of ``block`` lanes, and stacked into one ``(num_blocks, block)`` array.
Tensors of rank < 2 (HyperV2's "diagonal" second moments) come first, then
the tensors whose second moments are factored into row and column statistics;
each of the two regions is padded with empty blocks to a multiple of
``BLOCK_MULTIPLE`` (unless it is small), so hyper_v2 runs one loop of whole
chunks over each.

Every block belongs to one tensor, so per-tensor quantities (LSTM outputs,
mixed MLP weights) reach the elements by a *broadcast* along the lane axis, and
per-tensor reductions are a lane reduction plus a segment sum over blocks. The
compiled update therefore has a fixed number of operations whatever the
number of tensors; only the (cheap) ravel/pad/concatenate of the leaves and
the final split grow with it.

The layout is plain numpy data computed from the leaf shapes at trace time.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

MAX_BLOCK = 256  # lanes per block; a power of two keeps loads aligned.
BLOCK_MULTIPLE = 16  # blocks per region: a multiple of the number of chunks of hyper_v2's loops
SMALL_REGION = 4  # a region under this many BLOCK_MULTIPLEs is not padded (one chunk)
NUM_RANK_FEATURES = 5


def factored_dims(shape: Sequence[int]) -> Optional[tuple[int, int]]:
  """HyperV2's choice of the two factored axes ``(d1, d0)``, or None.

  Quirk kept from learned_optimization: any tensor of rank >= 2 is factored
  (even with axes of size 1), and the axes are the last two of
  ``numpy.argsort(shape)``: ``d0`` the largest, ``d1`` the second largest,
  with ties broken by argsort's order. We call numpy's argsort itself so that
  ties resolve exactly as in the reference.
  """
  if len(shape) < 2:
    return None
  order = np.argsort(shape)
  return int(order[-2]), int(order[-1])


def _broadcast_ids(shape: tuple[int, ...], drop: int) -> np.ndarray:
  """For each element of ``shape`` (raveled), the index into ``np.delete(shape, drop)``."""
  reduced = tuple(s for i, s in enumerate(shape) if i != drop)
  ids = np.arange(int(np.prod(reduced)), dtype=np.int32).reshape(reduced)
  return np.broadcast_to(np.expand_dims(ids, drop), shape).reshape(-1)


@dataclasses.dataclass(frozen=True, eq=False)
class Layout:
  """Where each tensor lives in the flat ``(num_blocks, block)`` arrays."""

  shapes: tuple[tuple[int, ...], ...]  # per leaf, in tree order
  block: int
  first_block: np.ndarray  # (T,) first block of each leaf
  block_tensor: np.ndarray  # (num_blocks,) leaf index of each block
  block_valid: np.ndarray  # (num_blocks,) number of real lanes in each block
  num_diag_blocks: int  # blocks [0, num_diag_blocks) hold rank < 2 tensors
  sizes: np.ndarray  # (T,) float32 number of elements
  rank_one_hot: np.ndarray  # (T, 5) float32
  factored: tuple[tuple[int, int, int], ...]  # (leaf, d1, d0) of each factored leaf, in order
  # Runs of equal-shape factored leaves: (shape, d1, d0, first block, number of leaves).
  fac_groups: tuple[tuple[tuple[int, ...], int, int, int, int], ...]
  # Per element of the factored blocks [num_diag_blocks, num_blocks), the
  # index of its v_row (resp. v_col) entry; padding lanes read entry 0.
  row_idx: np.ndarray  # (num_blocks - num_diag_blocks, block) int32
  col_idx: np.ndarray  # (num_blocks - num_diag_blocks, block) int32
  row_table_tensor: np.ndarray  # (R,) int32 owner tensor of each v_row entry
  row_table_mult: np.ndarray  # (R,) float32 number of elements reading it
  col_table_tensor: np.ndarray  # (C,) int32
  col_table_mult: np.ndarray  # (C,) float32
  row_group: np.ndarray  # (R,) int32: v_row entries averaged together (over axis d1)
  group_count: np.ndarray  # (G,) float32

  @property
  def num_tensors(self) -> int:
    return len(self.shapes)

  @property
  def num_blocks(self) -> int:
    return len(self.block_tensor)

  @property
  def num_rows(self) -> int:
    return len(self.row_table_tensor)

  @property
  def num_cols(self) -> int:
    return len(self.col_table_tensor)

  def lane_mask(self) -> jax.Array:
    """(num_blocks, block) bool: True on real elements, False on padding."""
    lanes = jax.lax.broadcasted_iota(jnp.int32, (self.num_blocks, self.block), 1)
    return lanes < jnp.asarray(self.block_valid, jnp.int32)[:, None]

  def flatten(self, leaves: Sequence[jax.Array]) -> jax.Array:
    """Leaves -> (num_blocks, block) float32, zero on padding.

    One concatenate of the raveled leaves and zero pads (per-leaf pad ops, or
    in-place updates of a buffer, each compile to a kernel of their own).
    """
    order = np.argsort(self.first_block, kind="stable")
    pieces, pos = [], 0
    for t in order:
      start = int(self.first_block[t]) * self.block
      if start > pos:  # the previous leaf's padding lanes and any empty blocks
        pieces.append(jnp.zeros((start - pos,), jnp.float32))
      pieces.append(jnp.reshape(leaves[t], (-1,)).astype(jnp.float32))
      pos = start + int(np.prod(self.shapes[t]))
    tail = self.num_blocks * self.block - pos
    if tail:  # the last leaf's padding and the empty trailing blocks
      pieces.append(jnp.zeros((tail,), jnp.float32))
    return jnp.concatenate(pieces).reshape(self.num_blocks, self.block)

  def unflatten(self, flat: jax.Array, dtypes: Sequence[jnp.dtype]) -> list[jax.Array]:
    """(num_blocks, block) -> leaves of the given shapes and dtypes."""
    flat = flat.reshape(-1)
    out = []
    for t, shape in enumerate(self.shapes):
      start = int(self.first_block[t]) * self.block
      n = int(np.prod(shape))
      leaf = flat[start:start + n].reshape(shape)
      out.append(leaf if dtypes[t] == leaf.dtype else leaf.astype(dtypes[t]))
    return out

  def per_tensor_sum(self, x: jax.Array) -> jax.Array:
    """(..., num_blocks, block) -> (..., T): sum over each tensor's elements."""
    return self.sum_blocks(jnp.sum(x, axis=-1))

  def sum_blocks(self, x: jax.Array) -> jax.Array:
    """(..., num_blocks) -> (..., T): sum of per-block values over each tensor."""
    moved = jnp.moveaxis(x, -1, 0)
    summed = jax.ops.segment_sum(moved, jnp.asarray(self.block_tensor), self.num_tensors,
                                 indices_are_sorted=False)
    return jnp.moveaxis(summed, 0, -1)

  def to_blocks(self, per_tensor: jax.Array) -> jax.Array:
    """(..., T) -> (..., num_blocks, 1): broadcast a per-tensor value to its blocks."""
    # The barrier materialises the small (..., num_blocks) array, so the big
    # elementwise consumers see a plain broadcast instead of fusing a gather.
    return jax.lax.optimization_barrier(per_tensor[..., jnp.asarray(self.block_tensor)])[..., None]


def _cat(xs: list[np.ndarray], dtype) -> np.ndarray:
  return np.concatenate(xs).astype(dtype) if xs else np.zeros((0,), dtype)


def _block_size(sizes: Sequence[int]) -> int:
  """Lanes per block: the largest size rounded up to a power of two, in [8, MAX_BLOCK]."""
  largest = max(sizes) if sizes else 1
  return int(min(MAX_BLOCK, max(8, 1 << (max(largest, 1) - 1).bit_length())))


def _assign_blocks(sizes: Sequence[int], order: Sequence[int], block: int, start: int):
  """Whole blocks from ``start`` for each tensor in ``order``, then empty blocks.

  Returns ``(first_block, block_tensor, block_valid)``: a dict of each
  tensor's first block, and the lists of each block's tensor and number of
  real lanes. The empty blocks (owned by the last tensor, no real lanes)
  make the count of a region that is not small a multiple of BLOCK_MULTIPLE,
  so hyper_v2's loops split it into whole chunks without copies.
  """
  first_block, block_tensor, block_valid = {}, [], []
  for t in order:
    n = sizes[t]
    nblocks = -(-n // block)
    first_block[t] = start + len(block_tensor)
    block_tensor += [t] * nblocks
    block_valid += [min(block, n - i * block) for i in range(nblocks)]
  # A small region (a few bias vectors) stays unpadded and runs as one chunk:
  # padding it would cost more state than its loop saves.
  small = len(block_tensor) < SMALL_REGION * BLOCK_MULTIPLE
  extra = 0 if small else -len(block_tensor) % BLOCK_MULTIPLE
  block_tensor += [block_tensor[-1] if block_tensor else 0] * extra
  block_valid += [0] * extra
  return first_block, block_tensor, block_valid


def _lookup_table(shapes, fac: Sequence[int], block: int, num_blocks: int, side: str):
  """``(idx, owner, mult)`` of the ``side="row"`` or ``"col"`` table (see ``Layout``).

  The table holds each factored tensor's entries in ``fac`` order: its
  moments reduced over axis ``d0`` (rows) or ``d1`` (columns), which that
  many elements read. ``idx`` covers the ``num_blocks`` factored blocks;
  padding lanes and empty blocks read entry 0.
  """
  idx, owner, mult = [], [], []
  offset = 0
  for t in fac:
    shape = shapes[t]
    n = int(np.prod(shape))
    d1, d0 = factored_dims(shape)
    drop = d0 if side == "row" else d1
    pad = -(-n // block) * block - n
    idx.append(np.pad(_broadcast_ids(shape, drop) + offset, (0, pad)))
    entries = n // shape[drop]
    owner.append(np.full(entries, t, np.int32))
    mult.append(np.full(entries, shape[drop], np.float32))
    offset += entries
  idx = _cat(idx, np.int32)
  idx = np.pad(idx, (0, num_blocks * block - idx.shape[0]))  # the empty blocks
  return idx.reshape(num_blocks, block), _cat(owner, np.int32), _cat(mult, np.float32)


def _row_groups(shapes, fac: Sequence[int]):
  """``(row_group, group_count)``: which v_row entries are averaged together.

  Adafactor's row normalisation (hyper_v2.update_factored) averages each
  factored tensor's row moments over axis ``d1``; a group is one slice of the
  other axes, numbered across tensors in ``fac`` order.
  """
  row_group, group_count = [], []
  offset = 0
  for t in fac:
    shape = shapes[t]
    d1, d0 = factored_dims(shape)
    n_rows = int(np.prod(shape)) // shape[d0]
    row_shape = tuple(s for i, s in enumerate(shape) if i != d0)
    reduced_d1 = d1 - 1 if d1 > d0 else d1  # d1's position once d0 is dropped
    row_group.append(_broadcast_ids(row_shape, reduced_d1) + offset)
    group_count += [shape[d1]] * (n_rows // shape[d1])
    offset += n_rows // shape[d1]
  return _cat(row_group, np.int32), np.asarray(group_count, np.float32)


def _fac_groups(shapes, factored, first_block: np.ndarray):
  """Runs of equal-shape factored leaves: (shape, d1, d0, first block, number of leaves)."""
  groups = []
  for t, d1, d0 in factored:
    if groups and groups[-1][0] == shapes[t]:
      groups[-1][4] += 1
    else:
      groups.append([shapes[t], d1, d0, int(first_block[t]), 1])
  return tuple(tuple(x) for x in groups)


def _rank_one_hot(shapes) -> np.ndarray:
  """(T, 5) float32 one-hot of each tensor's number of axes of size > 1."""
  n_rank = [int(np.sum(np.asarray(s) > 1)) for s in shapes]
  # hk.one_hot(n, 5) is all zeros for n >= 5.
  return np.array([[float(r == i) for i in range(NUM_RANK_FEATURES)] for r in n_rank],
                  np.float32).reshape(len(shapes), NUM_RANK_FEATURES)


def make_layout(shapes: Sequence[tuple[int, ...]]) -> Layout:
  """Builds the layout for leaves of the given shapes (tree order)."""
  shapes = tuple(tuple(int(d) for d in s) for s in shapes)
  sizes = [int(np.prod(s)) for s in shapes]
  block = _block_size(sizes)
  diag = [t for t, s in enumerate(shapes) if factored_dims(s) is None]
  # Factored tensors of equal shape are placed next to each other, so their
  # row/column statistics are one reduction over a slice of the flat array.
  fac = sorted((t for t, s in enumerate(shapes) if factored_dims(s) is not None),
               key=lambda t: (shapes[t], t))
  diag_first, diag_tensor, diag_valid = _assign_blocks(sizes, diag, block, 0)
  num_diag_blocks = len(diag_tensor)
  fac_first, fac_tensor, fac_valid = _assign_blocks(sizes, fac, block, num_diag_blocks)
  first = {**diag_first, **fac_first}
  first_block = np.asarray([first[t] for t in range(len(shapes))], np.int64)
  row_idx, row_tensor, row_mult = _lookup_table(shapes, fac, block, len(fac_tensor), "row")
  col_idx, col_tensor, col_mult = _lookup_table(shapes, fac, block, len(fac_tensor), "col")
  row_group, group_count = _row_groups(shapes, fac)
  factored = tuple((t, *factored_dims(shapes[t])) for t in fac)
  return Layout(
      shapes=shapes, block=block, first_block=first_block,
      block_tensor=np.asarray(diag_tensor + fac_tensor, np.int32),
      block_valid=np.asarray(diag_valid + fac_valid, np.int32),
      num_diag_blocks=num_diag_blocks,
      sizes=np.asarray(sizes, np.float32), rank_one_hot=_rank_one_hot(shapes),
      factored=factored, fac_groups=_fac_groups(shapes, factored, first_block),
      row_idx=row_idx, col_idx=col_idx,
      row_table_tensor=row_tensor, row_table_mult=row_mult,
      col_table_tensor=col_tensor, col_table_mult=col_mult,
      row_group=row_group, group_count=group_count)
