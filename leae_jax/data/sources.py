"""Datasets: the registry, and the random-access sources of raw records its entries open.

Every dataset is one `DatasetInfo` entry of the registry (`_REGISTRY`, at the
end of this module): what its images are, and how to open a split of it
(`DatasetInfo.opener`, called by `DatasetInfo.open`). `get_source` looks the
name up and opens the split, so adding a dataset is adding one entry. The
sources here are the procedural `ShapesSource`, `IdxSource` over the original
(Fashion-)MNIST IDX files, and TFDS's ArrayRecord `tfds.data_source`; image
folders (`<root>/<split>/<class>/<image>`) are read by `image_folder`, as the
`image_folder` dataset and as any TFDS dataset whose `data_dir` is one.
Where what a dataset holds depends on its files (an image folder's size,
channels, classes and split sizes), `describe` says it.
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
import shutil
import socket
import zlib
from typing import Any, Callable, Iterator

import numpy as np

from leae_jax.data import image_folder
from leae_jax.data.errors import SPLITS
from leae_jax.data.errors import CorruptDataError
from leae_jax.data.errors import DatasetUnavailableError
from leae_jax.data.errors import check_split
from leae_jax.data.errors import first_line

__all__ = [
    "DEFAULT_IDX_DIR",
    "PREPARE_INSTALL",
    "SHAPE_NAMES",
    "CorruptDataError",
    "DatasetInfo",
    "DatasetUnavailableError",
    "IdxSource",
    "ShapesSource",
    "SourceOptions",
    "dataset_info",
    "describe",
    "get_source",
    "num_examples",
    "read_idx",
    "reads_image_folder",
    "valid_names",
]

_log = logging.getLogger(__name__)

#: Where the Debian package `dataset-fashion-mnist` installs the original files.
DEFAULT_IDX_DIR = "/usr/share/datasets/fashion-mnist/"



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
      from leae_jax.data import prepared  # pylint: disable=g-import-not-at-top

      source = prepared.open_prepared(options.prepared_dir, self.name, split,
                                      options.image_size or self.image_size or None)
    else:
      source = self.opener(self, split, options)
    if options.num_records is not None and options.num_records != len(source):
      source = _FirstRecords(source, options.num_records)
    return source


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
    check_split(split)
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
    rng = np.random.default_rng([self.seed, SPLITS.index(self.split), index])
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


class _FirstRecords:
  """The first `num_records` records of another source (quick runs and tests)."""

  def __init__(self, source: Any, num_records: int):
    if not 0 < num_records <= len(source):
      raise ValueError(f"num_records must be in [1, {len(source)}], got {num_records}.")
    self.source = source
    self.num_records = int(num_records)
    self.fitted = getattr(source, "fitted", False)  # see `prepared.PreparedSource`

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


def _how_to_provide(info: DatasetInfo, *, download: bool = True) -> str:
  """What to pass to read `info`'s dataset, for the end of an error line."""
  name = info.tfds_name or info.name
  text = (f"pass --config.data_dir=DIR, where DIR holds {name} as an image folder "
          f"(DIR/{{train,test}}/<class>/<image>.jpg|png) or a prepared TFDS copy "
          f"(DIR/{name}/<version>/)")
  return text + (", or --config.download=true on a machine with a network" if download else "")


#: Seconds to wait for a dataset's download host before calling the machine offline.
NETWORK_TIMEOUT = 5.0


def _check_network(info: DatasetInfo) -> None:
  """DatasetUnavailableError at once when `info.download_host` cannot be reached (offline)."""
  host = info.download_host
  if host is None:
    return
  try:
    socket.create_connection((host, 443), timeout=NETWORK_TIMEOUT).close()
  except OSError as err:
    raise DatasetUnavailableError(
        f"cannot download {info.tfds_name}: {host} (where TFDS fetches it from) cannot be "
        f"reached ({first_line(err)}); nothing was downloaded. Without a network, "
        f"{_how_to_provide(info, download=False)}."
    ) from err


@contextlib.contextmanager
def _removed_on_failure(folder: str) -> Iterator[None]:
  """Deletes what appears in `folder` (and `folder` itself, if new) when the body raises:
  a failed download leaves no partial files behind."""
  existed = os.path.isdir(folder)
  before = set(os.listdir(folder)) if existed else set()
  try:
    yield
  except BaseException:
    if not existed:
      shutil.rmtree(folder, ignore_errors=True)
    elif os.path.isdir(folder):
      for entry in set(os.listdir(folder)) - before:
        path = os.path.join(folder, entry)
        if os.path.isdir(path) and not os.path.islink(path):
          shutil.rmtree(path, ignore_errors=True)
        else:
          with contextlib.suppress(OSError):
            os.remove(path)
    raise


def _tfds_source(info: DatasetInfo, split: str, options: SourceOptions) -> Any:
  """The split from `options.data_dir`: an image folder, or TFDS's copy (`tfds.data_source`).

  A `data_dir` laid out as an image folder (`image_folder`) is read as one,
  its class folders checked against the dataset's classes. Otherwise TFDS
  reads its ArrayRecord copy (needs only `tensorflow_datasets`); building one
  (`download=True` on a missing dataset) also needs TensorFlow and a network:
  without TensorFlow nothing is downloaded and the error names
  `PREPARE_INSTALL`; offline, the download host is tried for a few seconds
  (`NETWORK_TIMEOUT`) and nothing is written. Any failure is one
  DatasetUnavailableError line saying what to pass.
  """
  assert info.tfds_name is not None
  data_dir, download = options.data_dir, options.download
  if image_folder.is_image_folder(data_dir):
    return _image_folder_source(info, split, options)
  data_dir_str = _tfds_data_dir(data_dir)
  name = info.tfds_name
  if data_dir is not None and not os.path.isdir(data_dir_str):
    raise DatasetUnavailableError(f"data_dir={data_dir_str} does not exist; {_how_to_provide(info)}.")
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as err:
    raise DatasetUnavailableError(
        f"Dataset {info.name!r} needs TensorFlow Datasets: pip install -e . "
        f"({first_line(err)})."
    ) from err

  def read(download_now: bool) -> Any:
    # TFDS warns about what it does not find (e.g. "Variant folder ... has no
    # dataset_info.json") on its way to failing; the error below says it all.
    with _absl_warnings_silenced():
      return tfds.data_source(name, split=info.split_name(split),
                              data_dir=None if data_dir is None else os.fspath(data_dir),
                              download=download_now)

  try:
    return read(False)
  except Exception as err:  # pylint: disable=broad-except
    # TFDS reports a missing dataset as e.g. a NotImplementedError about the
    # TFRECORD format: say instead what the folder lacks and what to pass.
    read_error = err
  if _has_prepared_copy(data_dir_str, name):
    raise DatasetUnavailableError(
        f"the TFDS copy of {name} under data_dir={data_dir_str} cannot be read "
        f"[{first_line(read_error)}]; TFDS reads ArrayRecord copies (`tfds build {name} "
        f"--file_format=array_record`)."
    ) from read_error
  if not download:
    where = (f"data_dir={data_dir_str} holds neither an image folder nor a TFDS copy of {name}"
             if data_dir is not None else
             f"{name} is not in TFDS's default folder {data_dir_str}")
    raise DatasetUnavailableError(f"{where}: {_how_to_provide(info)}.") from read_error
  if not _tensorflow_installed():  # a download TFDS cannot prepare would be wasted
    raise DatasetUnavailableError(
        f"preparing {name} needs TensorFlow: {PREPARE_INSTALL} (there is no prepared "
        f"ArrayRecord copy under data_dir={data_dir_str!r}; one built elsewhere with "
        f"`tfds build {name} --data_dir=<dir> --file_format=array_record` can be copied "
        f"to {os.path.join(data_dir_str, name)})."
    ) from read_error
  _check_network(info)
  try:
    with _removed_on_failure(data_dir_str):
      return read(True)
  except Exception as err:  # pylint: disable=broad-except
    raise DatasetUnavailableError(
        f"downloading {name} into data_dir={data_dir_str} failed [{first_line(err)}]; nothing "
        f"was kept. Or {_how_to_provide(info, download=False)}."
    ) from err


def _image_folder_source(info: DatasetInfo, split: str,
                         options: SourceOptions) -> image_folder.ImageFolderSource:
  """`split` of the image folder `options.data_dir`, checked as `describe` checks it."""
  described = describe(info.name, **dataclasses.asdict(options))
  return image_folder.ImageFolderSource(options.data_dir, split, channels=described.channels)


def _fashion_mnist_source(info: DatasetInfo, split: str, options: SourceOptions) -> Any:
  """TFDS's fashion_mnist, else the IDX files in `options.idx_dir` (default `DEFAULT_IDX_DIR`)."""
  try:
    return _tfds_source(info, split, options)
  except DatasetUnavailableError as tfds_err:
    idx_dir = os.fspath(DEFAULT_IDX_DIR if options.idx_dir is None else options.idx_dir)
    try:
      source = IdxSource(idx_dir, split)
    except FileNotFoundError as err:
      raise DatasetUnavailableError(
          f"fashion_mnist is unavailable: TFDS has no prepared copy under "
          f"data_dir={_tfds_data_dir(options.data_dir)!r} and {err}. Either install the original "
          f"files with `apt-get install dataset-fashion-mnist` (they go to "
          f"{DEFAULT_IDX_DIR}), pass idx_dir=<directory with "
          f"{', '.join(_IDX_FILES[split])}>, or prepare it with TFDS: {tfds_err}"
      ) from err
    _log.info("TFDS fashion_mnist unavailable; reading IDX files from %s", idx_dir)
    return source


def _shapes_source(info: DatasetInfo, split: str, options: SourceOptions) -> ShapesSource:
  """Generated at `options.image_size` (default: the registry's), `num_records` of them."""
  return ShapesSource(split, image_size=options.image_size or info.image_size,
                      num_records=options.num_records, seed=options.shapes_seed)


# ---------------------------------------------------------------------------
# The registry: one entry per dataset, which knows how to open itself.
# ---------------------------------------------------------------------------

_REGISTRY: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            name="shapes", image_size=32, channels=1, num_classes=3, has_labels=True,
            num_train=10_000, num_test=2_000, opener=_shapes_source,
        ),
        DatasetInfo(
            name="fashion_mnist", image_size=32, channels=1, num_classes=10, has_labels=True,
            num_train=60_000, num_test=10_000, native_size=(28, 28), tfds_name="fashion_mnist",
            opener=_fashion_mnist_source,
            download_host="fashion-mnist.s3-website.eu-central-1.amazonaws.com",
        ),
        DatasetInfo(
            name="cifar10", image_size=32, channels=3, num_classes=10, has_labels=True,
            num_train=50_000, num_test=10_000, native_size=(32, 32), tfds_name="cifar10",
            opener=_tfds_source, download_host="www.cs.toronto.edu",
            class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                         "ship", "truck"),
        ),
        DatasetInfo(
            name="celeb_a", image_size=128, channels=3, num_classes=None, has_labels=False,
            num_train=162_770, num_test=19_962, native_size=(218, 178), tfds_name="celeb_a",
            fit="center_crop", opener=_tfds_source, download_host="mmlab.ie.cuhk.edu.hk",
        ),
        # Any image folder (`--config.data_dir=DIR`): its size, channels,
        # classes and split sizes come from the files (`describe`).
        DatasetInfo(
            name="image_folder", image_size=0, channels=0, num_classes=None, has_labels=True,
            opener=_image_folder_source,
        ),
    )
}


def register(info: DatasetInfo) -> DatasetInfo:
  """Adds a dataset to the registry (the sequence datasets of `data.series` use it)."""
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


def reads_image_folder(info: DatasetInfo, options: SourceOptions) -> bool:
  """Whether `info`'s split opens as an image folder with these options (`image_folder`)."""
  if options.prepared_dir is not None:
    return False
  return info.opener is _image_folder_source or (
      info.tfds_name is not None and image_folder.is_image_folder(options.data_dir))


def describe(name: str, **options: Any) -> DatasetInfo:
  """`name`'s registry entry, completed with what the data that `options` point at holds.

  Read from an image folder (dataset `image_folder`, or a TFDS dataset whose
  `data_dir` is one): the image size (`native_size`, and `image_size` its
  shorter side unless `options` set one), channels, classes and split sizes
  come from the files (`image_folder.folder_facts`, which checks the whole
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
    from leae_jax.data import prepared  # pylint: disable=g-import-not-at-top

    manifest = prepared.read_manifest(opts.prepared_dir)
    splits = manifest.get("splits", {})
    facts = manifest.get("described", {})
    return dataclasses.replace(
        info, image_size=info.image_size or int(manifest["image_size"]),
        channels=int(manifest["channels"]),
        num_train=splits.get("train", {}).get("num_records", info.num_train),
        num_test=splits.get("test", {}).get("num_records", info.num_test),
        num_classes=facts.get("num_classes", info.num_classes),
        class_names=tuple(facts["class_names"]) if facts.get("class_names") else info.class_names)
  if not reads_image_folder(info, opts):
    return info
  if opts.data_dir is None:
    raise image_folder.ImageFolderError(
        f"dataset={name!r} reads an image folder: set --config.data_dir=DIR, where DIR holds "
        f"DIR/{{train,test}}/<class>/<image>.jpg|png.")
  image_size = opts.image_size if opts.image_size and opts.image_size > 0 else None
  facts = image_folder.folder_facts(opts.data_dir, image_size=image_size)
  if info.class_names is not None and facts.classes != info.class_names:
    raise image_folder.ImageFolderError(
        f"image folder {facts.root} has the class folders {', '.join(facts.classes)}, but "
        f"{name} has the classes {', '.join(info.class_names)}; use --config.dataset=image_folder "
        f"for another dataset.")
  if info.channels and facts.channels != info.channels:
    raise image_folder.ImageFolderError(
        f"image folder {facts.root} holds {facts.channels}-channel images, but {name} has "
        f"{info.channels}; use --config.dataset=image_folder for another dataset.")
  native = facts.native_size
  labelled = info.has_labels or info.opener is _image_folder_source  # CelebA's folders: no classes
  return dataclasses.replace(
      info, image_size=info.image_size or (min(native) if native else int(image_size)),
      channels=facts.channels, num_classes=len(facts.classes) if labelled else None,
      has_labels=labelled, num_train=facts.num_train, num_test=facts.num_test,
      native_size=native, class_names=facts.classes if labelled else None)


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
