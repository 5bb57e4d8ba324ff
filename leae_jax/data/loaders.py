"""General-use loading: a checkpointable `grain.DataLoader` over a split, and arrays for notebooks.

`create_loader` batches one process's shard of a split opened by
`sources.get_source` and preprocessed by `transforms.preprocess_ops`, in a
global order independent of the number of processes (`GlobalOrderSampler`);
`load_arrays` gives a split's first records as numpy arrays. Training reads
by step (`train_loader`), evaluation in padded global batches (`eval_loader`).
"""

from __future__ import annotations

from typing import Any, Sequence

import grain
import numpy as np

from leae_jax.data.batching import check_source_options
from leae_jax.data.batching import ensure_absl_flags_parsed
from leae_jax.data.batching import is_fitted
from leae_jax.data.batching import process_shard
from leae_jax.data.batching import read_record
from leae_jax.data.sources import describe
from leae_jax.data.sources import get_source
from leae_jax.data.transforms import preprocess_ops

__all__ = ["GlobalOrderSampler", "create_loader", "load_arrays"]


class GlobalOrderSampler:
  """A grain sampler whose global batches do not depend on the number of shards.

  `inner` defines the run's record order (position `g` → record). The global
  batch `b` is positions `[start + b·G, start + (b+1)·G)` with `G =
  batch_size · shard_count`. grain's DataLoader gives shard `p` the positions
  `m = p + shard_count · j` of this sampler; they are mapped to global
  position `start + (j // batch_size)·G + p·batch_size + j % batch_size`, i.e.
  shard `p`'s `batch_size` consecutive rows of each global batch. A final
  partial global batch is left out (evaluation, which must count every
  record, uses `create_eval_loader`).
  """

  def __init__(self, inner: Any, *, batch_size: int, shard_count: int, start_index: int = 0):
    if start_index < 0:
      raise ValueError(f"start_index must be >= 0, got {start_index}.")
    self._inner = inner
    self._batch_size = int(batch_size)
    self._shard_count = int(shard_count)
    self._start = int(start_index)

  def global_position(self, index: int) -> int:
    shard, j = index % self._shard_count, index // self._shard_count
    global_batch = self._batch_size * self._shard_count
    return (self._start + (j // self._batch_size) * global_batch + shard * self._batch_size
            + j % self._batch_size)

  def __len__(self) -> int:
    global_batch = self._batch_size * self._shard_count
    available = max(0, len(self._inner) - self._start)
    return available // global_batch * global_batch

  def __getitem__(self, index: int) -> Any:
    if index < 0 or index >= len(self):
      raise IndexError(f"Index {index} out of range for {len(self)} positions.")
    meta = self._inner[self.global_position(index)]
    return grain.RecordMetadata(index=index, record_key=meta.record_key, rng=meta.rng)

  def __repr__(self) -> str:
    return (f"GlobalOrderSampler(inner={self._inner!r}, batch_size={self._batch_size}, "
            f"shard_count={self._shard_count}, start_index={self._start})")


def create_loader(
    name: str,
    split: str,
    *,
    batch_size: int,
    seed: int,
    image_size: int | None = None,
    shuffle: bool = True,
    num_epochs: int | None = None,
    shard_index: int | None = None,
    shard_count: int | None = None,
    worker_count: int = 0,
    worker_buffer_size: int = 1,
    num_threads: int | None = None,
    prefetch_buffer_size: int | None = None,
    drop_remainder: bool = True,
    fit: str = "auto",
    global_order: bool = True,
    start_index: int = 0,
    source: Any | None = None,
    **source_options: Any,
) -> grain.DataLoader:
  """A checkpointable grain DataLoader yielding batches of one process's shard.

  Iterating the loader gives a `grain.DataLoaderIterator` with `get_state()` /
  `set_state()` (bytes), which orbax can checkpoint. Batches are dicts:
  `image (batch_size, S, S, C) float32 in [0, 1]`, `label (batch_size,) int32`.

  With `global_order` (the default) one record order is
  defined for the whole run — shuffled with `seed`, reshuffled every epoch —
  and cut into global batches of `batch_size · shard_count` records; shard
  `shard_index` reads rows `[shard_index · batch_size, (shard_index + 1) ·
  batch_size)` of every global batch (`GlobalOrderSampler`). The global batch
  is therefore the same whatever the number of processes, and the position
  after `s` steps is simply record `s · global batch` (`start_index`), so a
  run can resume on a different number of hosts. Without `global_order` the
  records are split into `shard_count` contiguous equal shards (remainder
  dropped), each read in order (evaluation). With `num_epochs=None` the loader
  repeats forever and batches may straddle epochs: the batches of
  `create_train_loader(epoch_end='continue')`, which training uses instead.

  Args:
    name: Registered dataset name.
    split: 'train' or 'test'.
    batch_size: Per-process batch size.
    seed: Shuffle seed (non-negative, < 2**32); the same seed gives the same order.
    image_size: Output side (default: the registry value).
    shuffle: Shuffle records (globally within the shard).
    num_epochs: Passes over the shard; None repeats forever.
    shard_index: This process's shard (default `jax.process_index()`).
    shard_count: Number of shards (default `jax.process_count()`).
    worker_count: grain worker processes for the transforms (0: in this process).
    worker_buffer_size: Batches each worker prepares ahead.
    num_threads: grain read threads (default: grain's ReadOptions default).
    prefetch_buffer_size: Records read ahead (default: grain's default).
    drop_remainder: Drop a final partial batch (only matters for finite epochs).
    fit: See `preprocess_ops`.
    global_order: Process-count independent global batches (see above).
    start_index: With `global_order`, the global record position to start at.
    source: The split's data source if already opened by `get_source` (then
      `source_options` are not used).
    **source_options: How to open the split (`SOURCE_OPTIONS`: `data_dir`,
      `download`, `idx_dir`, `num_records`, `shapes_seed`, `prepared_dir`): passed on to
      `get_source`, with `image_size`.

  Returns:
    A `grain.DataLoader`.
  """
  check_source_options("create_loader", source_options)
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}.")
  if worker_count:
    ensure_absl_flags_parsed()
  if source is None:
    source = get_source(name, split, image_size=image_size, **source_options)
  shard_options = process_shard(shard_index, shard_count)
  if global_order:
    # The loader reads sampler positions shard_index, shard_index + shard_count, ...;
    # GlobalOrderSampler maps them onto this shard's rows of each global batch.
    sampler = GlobalOrderSampler(
        grain.samplers.IndexSampler(
            num_records=len(source), shard_options=grain.sharding.NoSharding(),
            shuffle=shuffle, num_epochs=num_epochs, seed=seed),
        batch_size=batch_size, shard_count=shard_options.shard_count, start_index=start_index)
  else:
    if start_index:
      raise ValueError("start_index needs global_order=True.")
    # The sampler restricts record keys to this shard, the loader picks this
    # shard's sampler positions.
    sampler = grain.samplers.IndexSampler(
        num_records=len(source),
        shard_options=shard_options,
        shuffle=shuffle,
        num_epochs=num_epochs,
        seed=seed,
    )
  read_kwargs = {}
  if num_threads is not None:
    read_kwargs["num_threads"] = num_threads
  if prefetch_buffer_size is not None:
    read_kwargs["prefetch_buffer_size"] = prefetch_buffer_size
  operations: list[Any] = preprocess_ops(name, image_size, fit=fit, fitted=is_fitted(source))
  operations.append(grain.transforms.Batch(batch_size=batch_size, drop_remainder=drop_remainder))
  return grain.DataLoader(
      data_source=source,
      sampler=sampler,
      operations=operations,
      worker_count=worker_count,
      worker_buffer_size=worker_buffer_size,
      shard_options=shard_options,
      read_options=grain.ReadOptions(**read_kwargs),
  )


def load_arrays(name: str, split: str = "test", n: int | None = None, *,
                indices: Sequence[int] | None = None, image_size: int | None = None,
                fit: str = "auto", to_float: bool = False,
                **source_options: Any) -> tuple[np.ndarray, np.ndarray]:
  """The first `n` images and labels of a split (or those at `indices`), as numpy arrays.

  `images, labels = data.load_arrays("image_folder", "test", 64, data_dir=DIR)`
  (or `"cifar10"` with `data_dir=` an image folder or a TFDS copy) gives
  `images (n, S, S, C) uint8` (float32 in [0, 1] with `to_float`) and
  `labels (n,) int32`, records `0 .. n−1` of the split in the source's order
  (an image folder's: `image_folder.record_order`), fitted to `image_size` as
  training fits them (default: the data's size, `describe`). Every record
  of the split when `n` is None; the records at `indices` when given.
  """
  check_source_options("load_arrays", source_options)
  info = describe(name, image_size=image_size, **source_options)
  size = int(image_size or info.image_size)
  source = get_source(name, split, image_size=size, **source_options)
  ops = preprocess_ops(name, size, fit=fit, fitted=is_fitted(source), to_float=to_float)
  count = len(source) if n is None else max(0, min(int(n), len(source)))
  if indices is not None:
    bad = [int(i) for i in indices if not 0 <= int(i) < len(source)]
    if bad:
      raise ValueError(f"{len(bad)} indices (the first: {bad[0]}) are outside the {split} split's "
                       f"{len(source)} records.")
  records = [read_record(source, ops, index)
             for index in (range(count) if indices is None else indices)]
  if not records:
    dtype = np.float32 if to_float else np.uint8
    return np.zeros((0, size, size, info.channels), dtype), np.zeros((0,), np.int32)
  return (np.stack([r["image"] for r in records]),
          np.asarray([r["label"] for r in records], np.int32))
