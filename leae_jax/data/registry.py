"""The dataset registry: what each dataset is, and how a split of it is opened.

Every dataset is one `DatasetInfo` entry (`_REGISTRY`): what its records are,
and how to open a split of it (`DatasetInfo.opener`, called by
`DatasetInfo.open`). The modules of each family of sources register their own
entries on import (`shapes`, `image_folder`, `tfds_source`, `idx`, `series`),
so adding a dataset is adding one entry there, and this module imports none
of them. Every entry reads its prepared copy instead when one is named
(`prepared_source`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

from leae_jax.data.errors import check_split
from leae_jax.data.prepared_source import open_prepared

__all__ = [
    "DatasetInfo",
    "SourceOptions",
    "dataset_info",
    "register",
    "valid_names",
]


@dataclasses.dataclass(frozen=True)
class SourceOptions:
  """Where and how to open a split: `get_source`'s keyword arguments (documented there).

  Each dataset's opener uses the options that concern it and ignores the rest.
  """

  image_size: int | None = None
  data_dir: str | os.PathLike | None = None
  download: bool = False
  idx_dir: str | os.PathLike | None = None
  num_records: int | None = None
  shapes_seed: int = 0
  prepared_dir: str | os.PathLike | None = None
  fit: str = "auto"


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Static description of a registered dataset.

  Attributes:
    name: Registry name (also the TFDS name for TFDS-backed datasets).
    image_size: Default side length of the (square) images the pipeline emits.
    channels: Number of image channels.
    num_classes: Number of label classes, or None when there are no labels.
    has_labels: Whether records carry a class label (otherwise label == -1).
    train_split: Name of the underlying split used for `split='train'`.
    test_split: Name of the underlying split used for `split='test'`.
    num_train: Number of training examples, where known.
    num_test: Number of test examples, where known.
    native_size: (height, width) of the stored images; None when generated at any size.
    tfds_name: TFDS builder name, or None for datasets not served by TFDS.
    fit: default way to bring stored images to `image_size` (see `preprocess_ops`).
    modality: the kind of data (`modalities.py`): 'image', or 'sequence' for
      series `(L, C)`, whose `image_size` is the length and `channels` the
      channels (`data.series`).
    opener: Opens a split: `opener(info, split, options: SourceOptions)` returns
      its source of raw records (`open` calls it).
    preprocess: For datasets that are not images: `preprocess(info, size)`
      returns the grain transforms from raw records to model inputs
      (`preprocess_ops` uses the image transforms when it is None).
    class_names: The classes' names in label order, where known (an image
      folder's class folders must be these).
    download_host: Where TFDS downloads the dataset from (tried before a
      download, so that an offline machine fails at once).
  """

  name: str
  image_size: int
  channels: int
  num_classes: int | None
  has_labels: bool
  train_split: str = "train"
  test_split: str = "test"
  num_train: int | None = None
  num_test: int | None = None
  native_size: tuple[int, int] | None = None
  tfds_name: str | None = None
  fit: str = "auto"
  modality: str = "image"
  opener: Callable[[DatasetInfo, str, SourceOptions], Any] = dataclasses.field(
      kw_only=True, repr=False, compare=False)
  preprocess: Callable[[DatasetInfo, int], list] | None = dataclasses.field(
      default=None, kw_only=True, repr=False, compare=False)
  class_names: tuple[str, ...] | None = dataclasses.field(default=None, kw_only=True)
  download_host: str | None = dataclasses.field(default=None, kw_only=True)

  def split_name(self, split: str) -> str:
    """Maps 'train'/'test' to the underlying split name."""
    check_split(split)
    return self.train_split if split == "train" else self.test_split

  def split_size(self, split: str) -> int | None:
    """Number of examples in 'train'/'test', or None if unknown."""
    check_split(split)
    return self.num_train if split == "train" else self.num_test

  def open(self, split: str, **options: Any) -> Any:
    """The source of raw records of 'train'/'test'; `options` as `get_source`'s keywords.

    With `num_records`, a source of more records is cut to its first `num_records`.
    """
    check_split(split)
    options = SourceOptions(**options)
    if options.prepared_dir is not None:  # any dataset: its prepared copy, if one is named
      source = open_prepared(options.prepared_dir, self.name, split,
                             options.image_size or self.image_size or None)
    else:
      source = self.opener(self, split, options)
    if options.num_records is not None and options.num_records != len(source):
      source = _FirstRecords(source, options.num_records)
    return source


class _FirstRecords:
  """The first `num_records` records of another source (quick runs and tests)."""

  def __init__(self, source: Any, num_records: int):
    if not 0 < num_records <= len(source):
      raise ValueError(f"num_records must be in [1, {len(source)}], got {num_records}.")
    self.source = source
    self.num_records = int(num_records)
    self.fitted = getattr(source, "fitted", False)  # see `prepared_source.PreparedSource`

  def __len__(self) -> int:
    return self.num_records

  def __repr__(self) -> str:
    return f"FirstRecords({self.source!r}, num_records={self.num_records})"

  def __getitem__(self, index: int) -> Any:
    index = int(index)
    if not 0 <= index < self.num_records:
      raise IndexError(f"index {index} out of range for {self!r}.")
    return self.source[index]


#: The registered datasets by name, filled by the modules that define them (`register`).
_REGISTRY: dict[str, DatasetInfo] = {}


def register(info: DatasetInfo) -> DatasetInfo:
  """Adds a dataset to the registry (each source module registers its datasets with it)."""
  _REGISTRY[info.name] = info
  return info


def valid_names() -> tuple[str, ...]:
  """Names of all registered datasets, sorted."""
  return tuple(sorted(_REGISTRY))


def dataset_info(name: str) -> DatasetInfo:
  """Returns the registry entry for `name`; raises ValueError for unknown names."""
  try:
    return _REGISTRY[name]
  except (KeyError, TypeError):
    raise ValueError(
        f"Unknown dataset {name!r}; valid names are: {', '.join(valid_names())}."
    ) from None
