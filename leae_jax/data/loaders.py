"""Input pipeline: grain data loaders over procedural shapes and TFDS image datasets.

Every dataset is exposed as a grain random-access data source of raw records
(`get_source`), turned into `{'image': float32 (H, W, C) in [0, 1], 'label': int32}`
by a short list of grain `Map` transforms (`preprocess_ops`), and batched by a
checkpointable `grain.DataLoader` (`create_loader`, general use), for
training by step (`create_train_loader`: step → batch is a pure function of
the seed and the step, cut by a `BatchSchedule`), and for evaluation by batch
index (`create_eval_loader`: fixed global batches of real records, padded to
split evenly over any number of devices and processes). Batches are dicts
of numpy arrays: `image (B, H, W, C) float32`, `label (B,) int32` (-1 where a
dataset has no labels).

Datasets:
  shapes         procedural, one grey circle/ring/square per image, label = shape type.
  fashion_mnist  TFDS, falling back to the original IDX gzip files (Debian package
                 `dataset-fashion-mnist`) when TFDS has not prepared it and cannot
                 download it; 28x28 padded to 32x32 by default.
  cifar10        TFDS (ArrayRecord), 32x32x3.
  celeb_a        TFDS (ArrayRecord), the central 128×128 window of the 178×218 aligned
                 faces (no resizing, as the published runs); unlabelled (label -1).

TFDS datasets must be available in ArrayRecord format (`tfds.data_source` is random
access); when they are not and cannot be downloaded, `DatasetUnavailableError` says
how to provide them by hand. TensorFlow Datasets is imported lazily so that `shapes`
and the IDX fallback work without importing it. Reading a prepared copy does not
need TensorFlow; only preparing one does (`pip install -e ".[prepare]"`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import glob
import gzip
import importlib.util
import logging
import math
import os
import zlib
from typing import Any, Iterator, Mapping

import grain
import numpy as np

__all__ = [
    "DEFAULT_IDX_DIR",
    "EPOCH_ENDS",
    "BatchSchedule",
    "DatasetInfo",
    "CorruptDataError",
    "DatasetUnavailableError",
    "CenterCropSquare",
    "PadImage",
    "ResizeImage",
    "ShapesSource",
    "ToFloatImage",
    "ToImageLabel",
    "TrainLoader",
    "IdxSource",
    "EvalLoader",
    "create_eval_loader",
    "create_loader",
    "create_train_loader",
    "dataset_info",
    "eval_slots",
    "get_source",
    "iterate_once",
    "num_examples",
    "preprocess_ops",
    "read_idx",
    "valid_names",
]

_log = logging.getLogger(__name__)

#: Where the Debian package `dataset-fashion-mnist` installs the original files.
DEFAULT_IDX_DIR = "/usr/share/datasets/fashion-mnist/"

_SPLITS = ("train", "test")


class DatasetUnavailableError(RuntimeError):
  """A TFDS dataset is not prepared locally and could not be downloaded."""


class CorruptDataError(DatasetUnavailableError, ValueError):
  """A data file exists but cannot be read: truncated, corrupt or of another format."""


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

  def split_name(self, split: str) -> str:
    """Maps 'train'/'test' to the underlying split name."""
    _check_split(split)
    return self.train_split if split == "train" else self.test_split

  def split_size(self, split: str) -> int | None:
    """Number of examples in 'train'/'test', or None if unknown."""
    _check_split(split)
    return self.num_train if split == "train" else self.num_test


_REGISTRY: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            name="shapes", image_size=32, channels=1, num_classes=3, has_labels=True,
            num_train=10_000, num_test=2_000,
        ),
        DatasetInfo(
            name="fashion_mnist", image_size=32, channels=1, num_classes=10, has_labels=True,
            num_train=60_000, num_test=10_000, native_size=(28, 28), tfds_name="fashion_mnist",
        ),
        DatasetInfo(
            name="cifar10", image_size=32, channels=3, num_classes=10, has_labels=True,
            num_train=50_000, num_test=10_000, native_size=(32, 32), tfds_name="cifar10",
        ),
        DatasetInfo(
            name="celeb_a", image_size=128, channels=3, num_classes=None, has_labels=False,
            num_train=162_770, num_test=19_962, native_size=(218, 178), tfds_name="celeb_a",
            fit="center_crop",
        ),
    )
}


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


def _check_split(split: str) -> None:
  if split not in _SPLITS:
    raise ValueError(f"Unknown split {split!r}; valid splits are: {', '.join(_SPLITS)}.")


# ---------------------------------------------------------------------------
# shapes: procedural toy dataset.
# ---------------------------------------------------------------------------

SHAPE_NAMES = ("circle", "ring", "square")


class ShapesSource:
  """Procedural grayscale shapes, one per image, generated on the fly per index.

  The published toy distribution, on a 28×28 canvas: black, with one filled
  circle (`d ≤ r`), ring (`|d − r| ≤ 1.5`) or filled square (`|dx|, |dy| ≤ r`)
  of radius r uniform in 3..8, centre uniform in 5..22 on both axes (so large
  shapes may be clipped by the border), and one intensity uniform in
  [0.3, 1.0). Canvases for images of side 28–35 are 28 px and zero-padded
  (centred) to the requested side, as Fashion-MNIST's are; other sides scale
  the geometry by side/28. Records are `{'image': float32 (S, S, 1),
  'label': int32}` with label 0 circle, 1 ring, 2 square.

  Every record depends only on (seed, split, index), so the source is
  deterministic, picklable and needs no storage. (The published generator
  drew from one seeded torch stream; the distribution is the same, the
  individual images are not.)
  """

  CANVAS = 28

  def __init__(self, split: str, *, image_size: int = 32, num_records: int | None = None, seed: int = 0):
    _check_split(split)
    if image_size < 8:
      raise ValueError(f"shapes needs image_size >= 8, got {image_size}.")
    if seed < 0:
      raise ValueError(f"seed must be non-negative, got {seed}.")
    default = dataset_info("shapes").split_size(split)
    self.split = split
    self.image_size = int(image_size)
    self.num_records = int(default if num_records is None else num_records)
    if self.num_records <= 0:
      raise ValueError(f"num_records must be positive, got {self.num_records}.")
    self.seed = int(seed)
    padded = self.CANVAS <= image_size < self.CANVAS + 8
    self.canvas = self.CANVAS if padded else self.image_size
    scale = self.canvas / self.CANVAS
    self.min_radius = max(1, round(3 * scale))
    self.max_radius = max(self.min_radius, round(8 * scale))
    self.margin = round(5 * scale)  # centres lie in [margin, canvas - 1 - margin]
    self.ring_half_width = 1.5 * scale

  def __len__(self) -> int:
    return self.num_records

  def __repr__(self) -> str:
    # grain validates checkpoints with repr(source), so it must be stable.
    return (
        f"ShapesSource(split={self.split!r}, image_size={self.image_size}, "
        f"num_records={self.num_records}, seed={self.seed})"
    )

  @functools.cached_property
  def _grid(self) -> tuple[np.ndarray, np.ndarray]:
    coords = np.arange(self.canvas, dtype=np.float32)
    return coords[:, None], coords[None, :]  # (S, 1) rows, (1, S) cols.

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    index = int(index)
    if not 0 <= index < self.num_records:
      raise IndexError(f"index {index} out of range for {self!r}.")
    # SeedSequence-style seeding from (seed, split, index): independent streams per
    # record, identical on every platform and in every worker process.
    rng = np.random.default_rng([self.seed, _SPLITS.index(self.split), index])
    kind = int(rng.integers(len(SHAPE_NAMES)))
    cx, cy = rng.integers(self.margin, self.canvas - self.margin, size=2)
    radius = int(rng.integers(self.min_radius, self.max_radius + 1))
    intensity = np.float32(rng.uniform(0.3, 1.0))
    rows, cols = self._grid
    dy, dx = rows - cy, cols - cx
    if kind == 2:  # Square of side 2 * radius + 1.
      mask = (np.abs(dy) <= radius) & (np.abs(dx) <= radius)
    else:
      dist = np.sqrt(dy * dy + dx * dx)
      if kind == 0:
        mask = dist <= radius
      else:  # Ring: a band of half-width 1.5 px around the radius.
        mask = np.abs(dist - radius) <= self.ring_half_width
    image = np.where(mask, intensity, np.float32(0.0)).astype(np.float32)
    if self.canvas != self.image_size:
      before = (self.image_size - self.canvas) // 2
      after = self.image_size - self.canvas - before
      image = np.pad(image, ((before, after), (before, after)))
    return {"image": image[:, :, None], "label": np.int32(kind)}


# ---------------------------------------------------------------------------
# IDX files (original MNIST / Fashion-MNIST distribution format).
# ---------------------------------------------------------------------------

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
    _check_split(split)
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


class _FirstRecords:
  """The first `num_records` records of another source (quick runs and tests)."""

  def __init__(self, source: Any, num_records: int):
    if not 0 < num_records <= len(source):
      raise ValueError(f"num_records must be in [1, {len(source)}], got {num_records}.")
    self.source = source
    self.num_records = int(num_records)

  def __len__(self) -> int:
    return self.num_records

  def __repr__(self) -> str:
    return f"FirstRecords({self.source!r}, num_records={self.num_records})"

  def __getitem__(self, index: int) -> Any:
    index = int(index)
    if not 0 <= index < self.num_records:
      raise IndexError(f"index {index} out of range for {self!r}.")
    return self.source[index]


# ---------------------------------------------------------------------------
# TFDS sources.
# ---------------------------------------------------------------------------


def _tfds_data_dir(data_dir: str | os.PathLike | None) -> str:
  """The directory TFDS reads from (for error messages)."""
  if data_dir is not None:
    return os.fspath(data_dir)
  return os.environ.get("TFDS_DATA_DIR", os.path.expanduser("~/tensorflow_datasets"))


def _first_line(err: BaseException) -> str:
  text = str(err).strip().splitlines()
  return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


#: What installs TensorFlow, which only preparing (building) a TFDS copy needs.
PREPARE_INSTALL = 'pip install -e ".[prepare]"'


def _tensorflow_installed() -> bool:
  """Whether TensorFlow is importable, without importing it."""
  try:
    return importlib.util.find_spec("tensorflow") is not None
  except (ImportError, ValueError):
    return False


def _has_prepared_copy(data_dir: str, name: str) -> bool:
  """Whether `data_dir` holds some prepared version (any config) of TFDS dataset `name`."""
  pattern = os.path.join(glob.escape(data_dir), glob.escape(name))
  return any(glob.glob(os.path.join(pattern, *["*"] * depth, "dataset_info.json"))
             for depth in (1, 2))


@contextlib.contextmanager
def _absl_warnings_silenced() -> Iterator[None]:
  """absl's logger (TFDS logs through it) at ERROR only, for the duration."""
  absl_logger = logging.getLogger("absl")
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)
  try:
    yield
  finally:
    absl_logger.setLevel(level)


def _tfds_source(
    info: DatasetInfo, split: str, data_dir: str | os.PathLike | None, download: bool
) -> Any:
  """`tfds.data_source` for one split; any failure becomes DatasetUnavailableError.

  Reading an ArrayRecord copy needs only `tensorflow_datasets`; building one
  (download=True on a missing dataset, `tfds build`) also needs TensorFlow, so
  without it nothing is downloaded and a missing copy names `PREPARE_INSTALL`.
  """
  assert info.tfds_name is not None
  data_dir_str = _tfds_data_dir(data_dir)
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as err:
    raise DatasetUnavailableError(
        f"Dataset {info.name!r} needs TensorFlow Datasets: pip install -e . "
        f"({_first_line(err)})."
    ) from err
  has_tensorflow = _tensorflow_installed()
  try:
    # TFDS warns about what it does not find (e.g. "Variant folder ... has no
    # dataset_info.json") on its way to failing; the error below says it all.
    with _absl_warnings_silenced():
      return tfds.data_source(
          info.tfds_name,
          split=info.split_name(split),
          data_dir=None if data_dir is None else os.fspath(data_dir),
          download=download and has_tensorflow,  # a download it cannot prepare is wasted
      )
  except Exception as err:  # pylint: disable=broad-except
    # TFDS reports a missing dataset as e.g. a NotImplementedError about the
    # TFRECORD format, and offline downloads as assorted network/IO errors; neither
    # says what to do, so translate them all into one actionable message.
    name = info.tfds_name
    if not has_tensorflow and not _has_prepared_copy(data_dir_str, name):
      raise DatasetUnavailableError(
          f"preparing {name} needs TensorFlow: {PREPARE_INSTALL} (there is no prepared "
          f"ArrayRecord copy under data_dir={data_dir_str!r}; one built elsewhere with "
          f"`tfds build {name} --data_dir=<dir> --file_format=array_record` can be copied "
          f"from <dir>/{name} to {os.path.join(data_dir_str, name)})."
      ) from err
    how = "download was disabled (download=False)" if not download else "the download failed"
    raise DatasetUnavailableError(
        f"TFDS dataset {name!r} (split {info.split_name(split)!r}) is not prepared in "
        f"ArrayRecord format under data_dir={data_dir_str!r} and {how} "
        f"[{_first_line(err)}]. To provide it manually: on a machine with internet run "
        f"`tfds build {name} --data_dir=<dir> --file_format=array_record` and copy "
        f"<dir>/{name} into {data_dir_str}; or place the raw files in the TFDS manual dir "
        f"{os.path.join(data_dir_str, 'downloads', 'manual')} and call with download=True "
        f"(or run that `tfds build` here with --manual_dir)."
    ) from err


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

  Returns:
    An object with `__len__` and `__getitem__` (a grain RandomAccessDataSource).

  Raises:
    ValueError: unknown dataset or split.
    DatasetUnavailableError: a TFDS dataset is not available and cannot be
      downloaded (for fashion_mnist: neither are the IDX files).
  """
  info = dataset_info(name)
  _check_split(split)
  if name == "shapes":
    return ShapesSource(
        split, image_size=image_size or info.image_size, num_records=num_records, seed=shapes_seed
    )
  if name == "fashion_mnist":
    source = _fashion_mnist_source(info, split, data_dir, download, idx_dir)
  else:
    source = _tfds_source(info, split, data_dir, download)
  if num_records is not None and num_records != len(source):
    source = _FirstRecords(source, num_records)
  return source


def _fashion_mnist_source(
    info: DatasetInfo,
    split: str,
    data_dir: str | os.PathLike | None,
    download: bool,
    idx_dir: str | os.PathLike | None,
) -> Any:
  try:
    return _tfds_source(info, split, data_dir, download)
  except DatasetUnavailableError as tfds_err:
    idx_dir = os.fspath(DEFAULT_IDX_DIR if idx_dir is None else idx_dir)
    try:
      source = IdxSource(idx_dir, split)
    except FileNotFoundError as err:
      raise DatasetUnavailableError(
          f"fashion_mnist is unavailable: TFDS has no prepared copy under "
          f"data_dir={_tfds_data_dir(data_dir)!r} and {err}. Either install the original "
          f"files with `apt-get install dataset-fashion-mnist` (they go to "
          f"{DEFAULT_IDX_DIR}), pass idx_dir=<directory with "
          f"{', '.join(_IDX_FILES[split])}>, or prepare it with TFDS: {tfds_err}"
      ) from err
    _log.info("TFDS fashion_mnist unavailable; reading IDX files from %s", idx_dir)
    return source


# ---------------------------------------------------------------------------
# Preprocessing transforms (run inside grain, possibly in worker processes).
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ToImageLabel(grain.transforms.Map):
  """Keeps only 'image' (as HWC) and 'label' (int32, -1 if absent) of a record.

  Dropping the other TFDS features (ids, attributes, landmarks) keeps batches
  small and uniformly structured across datasets.
  """

  def map(self, element: Mapping[str, Any]) -> dict[str, np.ndarray]:
    image = np.asarray(element["image"])
    if image.ndim == 2:
      image = image[:, :, None]
    if image.ndim != 3:
      raise ValueError(f"expected an HW or HWC image, got shape {image.shape}.")
    label = np.int32(element["label"]) if "label" in element else np.int32(-1)
    return {"image": image, "label": label}


@dataclasses.dataclass(frozen=True)
class CenterCropWindow(grain.transforms.Map):
  """Cuts the central `size` x `size` window out of the image, without resizing.

  The window's corner is `round((H − size)/2), round((W − size)/2)`, as
  torchvision's `CenterCrop` (the published CelebA pipeline).
  """

  size: int

  def map(self, element: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    image = element["image"]
    h, w = image.shape[:2]
    if h < self.size or w < self.size:
      raise ValueError(f"CenterCropWindow({self.size}) needs images of at least that side, "
                       f"got {h}x{w}.")
    top, left = int(round((h - self.size) / 2.0)), int(round((w - self.size) / 2.0))
    return {**element, "image": image[top : top + self.size, left : left + self.size]}


@dataclasses.dataclass(frozen=True)
class CenterCropSquare(grain.transforms.Map):
  """Crops the largest centred square out of the image."""

  def map(self, element: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    image = element["image"]
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return {**element, "image": image[top : top + side, left : left + side]}


@dataclasses.dataclass(frozen=True)
class ResizeImage(grain.transforms.Map):
  """Resizes the image to `size` x `size` with antialiased bilinear filtering (PIL).

  Works on uint8 (before scaling to [0, 1]); bilinear never overshoots, so the
  value range is preserved.
  """

  size: int

  def map(self, element: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    image = element["image"]
    if image.shape[:2] == (self.size, self.size):
      return element
    from PIL import Image  # pylint: disable=g-import-not-at-top

    resample = Image.Resampling.BILINEAR
    if image.dtype == np.uint8:
      mode_image = image[:, :, 0] if image.shape[2] == 1 else image
      out = np.asarray(Image.fromarray(mode_image).resize((self.size, self.size), resample))
      out = out.reshape(self.size, self.size, image.shape[2])
    else:  # Float images: resize each channel in PIL's 32-bit float mode.
      channels = [
          np.asarray(
              Image.fromarray(np.ascontiguousarray(image[:, :, c], np.float32)).resize(
                  (self.size, self.size), resample
              )
          )
          for c in range(image.shape[2])
      ]
      out = np.stack(channels, axis=-1).astype(np.float32)
    return {**element, "image": out}


@dataclasses.dataclass(frozen=True)
class PadImage(grain.transforms.Map):
  """Zero-pads the image, centred, to `size` x `size` (pixel values stay exact)."""

  size: int

  def map(self, element: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    image = element["image"]
    h, w = image.shape[:2]
    if h > self.size or w > self.size:
      raise ValueError(f"cannot pad a {h}x{w} image to {self.size}x{self.size}.")
    top, left = (self.size - h) // 2, (self.size - w) // 2
    pad = ((top, self.size - h - top), (left, self.size - w - left), (0, 0))
    return {**element, "image": np.pad(image, pad)}


@dataclasses.dataclass(frozen=True)
class ToFloatImage(grain.transforms.Map):
  """uint8 [0, 255] -> float32 [0, 1]; float images are cast to float32 and clipped."""

  def map(self, element: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    image = element["image"]
    if image.dtype == np.uint8:
      out = image.astype(np.float32) * np.float32(1.0 / 255.0)
    else:
      out = np.clip(image.astype(np.float32), 0.0, 1.0)
    return {**element, "image": np.ascontiguousarray(out)}


_FITS = ("auto", "pad", "resize", "center_crop")


def preprocess_ops(
    name: str, image_size: int | None = None, *, fit: str = "auto"
) -> list[grain.transforms.Map]:
  """The grain transforms turning raw records of `name` into model inputs.

  Args:
    name: Registered dataset name.
    image_size: Output side (default: the registry value).
    fit: How to bring stored images to `image_size`: 'pad' (centred zero padding,
      target must not be smaller), 'resize', 'center_crop' (the central window
      of that side, no resizing: CelebA's default), or 'auto' (the dataset's
      own default where it has one, else: non-square images are
      centre-cropped and resized; square images are padded when the target is at
      most 1.25x larger (e.g. Fashion-MNIST 28 -> 32, so pixels stay exact and the
      border is thin) and resized otherwise. Ignored for shapes, which are
      generated at the requested size.)

  Returns:
    A list of `grain.transforms.Map` producing `{'image': float32 HWC in [0, 1],
    'label': int32}`.
  """
  info = dataset_info(name)
  if fit not in _FITS:
    raise ValueError(f"Unknown fit {fit!r}; valid values are: {', '.join(_FITS)}.")
  size = int(image_size or info.image_size)
  if size <= 0:
    raise ValueError(f"image_size must be positive, got {size}.")
  ops: list[grain.transforms.Map] = [ToImageLabel()]
  if fit == "auto" and info.fit != "auto" and (
      info.native_size is None or size <= min(info.native_size)):
    fit = info.fit
  if info.native_size is not None and info.native_size != (size, size):
    h, w = info.native_size
    if fit == "center_crop":
      ops.append(CenterCropWindow(size))
    elif fit == "pad" or (fit == "auto" and h == w and h < size <= 1.25 * h):
      ops.append(PadImage(size))
    else:
      if h != w:
        ops.append(CenterCropSquare())
      ops.append(ResizeImage(size))
  ops.append(ToFloatImage())
  return ops


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
  shard `p`'s `batch_size` consecutive rows of each global batch.

  With `pad`, a final partial global batch is completed with repeats of the
  last record (the caller masks them; evaluation uses `create_eval_loader`).
  """

  def __init__(self, inner: Any, *, batch_size: int, shard_count: int, start_index: int = 0,
               pad: bool = False):
    if start_index < 0:
      raise ValueError(f"start_index must be >= 0, got {start_index}.")
    self._inner = inner
    self._batch_size = int(batch_size)
    self._shard_count = int(shard_count)
    self._start = int(start_index)
    self._pad = pad

  def global_position(self, index: int) -> int:
    shard, j = index % self._shard_count, index // self._shard_count
    global_batch = self._batch_size * self._shard_count
    return (self._start + (j // self._batch_size) * global_batch + shard * self._batch_size
            + j % self._batch_size)

  def __len__(self) -> int:
    global_batch = self._batch_size * self._shard_count
    available = max(0, len(self._inner) - self._start)
    if self._pad:
      return -(-available // global_batch) * global_batch
    return available // global_batch * global_batch

  def __getitem__(self, index: int) -> Any:
    if index < 0 or index >= len(self):
      raise IndexError(f"Index {index} out of range for {len(self)} positions.")
    meta = self._inner[min(self.global_position(index), len(self._inner) - 1)]
    return grain.RecordMetadata(index=index, record_key=meta.record_key, rng=meta.rng)

  def __repr__(self) -> str:
    return (f"GlobalOrderSampler(inner={self._inner!r}, batch_size={self._batch_size}, "
            f"shard_count={self._shard_count}, start_index={self._start}, pad={self._pad})")


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
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    idx_dir: str | os.PathLike | None = None,
    num_records: int | None = None,
    fit: str = "auto",
    shapes_seed: int = 0,
    global_order: bool = True,
    start_index: int = 0,
    pad: bool = False,
    source: Any | None = None,
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
    data_dir: TFDS data directory.
    download: Let TFDS download missing datasets.
    idx_dir: fashion_mnist IDX fallback directory.
    num_records: See `get_source`.
    fit: See `preprocess_ops`.
    shapes_seed: shapes generator seed (see `get_source`).
    global_order: Process-count independent global batches (see above).
    start_index: With `global_order`, the global record position to start at.
    pad: With `global_order`, complete a final partial global batch with
      repeats of the last record (the caller masks them).
    source: The split's data source if already opened by `get_source` (then
      the source arguments above are not used).

  Returns:
    A `grain.DataLoader`.
  """
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}.")
  if worker_count:
    _ensure_absl_flags_parsed()
  if source is None:
    source = get_source(
        name, split, image_size=image_size, data_dir=data_dir, download=download,
        idx_dir=idx_dir, num_records=num_records, shapes_seed=shapes_seed,
    )
  shard_options = _shard_options(shard_index, shard_count)
  if global_order:
    # The loader reads sampler positions shard_index, shard_index + shard_count, ...;
    # GlobalOrderSampler maps them onto this shard's rows of each global batch.
    sampler = GlobalOrderSampler(
        grain.samplers.IndexSampler(
            num_records=len(source), shard_options=grain.sharding.NoSharding(),
            shuffle=shuffle, num_epochs=num_epochs, seed=seed),
        batch_size=batch_size, shard_count=shard_options.shard_count, start_index=start_index,
        pad=pad)
  else:
    if start_index or pad:
      raise ValueError("start_index and pad need global_order=True.")
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
  operations: list[Any] = preprocess_ops(name, image_size, fit=fit)
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
  processes, `base_config.data_shards`), so that every part gets the same
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
    record = self._source[key]
    for op in self._ops:
      record = op.map(record)
    return record

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
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    idx_dir: str | os.PathLike | None = None,
    num_records: int | None = None,
    fit: str = "auto",
    shapes_seed: int = 0,
    source: Any | None = None,
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
    data_dir: TFDS data directory.
    download: Let TFDS download missing datasets.
    idx_dir: fashion_mnist IDX fallback directory.
    num_records: See `get_source`.
    fit: See `preprocess_ops`.
    shapes_seed: shapes generator seed (see `get_source`).
    source: The split's source if already opened by `get_source`.

  Returns:
    An `EvalLoader`: batch dicts `image (S/n, H, W, C)`, `label (S/n,)`,
    `valid (S/n,) bool`.
  """
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
    source = get_source(name, split, image_size=image_size, data_dir=data_dir,
                        download=download, idx_dir=idx_dir, num_records=num_records,
                        shapes_seed=shapes_seed)
  slots = eval_slots(batch_size, multiple)
  num_batches = -(-len(source) // batch_size)
  if max_batches >= 0:
    num_batches = min(num_batches, int(max_batches))
  batch = _EvalBatch(source, preprocess_ops(name, image_size, fit=fit), int(batch_size), slots,
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
      record = self._source[self._order(position)]
      for op in self._ops:
        record = op.map(record)
      records.append(record)
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
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    idx_dir: str | os.PathLike | None = None,
    num_records: int | None = None,
    fit: str = "auto",
    shapes_seed: int = 0,
    source: Any | None = None,
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
    data_dir: TFDS data directory.
    download: Let TFDS download missing datasets.
    idx_dir: fashion_mnist IDX fallback directory.
    num_records: See `get_source`.
    fit: See `preprocess_ops`.
    shapes_seed: shapes generator seed (see `get_source`).
    source: The training split's source if already opened by `get_source`.

  Returns:
    A `TrainLoader` (iterable of batch dicts, with its `schedule`).
  """
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
    source = get_source(name, "train", image_size=image_size, data_dir=data_dir,
                        download=download, idx_dir=idx_dir, num_records=num_records,
                        shapes_seed=shapes_seed)
  schedule = BatchSchedule(len(source), int(batch_size), epoch_end, multiple)
  step_batch = _StepBatch(source, preprocess_ops(name, image_size, fit=fit), schedule,
                          _Order(len(source), shuffle, seed), index, count)
  stop = 2**62 if stop_step is None else max(int(stop_step), start_step)
  dataset = grain.MapDataset.range(start_step, stop).map(step_batch).to_iter_dataset(
      grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch_buffer_size))
  if worker_count:
    dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=worker_count, per_worker_buffer_size=worker_buffer_size))
  return TrainLoader(dataset, schedule, start_step)


def num_examples(name: str, split: str, **source_kwargs: Any) -> int:
  """Number of records in a split (opens the source; see `get_source` for kwargs)."""
  return len(get_source(name, split, **source_kwargs))
