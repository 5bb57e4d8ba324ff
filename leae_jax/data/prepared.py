"""Writing prepared records: a dataset's images fitted to the training size once, as raw uint8.

`prepare` runs a split once through the dataset's own preprocessing
(`transforms.preprocess_ops`: decoding, centre crop, resize or pad) up to the
uint8 image at training resolution, and writes each record as raw bytes into
uncompressed ArrayRecord shards in the layout `prepared_source` describes and
reads back (`PreparedSource`). Writing needs the dataset's own source
(`sources.get_source`), and for a TFDS copy TensorFlow
(`pip install -e ".[prepare]"`); reading the result needs neither.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from leae_jax.data import sources
from leae_jax.data import transforms
from leae_jax.data.prepared_source import FORMAT
from leae_jax.data.prepared_source import MANIFEST
from leae_jax.data.prepared_source import PreparedDataError
from leae_jax.data.prepared_source import read_manifest
from leae_jax.data.prepared_source import record_bytes

__all__ = ["prepare"]

#: One record per group, no compression: a record is one read and no decoding.
WRITER_OPTIONS = "group_size:1,uncompressed"
_SHARD_BYTES = 1 << 30  # aim for ~1 GiB shards


def _shard_names(split: str, num_shards: int) -> list[str]:
  return [f"{split}.array_record-{i:05d}-of-{num_shards:05d}" for i in range(num_shards)]


def _records(source: Any, ops: Sequence[Any], worker_count: int) -> Iterable[dict[str, Any]]:
  """`source`'s records through `ops`, in order (in `worker_count` processes if > 0)."""
  import grain  # pylint: disable=g-import-not-at-top

  dataset = grain.MapDataset.source(source)
  for op in ops:
    dataset = dataset.map(op)
  iterable = dataset.to_iter_dataset(grain.ReadOptions(num_threads=4, prefetch_buffer_size=64))
  if worker_count:
    iterable = iterable.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  return iterable


def prepare(name: str, out_dir: str | os.PathLike, *, splits: Sequence[str] = ("train", "test"),
            image_size: int | None = None, fit: str = "auto", num_shards: int | None = None,
            worker_count: int = 0, log: Callable[[str], None] = lambda _: None,
            **source_options: Any) -> dict[str, Any]:
  """Writes `splits` of dataset `name`, fitted to `image_size`, as prepared records in `out_dir`.

  Each record goes through the dataset's preprocessing (`preprocess_ops`) up to
  the uint8 image at `image_size`, exactly what training would compute before
  scaling to [0, 1]; so a run on the prepared copy reads the same pixels.

  Args:
    name: Registered dataset name (its stored images must be uint8).
    out_dir: Directory to write (created). Shards are written under temporary
      names and the manifest last, so an interrupted preparation leaves
      nothing that reads as prepared.
    splits: Splits to write.
    image_size: Training size (default: the registry's).
    fit: See `preprocess_ops`.
    num_shards: Shards per split (default: about 1 GiB each).
    worker_count: grain worker processes for reading and fitting (0: threads).
    log: Called with one progress line per split.
    **source_options: How to open the splits (`get_source`'s keywords: data_dir, ...).

  Returns:
    The manifest written.
  """
  # pylint: disable=g-import-not-at-top
  from array_record.python.array_record_module import ArrayRecordWriter
  # pylint: enable=g-import-not-at-top

  # What the data holds (an image folder's size, channels and classes come from its files).
  info = sources.describe(name, image_size=image_size, **source_options)
  size = int(image_size or info.image_size)
  ops = [op for op in transforms.preprocess_ops(name, size, fit=fit)
         if not isinstance(op, transforms.ToFloatImage)]
  out_dir = os.fspath(out_dir)
  os.makedirs(out_dir, exist_ok=True)
  manifest = {"format": FORMAT, "dataset": name, "image_size": size, "channels": info.channels,
              "fit": fit, "ops": [repr(op) for op in ops], "splits": {}}
  if info.class_names is not None:  # `sources.describe` reads them back for prepared runs
    manifest["described"] = {"num_classes": info.num_classes,
                             "class_names": list(info.class_names)}
  try:  # keep splits prepared earlier (e.g. --splits=test after train)
    previous = read_manifest(out_dir)
    if (previous["dataset"], previous["image_size"]) == (name, size):
      manifest["splits"].update({k: v for k, v in previous["splits"].items() if k not in splits})
  except PreparedDataError:
    pass
  # Until they are rewritten, the splits being prepared are not listed.
  _write_manifest(out_dir, manifest)
  for split in splits:
    source = sources.get_source(name, split, image_size=size, **source_options)
    count = len(source)
    shards = int(num_shards or max(
        1, math.ceil(count * record_bytes(size, info.channels) / _SHARD_BYTES)))
    names = _shard_names(split, shards)
    bounds = np.linspace(0, count, shards + 1).astype(int)
    writers = [ArrayRecordWriter(os.path.join(out_dir, n + ".tmp"), WRITER_OPTIONS)
               for n in names]
    start = time.perf_counter()
    for index, record in enumerate(_records(source, ops, worker_count)):
      image = np.asarray(record["image"])
      if image.dtype != np.uint8 or image.shape != (size, size, info.channels):
        raise PreparedDataError(
            f"dataset {name!r} gives {image.dtype} images of shape {image.shape} after fitting; "
            f"prepared records hold uint8 images of shape {(size, size, info.channels)}.")
      shard = int(np.searchsorted(bounds, index, side="right")) - 1
      writers[shard].write(np.int32(record["label"]).astype("<i4").tobytes() + image.tobytes())
    for writer in writers:
      writer.close()
    for n in names:
      os.replace(os.path.join(out_dir, n + ".tmp"), os.path.join(out_dir, n))
    seconds = time.perf_counter() - start
    manifest["splits"][split] = {"num_records": count, "files": names}
    log(f"{name} {split}: {count} records at {size}px in {shards} shard(s), {seconds:.1f} s "
        f"({count / max(seconds, 1e-9):.0f} records/s)")
    _write_manifest(out_dir, manifest)
  return manifest


def _write_manifest(out_dir: str, manifest: dict[str, Any]) -> None:
  tmp = os.path.join(out_dir, MANIFEST + ".tmp")
  with open(tmp, "w") as f:
    json.dump(manifest, f, indent=1)
  os.replace(tmp, os.path.join(out_dir, MANIFEST))
