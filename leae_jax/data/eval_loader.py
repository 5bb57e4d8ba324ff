"""Evaluation batches: one ordered pass over a split in fixed global batches, padded per device.

`create_eval_loader` gives evaluation on any number of devices and processes
the numbers of one device: global batch `b` holds the same real records
whatever the device count, laid out in slots that split evenly (`eval_slots`),
the padding marked `valid` False. `iterate_once` is the same pass with no
padding but at the end.
"""

from __future__ import annotations

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

__all__ = ["EvalLoader", "create_eval_loader", "eval_slots", "iterate_once"]


def eval_slots(batch_size: int, multiple: int) -> int:
  """Slots `S` of an evaluation global batch: `batch_size` rounded up to a multiple of `multiple`.

  `multiple` is the number of parts the batch is split into (devices and
  processes, `train.data_shards`), so that every part gets the same
  number of slots whatever `batch_size` is.
  """
  if batch_size <= 0 or multiple <= 0:
    raise ValueError(f"batch_size and multiple must be positive, got {batch_size}, {multiple}.")
  return -(-int(batch_size) // int(multiple)) * int(multiple)


class _EvalBatch(grain.transforms.Map):
  """batch index → this shard's slots of that evaluation global batch (picklable).

  Slot `s` of global batch `b` is record `b·R + s` when `s < R` and that
  record exists (`valid`), else padding: a repeat of the batch's last real
  record, so that padded inputs are ordinary images (no NaN or odd
  statistics), weighted 0 by the caller.
  """

  def __init__(self, source: Any, ops: list[grain.transforms.Map], batch_size: int, slots: int,
               shard_index: int, shard_count: int):
    self._source = source
    self._ops = ops
    self._batch_size = batch_size
    self._slots = slots
    self._shard_index = shard_index
    self._shard_count = shard_count

  def _record(self, key: int) -> dict[str, np.ndarray]:
    return read_record(self._source, self._ops, key)

  def map(self, batch: int) -> dict[str, np.ndarray]:
    first = int(batch) * self._batch_size
    end = min(first + self._batch_size, len(self._source))  # past the batch's last real record
    per_shard = self._slots // self._shard_count
    slots = self._shard_index * per_shard + np.arange(per_shard)
    valid = first + slots < end
    records, padding = [], None
    for slot, real in zip(slots, valid):
      if real:
        records.append(self._record(first + int(slot)))
      else:
        padding = self._record(end - 1) if padding is None else padding
        records.append(padding)
    # np.stack per field, as grain's Batch transform does.
    out = {k: np.stack([r[k] for r in records]) for k in records[0]}
    out["valid"] = valid
    return out


class EvalLoader:
  """This shard's slots of every evaluation global batch, in order (one pass).

  Iterating gives batch dicts (`image`, `label`, `valid`); built by
  `create_eval_loader`, whose docstring describes the layout.

  Attributes:
    num_records: Records in the split.
    batch_size: Real records per global batch (`R`; the last batch may hold fewer).
    slots: Slots per global batch (`S`, a multiple of the shard count).
    num_batches: Global batches this loader yields.
  """

  def __init__(self, dataset: grain.IterDataset, *, num_records: int, batch_size: int,
               slots: int, num_batches: int):
    self._dataset = dataset
    self.num_records = num_records
    self.batch_size = batch_size
    self.slots = slots
    self.num_batches = num_batches

  def __len__(self) -> int:
    return self.num_batches

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return iter(self._dataset)


def create_eval_loader(
    name: str,
    split: str,
    *,
    batch_size: int,
    multiple: int | None = None,
    max_batches: int = -1,
    image_size: int | None = None,
    shard_index: int | None = None,
    shard_count: int | None = None,
    worker_count: int = 0,
    worker_buffer_size: int = 1,
    num_threads: int = 4,
    prefetch_buffer_size: int = 4,
    fit: str = "auto",
    source: Any | None = None,
    **source_options: Any,
) -> EvalLoader:
  """One ordered pass over a split in global batches of `batch_size` real records.

  For evaluation on any number of devices and processes with the numbers of
  one device. Global batch `b` holds records `[b·R, (b+1)·R)` of the split
  (`R = batch_size`; the last batch is shorter), whatever the device and
  process count. It is laid out in `S = eval_slots(R, multiple)` slots (R
  rounded up to a multiple of `multiple`, the devices × processes the batch
  is split over, so each gets the same number of rows); slots `≥ R`, and
  those past the end of the split, are padding with `valid` False. Shard `p`
  of `n` loads slots `[p·S/n, (p+1)·S/n)`. Padding therefore sits at the end
  of each global batch, and its real records do not depend on `multiple` or
  `n`: the batch's first `R` slots are exactly a one-device batch.

  Args:
    name: Registered dataset name.
    split: 'train' or 'test'.
    batch_size: Real records per global batch (`R`).
    multiple: The slots are a multiple of this (default: `shard_count`); must
      be a multiple of `shard_count`.
    max_batches: Yield only the first this many global batches (-1: all).
    image_size: Output side (default: the registry value).
    shard_index: This process's shard (default `jax.process_index()`).
    shard_count: Number of shards (default `jax.process_count()`).
    worker_count: grain worker processes, each building whole batches (0: threads).
    worker_buffer_size: Batches each worker prepares ahead.
    num_threads: Batches read and preprocessed in parallel, in this process.
    prefetch_buffer_size: Batches read ahead.
    fit: See `preprocess_ops`.
    source: The split's source if already opened by `get_source`.
    **source_options: How to open the split, unless `source` is given: see
      `create_loader`.

  Returns:
    An `EvalLoader`: batch dicts `image (S/n, H, W, C)`, `label (S/n,)`,
    `valid (S/n,) bool`.
  """
  check_source_options("create_eval_loader", source_options)
  options = process_shard(shard_index, shard_count)
  index, count = options.shard_index, options.shard_count
  multiple = count if multiple is None else int(multiple)
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}.")
  if multiple <= 0 or multiple % count:
    raise ValueError(f"multiple={multiple} must be a positive multiple of the {count} shards.")
  if worker_count:
    ensure_absl_flags_parsed()
  if source is None:
    source = get_source(name, split, image_size=image_size, **source_options)
  slots = eval_slots(batch_size, multiple)
  num_batches = -(-len(source) // batch_size)
  if max_batches >= 0:
    num_batches = min(num_batches, int(max_batches))
  batch = _EvalBatch(source, preprocess_ops(name, image_size, fit=fit, fitted=is_fitted(source)),
                     int(batch_size), slots,
                     index, count)
  dataset = batch_stream(0, num_batches, batch, num_threads=num_threads,
                         prefetch_buffer_size=prefetch_buffer_size, worker_count=worker_count,
                         worker_buffer_size=worker_buffer_size)
  return EvalLoader(dataset, num_records=len(source), batch_size=int(batch_size), slots=slots,
                    num_batches=num_batches)


def iterate_once(
    name: str,
    split: str,
    *,
    batch_size: int,
    image_size: int | None = None,
    shard_index: int | None = None,
    shard_count: int | None = None,
    **kwargs: Any,
) -> Iterator[dict[str, np.ndarray]]:
  """One ordered pass over a split in global batches; yields this shard's rows of each.

  Global batch `b` holds records `[b·G, (b+1)·G)` of the split (`G =
  batch_size · shard_count`), whatever the number of shards; shard `p` gets
  rows `[p·batch_size, (p+1)·batch_size)`. Every batch is full: the last
  global batch is completed with repeats of the last record, and each batch
  has a boolean `valid` field (False on those repeats), so every record is
  counted exactly once. This is `create_eval_loader` with a global batch that
  is a multiple of the shard count (so no slot is padding but at the end);
  keyword arguments are passed on to it (e.g. `data_dir`, `worker_count`,
  `num_records`).
  """
  options = process_shard(shard_index, shard_count)
  yield from create_eval_loader(
      name, split, batch_size=batch_size * options.shard_count, multiple=options.shard_count,
      image_size=image_size, shard_index=options.shard_index, shard_count=options.shard_count,
      **kwargs)
