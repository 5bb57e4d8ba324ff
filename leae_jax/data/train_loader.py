"""Training batches by step: `BatchSchedule` cuts the record order, `create_train_loader` reads it.

Step → batch is a pure function of the seed and the step: the record order
holds one permutation of the training split per epoch, the schedule says
which positions each step reads (`epoch_end`: the published runs' smaller
last batch of each epoch, or fixed batches across epochs), and each process
reads its rows of every global batch. A resumed run simply starts at its
step: no iterator state to save.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import grain
import numpy as np

from leae_jax.data.batching import batch_stream
from leae_jax.data.batching import check_source_options
from leae_jax.data.batching import ensure_absl_flags_parsed
from leae_jax.data.batching import is_fitted
from leae_jax.data.batching import process_shard
from leae_jax.data.batching import read_record
from leae_jax.data.sources import get_source
from leae_jax.data.transforms import preprocess_ops

__all__ = ["EPOCH_ENDS", "BatchSchedule", "TrainLoader", "create_train_loader"]

#: How training steps cut the epochs (`config.epoch_end`, `BatchSchedule`).
EPOCH_ENDS = ("partial", "continue")


@dataclasses.dataclass(frozen=True)
class BatchSchedule:
  """Which positions of the run's record order each training step reads.

  The run's record order holds one permutation of the `num_records` training
  records per epoch: position `g` is record `perm_{g // N}[g % N]`, each
  permutation drawn from the seed (see `create_train_loader`). Step `s` reads
  the `size` positions from `start` on (`batch(s)`); `epoch_end` says how the
  steps cut the order:

  * 'partial' (the published runs: PyTorch's `DataLoader(shuffle=True,
    drop_last=False)`): every epoch is `N // B` full batches and then one
    smaller batch of the remaining `N mod B` records, `⌈N/B⌉` steps an epoch.
    The smaller batch must split evenly over the data shards: it is trimmed
    to the largest multiple of `multiple` (the shard count; exact on one
    device, where the published runs trained), and left out when that is 0;
    trimmed records sit that epoch out (the permutation changes every epoch,
    so it is different records each time).
  * 'continue' (ours): fixed global batches of `B` running across epoch
    boundaries, `⌊epochs·N/B⌋` steps for `epochs` epochs.

  Attributes:
    num_records: Records in the training split (`N`).
    batch_size: The global batch (`B`).
    epoch_end: 'partial' or 'continue'.
    multiple: The smaller last batch of a 'partial' epoch is trimmed to a
      multiple of this (the number of data shards).
  """

  num_records: int
  batch_size: int
  epoch_end: str = "partial"
  multiple: int = 1

  def __post_init__(self):
    if self.epoch_end not in EPOCH_ENDS:
      raise ValueError(f"Unknown epoch_end {self.epoch_end!r}; valid: {', '.join(EPOCH_ENDS)}.")
    for name in ("num_records", "batch_size", "multiple"):
      if getattr(self, name) <= 0:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")
    if self.epoch_end == "partial" and self.steps_per_epoch == 0:
      raise ValueError(
          f"epoch_end='partial': the {self.num_records} training records make no batch of "
          f"{self.batch_size} and, trimmed to a multiple of the {self.multiple} data shards, "
          f"no smaller one either; lower batch_size or use epoch_end='continue'.")

  @property
  def last_batch_size(self) -> int:
    """Size of the smaller last batch of each epoch ('partial'; 0: none, as in 'continue')."""
    if self.epoch_end == "continue":
      return 0
    remainder = self.num_records % self.batch_size
    return remainder - remainder % self.multiple

  @property
  def steps_per_epoch(self) -> float:
    """Steps an epoch: `⌈N/B⌉` ('partial', less one when the smaller batch is trimmed away), `N/B` ('continue')."""
    if self.epoch_end == "continue":
      return self.num_records / self.batch_size
    return self.num_records // self.batch_size + (1 if self.last_batch_size else 0)

  def num_steps(self, num_epochs: int) -> int:
    """Training steps of `num_epochs` epochs (at least 1)."""
    if self.epoch_end == "continue":
      return max(1, num_epochs * self.num_records // self.batch_size)
    return max(1, num_epochs * int(self.steps_per_epoch))

  def epochs_done(self, steps: int) -> float:
    """Epochs completed after `steps` steps (fractional)."""
    return steps / self.steps_per_epoch

  def batch(self, step: int) -> tuple[int, int]:
    """`(start, size)`: step `step` reads positions `[start, start + size)` of the record order."""
    if step < 0:
      raise ValueError(f"step must be >= 0, got {step}.")
    if self.epoch_end == "continue":
      return step * self.batch_size, self.batch_size
    epoch, index = divmod(step, int(self.steps_per_epoch))
    start = epoch * self.num_records + index * self.batch_size
    full = index < self.num_records // self.batch_size
    return start, self.batch_size if full else self.last_batch_size


class _StepBatch(grain.transforms.Map):
  """step → this shard's rows of that step's global batch (picklable for worker processes)."""

  def __init__(self, source: Any, ops: list[grain.transforms.Map], schedule: BatchSchedule,
               order: Any, shard_index: int, shard_count: int):
    self._source = source
    self._ops = ops
    self._schedule = schedule
    self._order = order
    self._shard_index = shard_index
    self._shard_count = shard_count

  def map(self, step: int) -> dict[str, np.ndarray]:
    start, size = self._schedule.batch(int(step))
    rows = size // self._shard_count
    first = start + self._shard_index * rows
    records = []
    for position in range(first, first + rows):
      records.append(read_record(self._source, self._ops, self._order(position)))
    # np.stack per field, as grain's Batch transform does.
    return {k: np.stack([r[k] for r in records]) for k in records[0]}


class _Order:
  """Position → record key: one permutation per epoch (grain's shuffle, as IndexSampler's)."""

  def __init__(self, num_records: int, shuffle: bool, seed: int):
    self._num_records = num_records
    # MapDataset.shuffle draws a new permutation for every epoch (`seed` and the
    # epoch): the order grain.samplers.IndexSampler(shuffle=True, seed) gives.
    self._keys = (grain.MapDataset.range(num_records).shuffle(seed=seed) if shuffle else None)

  def __call__(self, position: int) -> int:
    if self._keys is None:
      return position % self._num_records
    return int(self._keys[position])


class TrainLoader:
  """This shard's rows of every training step's global batch, from `start_step` on.

  Iterating gives batch dicts (`image`, `label`); `schedule` says which
  positions each step reads. Built by `create_train_loader`.
  """

  def __init__(self, dataset: grain.IterDataset, schedule: BatchSchedule, start_step: int):
    self._dataset = dataset
    self.schedule = schedule
    self.start_step = start_step

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return iter(self._dataset)


def create_train_loader(
    name: str,
    *,
    batch_size: int,
    seed: int,
    epoch_end: str = "partial",
    multiple: int | None = None,
    start_step: int = 0,
    stop_step: int | None = None,
    image_size: int | None = None,
    shuffle: bool = True,
    shard_index: int | None = None,
    shard_count: int | None = None,
    worker_count: int = 0,
    worker_buffer_size: int = 1,
    num_threads: int = 4,
    prefetch_buffer_size: int = 8,
    fit: str = "auto",
    uint8_images: bool = False,
    source: Any | None = None,
    **source_options: Any,
) -> TrainLoader:
  """The training input: this shard's rows of the global batch of every step.

  Step → batch is a pure function of (seed, step) (and `multiple` where
  'partial' trims; see `BatchSchedule`): the record order holds one
  permutation of the training split per epoch, drawn from `seed`, and the
  steps cut it as `epoch_end` says. Shard `p` of `n` reads rows `[p·b/n,
  (p+1)·b/n)` of each global batch of `b` records, so the global batches do
  not depend on the number of processes, and a resumed run simply starts at
  `start_step`: no iterator state to save.

  Each element is a whole batch built by one read thread (or worker
  process), reading and preprocessing its records in order.

  Args:
    name: Registered dataset name.
    batch_size: The global batch size.
    seed: Shuffle seed (non-negative, < 2**32).
    epoch_end: 'partial' (each epoch ends with its smaller last batch, the
      published runs) or 'continue' (fixed batches across epoch boundaries).
    multiple: Trim the smaller last batch of a 'partial' epoch to a multiple
      of this: the number of data shards (devices) it is split over. Default:
      `shard_count`.
    start_step: First step to read.
    stop_step: Stop before this step (None: never stop).
    image_size: Output side (default: the registry value).
    shuffle: Shuffle (a new permutation every epoch); else the source order.
    shard_index: This process's shard (default `jax.process_index()`).
    shard_count: Number of shards (default `jax.process_count()`).
    worker_count: grain worker processes, each building whole batches (0: threads of this process).
    worker_buffer_size: Batches each worker prepares ahead.
    num_threads: Batches read and preprocessed in parallel, in this process.
    prefetch_buffer_size: Batches read ahead.
    fit: See `preprocess_ops`.
    uint8_images: Batches of uint8 images, left for the device to scale to
      [0, 1] (`models.unit_range`): a quarter of the bytes to build and copy.
      The source's images must be uint8 (e.g. prepared records).
    source: The training split's source if already opened by `get_source`.
    **source_options: How to open the split, unless `source` is given: see
      `create_loader`.

  Returns:
    A `TrainLoader` (iterable of batch dicts, with its `schedule`).
  """
  check_source_options("create_train_loader", source_options)
  options = process_shard(shard_index, shard_count)
  index, count = options.shard_index, options.shard_count
  multiple = count if multiple is None else int(multiple)
  if batch_size % count or multiple % count:
    raise ValueError(f"batch_size={batch_size} and multiple={multiple} must be multiples of the "
                     f"{count} shards.")
  if start_step < 0:
    raise ValueError(f"start_step must be >= 0, got {start_step}.")
  if worker_count:
    ensure_absl_flags_parsed()
  if source is None:
    source = get_source(name, "train", image_size=image_size, **source_options)
  schedule = BatchSchedule(len(source), int(batch_size), epoch_end, multiple)
  ops = preprocess_ops(name, image_size, fit=fit, fitted=is_fitted(source),
                       to_float=not uint8_images)
  step_batch = _StepBatch(source, ops, schedule,
                          _Order(len(source), shuffle, seed), index, count)
  stop = 2**62 if stop_step is None else max(int(stop_step), start_step)
  dataset = batch_stream(start_step, stop, step_batch, num_threads=num_threads,
                         prefetch_buffer_size=prefetch_buffer_size, worker_count=worker_count,
                         worker_buffer_size=worker_buffer_size)
  return TrainLoader(dataset, schedule, start_step)
