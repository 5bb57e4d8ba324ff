"""Batches: samplers, the training schedule and the loaders over the data sources.

`create_loader` (general use: a checkpointable `grain.DataLoader`),
`create_train_loader` (step → batch a pure function of the seed and the step,
cut by a `BatchSchedule`) and `create_eval_loader` (fixed global batches of
real records, padded to split evenly over devices and processes) read a
split opened by `sources.get_source` and preprocessed by
`transforms.preprocess_ops`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Mapping, Sequence

import grain
import numpy as np

from leae_jax.data.sources import SourceOptions, describe, get_source
from leae_jax.data.transforms import preprocess_ops

__all__ = [
    "EPOCH_ENDS",
    "SOURCE_OPTIONS",
    "BatchSchedule",
    "EvalLoader",
    "GlobalOrderSampler",
    "TrainLoader",
    "create_eval_loader",
    "create_loader",
    "create_train_loader",
    "eval_slots",
    "iterate_once",
    "load_arrays",
]

#: The keyword arguments (`**source_options`) the loaders pass on to `get_source`
#: with their `image_size` to open the split, unless given an opened `source`.
SOURCE_OPTIONS = tuple(f.name for f in dataclasses.fields(SourceOptions) if f.name != "image_size")


def _check_source_options(caller: str, options: Mapping[str, Any]) -> None:
  """A keyword that is no source option is an error, as a misspelt keyword argument is."""
  for key in options:
    if key not in SOURCE_OPTIONS:
      raise TypeError(f"{caller}() got an unexpected keyword argument {key!r}")


# ---------------------------------------------------------------------------
# Loaders.
# ---------------------------------------------------------------------------


def _shard_options(shard_index: int | None, shard_count: int | None) -> grain.sharding.ShardOptions:
  if (shard_index is None) != (shard_count is None):
    raise ValueError("Pass both shard_index and shard_count, or neither (use the JAX process).")
  if shard_index is None:
    import jax  # pylint: disable=g-import-not-at-top  (only needed for the default)

    shard_index, shard_count = jax.process_index(), jax.process_count()
  # drop_remainder: every shard gets the same number of records, so all processes
  # run the same number of steps.
  return grain.sharding.ShardOptions(
      shard_index=int(shard_index), shard_count=int(shard_count), drop_remainder=True
  )


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


def _read(source: Any, ops: list[grain.transforms.Map], key: int) -> dict[str, np.ndarray]:
  """Record `key` of `source`, through `ops` (the batch builders' and `load_arrays`' read)."""
  record = source[key]
  for op in ops:
    record = op.map(record)
  return record


def _fitted(source: Any) -> bool:
  """Whether `source`'s records are already at the training size (`prepared.PreparedSource`)."""
  return bool(getattr(source, "fitted", False))


def _ensure_absl_flags_parsed() -> None:
  """Lets grain worker processes start outside `absl.app.run` (tests, notebooks).

  grain reads an absl flag (--grain_enable_multiprocess_worker_profiling) when it
  starts workers and fails with UnparsedFlagAccessError if flags were never
  parsed; marking them parsed keeps every flag at its default. Programs run with
  `app.run` have already parsed their flags, so this is then a no-op.
  """
  from absl import flags  # pylint: disable=g-import-not-at-top

  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


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
  _check_source_options("create_loader", source_options)
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}.")
  if worker_count:
    _ensure_absl_flags_parsed()
  if source is None:
    source = get_source(name, split, image_size=image_size, **source_options)
  shard_options = _shard_options(shard_index, shard_count)
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
  operations: list[Any] = preprocess_ops(name, image_size, fit=fit, fitted=_fitted(source))
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
  options = _shard_options(shard_index, shard_count)
  yield from create_eval_loader(
      name, split, batch_size=batch_size * options.shard_count, multiple=options.shard_count,
      image_size=image_size, shard_index=options.shard_index, shard_count=options.shard_count,
      **kwargs)


# ---------------------------------------------------------------------------
# Evaluation batches: fixed global batches of real records, padded per device.
# ---------------------------------------------------------------------------


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
    return _read(self._source, self._ops, key)

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
  _check_source_options("create_eval_loader", source_options)
  options = _shard_options(shard_index, shard_count)
  index, count = options.shard_index, options.shard_count
  multiple = count if multiple is None else int(multiple)
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}.")
  if multiple <= 0 or multiple % count:
    raise ValueError(f"multiple={multiple} must be a positive multiple of the {count} shards.")
  if worker_count:
    _ensure_absl_flags_parsed()
  if source is None:
    source = get_source(name, split, image_size=image_size, **source_options)
  slots = eval_slots(batch_size, multiple)
  num_batches = -(-len(source) // batch_size)
  if max_batches >= 0:
    num_batches = min(num_batches, int(max_batches))
  batch = _EvalBatch(source, preprocess_ops(name, image_size, fit=fit, fitted=_fitted(source)),
                     int(batch_size), slots,
                     index, count)
  dataset = grain.MapDataset.range(num_batches).map(batch).to_iter_dataset(
      grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch_buffer_size))
  if worker_count:
    dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=worker_count, per_worker_buffer_size=worker_buffer_size))
  return EvalLoader(dataset, num_records=len(source), batch_size=int(batch_size), slots=slots,
                    num_batches=num_batches)


# ---------------------------------------------------------------------------
# Training batches, by step.
# ---------------------------------------------------------------------------

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
      records.append(_read(self._source, self._ops, self._order(position)))
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
  _check_source_options("create_train_loader", source_options)
  options = _shard_options(shard_index, shard_count)
  index, count = options.shard_index, options.shard_count
  multiple = count if multiple is None else int(multiple)
  if batch_size % count or multiple % count:
    raise ValueError(f"batch_size={batch_size} and multiple={multiple} must be multiples of the "
                     f"{count} shards.")
  if start_step < 0:
    raise ValueError(f"start_step must be >= 0, got {start_step}.")
  if worker_count:
    _ensure_absl_flags_parsed()
  if source is None:
    source = get_source(name, "train", image_size=image_size, **source_options)
  schedule = BatchSchedule(len(source), int(batch_size), epoch_end, multiple)
  ops = preprocess_ops(name, image_size, fit=fit, fitted=_fitted(source), to_float=not uint8_images)
  step_batch = _StepBatch(source, ops, schedule,
                          _Order(len(source), shuffle, seed), index, count)
  stop = 2**62 if stop_step is None else max(int(stop_step), start_step)
  dataset = grain.MapDataset.range(start_step, stop).map(step_batch).to_iter_dataset(
      grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch_buffer_size))
  if worker_count:
    dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=worker_count, per_worker_buffer_size=worker_buffer_size))
  return TrainLoader(dataset, schedule, start_step)


# ---------------------------------------------------------------------------
# Arrays, for notebooks.
# ---------------------------------------------------------------------------


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
  _check_source_options("load_arrays", source_options)
  info = describe(name, image_size=image_size, **source_options)
  size = int(image_size or info.image_size)
  source = get_source(name, split, image_size=size, **source_options)
  ops = preprocess_ops(name, size, fit=fit, fitted=_fitted(source), to_float=to_float)
  count = len(source) if n is None else max(0, min(int(n), len(source)))
  if indices is not None:
    bad = [int(i) for i in indices if not 0 <= int(i) < len(source)]
    if bad:
      raise ValueError(f"{len(bad)} indices (the first: {bad[0]}) are outside the {split} split's "
                       f"{len(source)} records.")
  records = [_read(source, ops, index)
             for index in (range(count) if indices is None else indices)]
  if not records:
    dtype = np.float32 if to_float else np.uint8
    return np.zeros((0, size, size, info.channels), dtype), np.zeros((0,), np.int32)
  return (np.stack([r["image"] for r in records]),
          np.asarray([r["label"] for r in records], np.int32))
