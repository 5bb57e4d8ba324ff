"""Opening a dataset by name: `get_source`, and `describe` for what its data holds.

A name and the options (`SourceOptions`: `get_source`'s keywords) go to the
dataset's registry entry (`registry`), which opens the split with its own
opener (filled in by `shapes`, `idx`, `tfds_source`, `image_folder`,
`series`) or its prepared copy (`prepared_source`). Where what a dataset
holds depends on its files (an image folder's size, channels, classes and
split sizes; a prepared copy's), `describe` says it. `config_options` turns a
run's config into those options.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from leae_jax.data.image_folder import describe_folder
from leae_jax.data.prepared_source import read_manifest
from leae_jax.data.registry import DatasetInfo
from leae_jax.data.registry import SourceOptions
from leae_jax.data.registry import dataset_info

__all__ = [
    "config_options",
    "describe",
    "get_source",
    "num_examples",
    "uint8_batches",
]


def describe(name: str, **options: Any) -> DatasetInfo:
  """`name`'s registry entry, completed with what the data that `options` point at holds.

  Read from an image folder (dataset `image_folder`, or a TFDS dataset whose
  `data_dir` is one): the image size (`native_size`, and `image_size` its
  shorter side unless `options` set one), channels, classes and split sizes
  come from the files (`image_folder.describe_folder`, which checks the whole
  folder), and the class folders must be the dataset's `class_names`. Read
  from prepared records: split sizes (and an image folder's facts) from its
  manifest. Otherwise the entry as registered. `options` are `get_source`'s.

  Raises:
    ValueError: unknown dataset.
    DatasetUnavailableError: the folder or manifest is missing or bad (one line naming it).
  """
  info = dataset_info(name)
  opts = SourceOptions(**options)
  if opts.prepared_dir is not None:
    manifest = read_manifest(opts.prepared_dir)
    splits = manifest.get("splits", {})
    facts = manifest.get("described", {})
    return dataclasses.replace(
        info, image_size=info.image_size or int(manifest["image_size"]),
        channels=int(manifest["channels"]),
        num_train=splits.get("train", {}).get("num_records", info.num_train),
        num_test=splits.get("test", {}).get("num_records", info.num_test),
        num_classes=facts.get("num_classes", info.num_classes),
        class_names=tuple(facts["class_names"]) if facts.get("class_names") else info.class_names)
  return describe_folder(info, opts)


def config_options(config: Any) -> dict[str, Any]:
  """The source options a run's config sets (`image_size`, `data_dir`, `download`,
  `idx_dir`, `prepared_dir`, `fit`): pass `**config_options(config)` to `get_source`,
  `describe` or any loader."""
  image_size = config.image_size if config.image_size and config.image_size > 0 else None
  return dict(image_size=image_size, data_dir=config.data_dir, download=config.download,
              idx_dir=config.idx_dir, prepared_dir=config.prepared_dir,
              fit=config.fit)


def uint8_batches(config: Any) -> bool:
  """Whether a run's training batches stay uint8 until the device scales them: those read
  from prepared records (`config.prepared_dir`), which hold uint8 images at training size."""
  return config.prepared_dir is not None


def get_source(
    name: str,
    split: str,
    *,
    image_size: int | None = None,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    idx_dir: str | os.PathLike | None = None,
    num_records: int | None = None,
    shapes_seed: int = 0,
    prepared_dir: str | os.PathLike | None = None,
    fit: str = "auto",
) -> Any:
  """Returns a grain random-access data source of raw records for a split.

  Records are dicts with at least an 'image' (HWC, uint8 or float32) and, for
  labelled datasets, a 'label'; `preprocess_ops` turns them into model inputs.

  Args:
    name: Registered dataset name (see `valid_names()`).
    split: 'train' or 'test'.
    image_size: Side of generated images (shapes only; defaults to the registry
      value). Other datasets are resized by `preprocess_ops`.
    data_dir: TFDS data directory (None: TFDS default, `$TFDS_DATA_DIR` or
      `~/tensorflow_datasets`).
    download: Let TFDS download and prepare the dataset when it is missing.
    idx_dir: fashion_mnist only: directory with the original IDX gzip files used
      when TFDS cannot provide the dataset (default `DEFAULT_IDX_DIR`).
    num_records: shapes: number of images to generate (default 10 000 train /
      2 000 test). Other datasets: use only the first `num_records` records.
    shapes_seed: shapes only: base seed of the procedural generator.
    prepared_dir: Read the split from this prepared copy (`prepared.prepare`:
      uint8 records already at `image_size`) instead of the dataset's own source.
    fit: How the loaders fit stored images to `image_size` (`preprocess_ops`);
      sources return images as stored, so they only carry it.

  Returns:
    An object with `__len__` and `__getitem__` (a grain RandomAccessDataSource).

  Raises:
    ValueError: unknown dataset or split.
    DatasetUnavailableError: a TFDS dataset is not available and cannot be
      downloaded (for fashion_mnist: neither are the IDX files).
  """
  return dataset_info(name).open(
      split, image_size=image_size, data_dir=data_dir, download=download, idx_dir=idx_dir,
      num_records=num_records, shapes_seed=shapes_seed, prepared_dir=prepared_dir, fit=fit)


def num_examples(name: str, split: str, **source_kwargs: Any) -> int:
  """Number of records in a split (opens the source; see `get_source` for kwargs)."""
  return len(get_source(name, split, **source_kwargs))
