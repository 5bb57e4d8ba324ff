"""What every loader shares: the options they open a split with, this process's shard,
reading a record through the transforms, and whole batches built by grain threads or workers.

The loaders (`loaders`, `eval_loader`, `train_loader`) open a split with
`sources.get_source` unless given one, preprocess its records with
`transforms.preprocess_ops` and build each batch in one read thread or
worker process (`batch_stream`), so a batch is a pure function of its index.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import grain
import numpy as np

from leae_jax.data.registry import SourceOptions

__all__ = [
    "SOURCE_OPTIONS",
    "batch_stream",
    "check_source_options",
    "ensure_absl_flags_parsed",
    "is_fitted",
    "process_shard",
    "read_record",
]

#: The keyword arguments (`**source_options`) the loaders pass on to `get_source`
#: with their `image_size` to open the split, unless given an opened `source`.
SOURCE_OPTIONS = tuple(f.name for f in dataclasses.fields(SourceOptions) if f.name != "image_size")


def check_source_options(caller: str, options: Mapping[str, Any]) -> None:
  """A keyword that is no source option is an error, as a misspelt keyword argument is."""
  for key in options:
    if key not in SOURCE_OPTIONS:
      raise TypeError(f"{caller}() got an unexpected keyword argument {key!r}")


def process_shard(shard_index: int | None, shard_count: int | None) -> grain.sharding.ShardOptions:
  """This process's shard: `shard_index` of `shard_count` (default: the JAX process's)."""
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


def read_record(source: Any, ops: list[grain.transforms.Map], key: int) -> dict[str, np.ndarray]:
  """Record `key` of `source`, through `ops` (the batch builders' and `load_arrays`' read)."""
  record = source[key]
  for op in ops:
    record = op.map(record)
  return record


def is_fitted(source: Any) -> bool:
  """Whether `source`'s records are already at the training size (a `PreparedSource`'s)."""
  return bool(getattr(source, "fitted", False))


def ensure_absl_flags_parsed() -> None:
  """Lets grain worker processes start outside `absl.app.run` (tests, notebooks).

  grain reads an absl flag (--grain_enable_multiprocess_worker_profiling) when it
  starts workers and fails with UnparsedFlagAccessError if flags were never
  parsed; marking them parsed keeps every flag at its default. Programs run with
  `app.run` have already parsed their flags, so this is then a no-op.
  """
  from absl import flags  # pylint: disable=g-import-not-at-top

  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def batch_stream(start: int, stop: int, build: grain.transforms.Map, *, num_threads: int,
                 prefetch_buffer_size: int, worker_count: int,
                 worker_buffer_size: int) -> grain.IterDataset:
  """`build` of each index in `[start, stop)`, in order: whole batches, each built by one read
  thread (`num_threads` in parallel, `prefetch_buffer_size` ahead) or, with `worker_count`,
  one of that many worker processes (`worker_buffer_size` batches ahead each)."""
  dataset = grain.MapDataset.range(start, stop).map(build).to_iter_dataset(
      grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch_buffer_size))
  if worker_count:
    dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=worker_count, per_worker_buffer_size=worker_buffer_size))
  return dataset
