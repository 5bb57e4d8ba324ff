"""Prepared records on disk: their layout, the manifest, and the source that reads a split.

A prepared directory (`config.prepared_dir`, written by `prepared.prepare`)
holds a dataset's images already fitted to the training size, as raw uint8:

* `prepared.json`: format, dataset, image size and channels, the fit, and per
  split its record count and shard files. Written last (atomically): a
  directory without it, or without a split in it, is not prepared.
* `<split>.array_record-<i>-of-<n>`: uncompressed ArrayRecord shards
  (`group_size:1`, so every record is one random read). A record is the label
  (int32, little endian) followed by the image (uint8, H·W·C, row major).

`PreparedSource` reads a split back with grain's `ArrayRecordDataSource`;
parsing a record is a `np.frombuffer`, so the training workers do no image
work at all, and the batches can stay uint8 until they reach the device.
Reading needs neither TensorFlow nor the dataset's own source, so this sits
below the registry, whose entries all open their prepared copy through it.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from leae_jax.data.errors import DatasetUnavailableError

__all__ = [
    "FORMAT",
    "MANIFEST",
    "PreparedDataError",
    "PreparedSource",
    "open_prepared",
    "read_manifest",
    "record_bytes",
]

#: Version tag of the layout above; a reader refuses any other.
FORMAT = "leae_jax.prepared/1"
#: The manifest's file name inside a prepared directory.
MANIFEST = "prepared.json"
_LABEL_BYTES = 4


def record_bytes(image_size: int, channels: int) -> int:
  """Bytes of one record: a little-endian int32 label, then the uint8 image."""
  return _LABEL_BYTES + image_size * image_size * channels


class PreparedDataError(DatasetUnavailableError, ValueError):
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
