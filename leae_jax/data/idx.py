"""IDX files (the original MNIST / Fashion-MNIST format), and the `fashion_mnist` dataset.

`fashion_mnist` reads TFDS's copy (`tfds_source`) and falls back to the
original IDX gzip files (`IdxSource`, `read_idx`), which the Debian package
`dataset-fashion-mnist` installs in `DEFAULT_IDX_DIR`: so the dataset works
offline and without TensorFlow. Registers `fashion_mnist` on import.
"""

from __future__ import annotations

import functools
import gzip
import logging
import math
import os
import zlib
from typing import Any

import numpy as np

from leae_jax.data.errors import CorruptDataError
from leae_jax.data.errors import DatasetUnavailableError
from leae_jax.data.errors import check_split
from leae_jax.data.registry import DatasetInfo
from leae_jax.data.registry import SourceOptions
from leae_jax.data.registry import register
from leae_jax.data.tfds_source import open_tfds
from leae_jax.data.tfds_source import tfds_data_dir

__all__ = ["DEFAULT_IDX_DIR", "IdxSource", "read_idx"]

_log = logging.getLogger(__name__)

#: Where the Debian package `dataset-fashion-mnist` installs the original files.
DEFAULT_IDX_DIR = "/usr/share/datasets/fashion-mnist/"

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_IDX_UBYTE = 0x08


def read_idx(path: str | os.PathLike, *, ndim: int) -> np.ndarray:
  """Reads an unsigned-byte IDX file (optionally gzip-compressed) into a uint8 array.

  The IDX header is two zero bytes, a type code (0x08 = ubyte), the number of
  dimensions, then one big-endian uint32 per dimension; so the magic number of a
  ubyte file with `ndim` dimensions is 0x00000800 + ndim.

  Args:
    path: File to read; decompressed with gzip when the name ends in `.gz`.
    ndim: Expected number of dimensions (3 for images, 1 for labels).

  Returns:
    The array, shaped as the header says.

  Raises:
    CorruptDataError (a ValueError): the file cannot be decompressed, has a bad
      magic number, or its payload size does not match the header.
  """
  path = os.fspath(path)
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      raw = f.read()
  except (EOFError, zlib.error, gzip.BadGzipFile) as err:
    raise CorruptDataError(f"{path}: cannot be decompressed ({err}); the file is truncated or "
                           "corrupt: replace it (e.g. reinstall dataset-fashion-mnist).") from err
  if len(raw) < 4:
    raise CorruptDataError(f"{path}: too short to be an IDX file ({len(raw)} bytes).")
  magic = int.from_bytes(raw[:4], "big")
  expected = (_IDX_UBYTE << 8) | ndim
  if magic != expected:
    raise CorruptDataError(
        f"{path}: bad IDX magic number 0x{magic:08x}, expected 0x{expected:08x} "
        f"(unsigned bytes, {ndim} dimension(s)); the file is corrupt or not an IDX file."
    )
  header_end = 4 + 4 * ndim
  shape = tuple(int(d) for d in np.frombuffer(raw[4:header_end], dtype=">u4"))
  payload = np.frombuffer(raw, dtype=np.uint8, offset=min(header_end, len(raw)))
  if payload.size != math.prod(shape):
    raise CorruptDataError(
        f"{path}: IDX header says shape {shape} ({math.prod(shape)} bytes) but the file "
        f"holds {payload.size} data bytes; the file is truncated or corrupt."
    )
  return payload.reshape(shape)


@functools.lru_cache(maxsize=4)
def _load_idx_split(images_path: str, labels_path: str) -> tuple[np.ndarray, np.ndarray]:
  # Cached: parsing the 60k training set takes a noticeable fraction of a second.
  images = read_idx(images_path, ndim=3)
  labels = read_idx(labels_path, ndim=1)
  if images.shape[0] != labels.shape[0]:
    raise CorruptDataError(
        f"{images_path} has {images.shape[0]} images but {labels_path} has "
        f"{labels.shape[0]} labels."
    )
  images = images[..., None]  # HW -> HWC.
  images.setflags(write=False)
  labels = labels.astype(np.int32)
  labels.setflags(write=False)
  return images, labels


class IdxSource:
  """Random-access source over an images/labels pair of IDX gzip files.

  Records are `{'image': uint8 (H, W, 1), 'label': int32}`, the same structure
  TFDS produces for (fashion_)mnist, so both feed the same transforms.
  """

  def __init__(self, idx_dir: str | os.PathLike, split: str):
    check_split(split)
    self.idx_dir = os.fspath(idx_dir)
    self.split = split
    paths = [os.path.join(self.idx_dir, f) for f in _IDX_FILES[split]]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
      raise FileNotFoundError(f"missing IDX file(s): {', '.join(missing)}")
    self._images, self._labels = _load_idx_split(*paths)

  def __len__(self) -> int:
    return int(self._labels.shape[0])

  def __repr__(self) -> str:
    return f"IdxSource(idx_dir={self.idx_dir!r}, split={self.split!r}, num_records={len(self)})"

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    index = int(index)
    return {"image": self._images[index], "label": self._labels[index]}


def _open_fashion_mnist(info: DatasetInfo, split: str, options: SourceOptions) -> Any:
  """TFDS's fashion_mnist, else the IDX files in `options.idx_dir` (default `DEFAULT_IDX_DIR`)."""
  try:
    return open_tfds(info, split, options)
  except DatasetUnavailableError as tfds_err:
    idx_dir = os.fspath(DEFAULT_IDX_DIR if options.idx_dir is None else options.idx_dir)
    try:
      source = IdxSource(idx_dir, split)
    except FileNotFoundError as err:
      raise DatasetUnavailableError(
          f"fashion_mnist is unavailable: TFDS has no prepared copy under "
          f"data_dir={tfds_data_dir(options.data_dir)!r} and {err}. Either install the original "
          f"files with `apt-get install dataset-fashion-mnist` (they go to "
          f"{DEFAULT_IDX_DIR}), pass idx_dir=<directory with "
          f"{', '.join(_IDX_FILES[split])}>, or prepare it with TFDS: {tfds_err}"
      ) from err
    _log.info("TFDS fashion_mnist unavailable; reading IDX files from %s", idx_dir)
    return source


register(DatasetInfo(
    name="fashion_mnist", image_size=32, channels=1, num_classes=10, has_labels=True,
    num_train=60_000, num_test=10_000, native_size=(28, 28), tfds_name="fashion_mnist",
    opener=_open_fashion_mnist,
    download_host="fashion-mnist.s3-website.eu-central-1.amazonaws.com",
))
