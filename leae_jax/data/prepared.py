"""Prepared records: a dataset's images already fitted to the training size, as raw uint8.

`prepare` runs a split once through the dataset's own preprocessing
(`transforms.preprocess_ops`: decoding, centre crop, resize or pad) up to the
uint8 image at training resolution, and writes each record as raw bytes into
uncompressed ArrayRecord shards (`group_size:1`, so every record is one random
read). `PreparedSource` reads them back with grain's `ArrayRecordDataSource`;
parsing a record is a `np.frombuffer`, so the training workers do no image
work at all, and the batches can stay uint8 until they reach the device.

Layout of a prepared directory (`config.prepared_dir`):

* `prepared.json`: format, dataset, image size and channels, the fit, and per
  split its record count and shard files. Written last (atomically): a
  directory without it, or without a split in it, is not prepared.
* `<split>.array_record-<i>-of-<n>`: the shards. A record is the label
  (int32, little endian) followed by the image (uint8, H·W·C, row major).
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from leae_jax.data import sources

__all__ = [
    "FORMAT",
    "MANIFEST",
    "PreparedSource",
    "PreparedDataError",
    "open_prepared",
    "prepare",
    "read_manifest",
]

#: Version tag of the layout above; a reader refuses any other.
FORMAT = "leae_jax.prepared/1"
#: The manifest's file name inside a prepared directory.
MANIFEST = "prepared.json"
#: One record per group, no compression: a record is one read and no decoding.
WRITER_OPTIONS = "group_size:1,uncompressed"
_LABEL_BYTES = 4
_SHARD_BYTES = 1 << 30  # aim for ~1 GiB shards


def record_bytes(image_size: int, channels: int) -> int:
  """Bytes of one record: a little-endian int32 label, then the uint8 image."""
  return _LABEL_BYTES + image_size * image_size * channels


class PreparedDataError(sources.DatasetUnavailableError, ValueError):
  """A prepared directory is missing, incomplete, or holds another dataset or size."""


def read_manifest(prepared_dir: str | os.PathLike) -> dict[str, Any]:
  """The manifest of `prepared_dir`; PreparedDataError if there is none or it is unreadable."""
  path = os.path.join(os.fspath(prepared_dir), MANIFEST)
  try:
    with open(path) as f:
      manifest = json.load(f)
  except FileNotFoundError:
    raise PreparedDataError(
        f"prepared_dir={os.fspath(prepared_dir)!r} holds no {MANIFEST}: it was not prepared "
        f"(or its preparation did not finish); run `python -m leae_jax.prepare "
        f"--config=<config> --out={os.fspath(prepared_dir)}`.") from None
  except (OSError, ValueError) as err:
    raise PreparedDataError(f"{path}: unreadable ({type(err).__name__}: {err}).") from err
  if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
    found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
    raise PreparedDataError(f"{path}: format {found!r}, expected {FORMAT!r}; prepare it again.")
  return manifest


class PreparedSource:
  """Random-access source over one split of a prepared directory.

  Records are `{'image': uint8 (S, S, C), 'label': int32}`, already at the
  training size. Picklable (grain worker processes reopen the shards lazily).
  """

  #: The records are already at the training size: only type conversion is left.
  fitted = True

  def __init__(self, prepared_dir: str | os.PathLike, split: str):
    from grain import sources as grain_sources  # pylint: disable=g-import-not-at-top

    self.prepared_dir = os.fspath(prepared_dir)
    self.split = split
    manifest = read_manifest(self.prepared_dir)
    splits = manifest.get("splits", {})
    if split not in splits:
      raise PreparedDataError(
          f"prepared_dir={self.prepared_dir!r} has no {split!r} split (it has: "
          f"{', '.join(sorted(splits)) or 'none'}); prepare it with --splits={split}.")
    entry = splits[split]
    paths = [os.path.join(self.prepared_dir, name) for name in entry["files"]]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
      raise PreparedDataError(f"prepared_dir={self.prepared_dir!r}: missing shard(s) "
                              f"{', '.join(missing)}; prepare it again.")
    self.dataset = manifest["dataset"]
    self.image_size = int(manifest["image_size"])
    self.channels = int(manifest["channels"])
    self._shape = (self.image_size, self.image_size, self.channels)
    self._record_bytes = record_bytes(self.image_size, self.channels)
    self._records = grain_sources.ArrayRecordDataSource(paths)
    if len(self._records) != int(entry["num_records"]):
      raise PreparedDataError(
          f"prepared_dir={self.prepared_dir!r}: the {split!r} shards hold {len(self._records)} "
          f"records, the manifest says {entry['num_records']}; prepare it again.")

  def __len__(self) -> int:
    return len(self._records)

  def __repr__(self) -> str:
    # Stable: grain validates checkpoints with repr(source).
    return (f"PreparedSource(prepared_dir={self.prepared_dir!r}, split={self.split!r}, "
            f"num_records={len(self)})")

  def _parse(self, raw: bytes) -> dict[str, np.ndarray]:
    if len(raw) != self._record_bytes:
      raise PreparedDataError(f"{self!r}: a record of {len(raw)} bytes, expected "
                              f"{self._record_bytes}; the shards are corrupt, prepare again.")
    label = np.frombuffer(raw, "<i4", count=1)[0].astype(np.int32)
    image = np.frombuffer(raw, np.uint8, offset=_LABEL_BYTES).reshape(self._shape)
    return {"image": image, "label": label}

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return self._parse(self._records[int(index)])


def open_prepared(prepared_dir: str | os.PathLike, dataset: str, split: str,
                  image_size: int | None) -> PreparedSource:
  """`split` of `prepared_dir`, checked to hold `dataset` at `image_size` (PreparedDataError if
  not; any size when `image_size` is None: an image folder's size is the prepared one)."""
  source = PreparedSource(prepared_dir, split)
  if source.dataset != dataset or (image_size and source.image_size != int(image_size)):
    raise PreparedDataError(
        f"prepared_dir={os.fspath(prepared_dir)!r} holds {source.dataset} at "
        f"{source.image_size}px, but the config trains {dataset} at {image_size}px; prepare "
        f"this dataset and size into another directory.")
  return source


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
  from leae_jax.data import transforms
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
