"""Image folders: datasets kept as `<root>/<split>/<class>/<image>` files.

The layout in which many people keep CIFAR-10, CelebA subsets or their own
photos (torchvision's `ImageFolder`, TFDS's `ImageFolder`):

    <root>/train/<class>/<image>.{jpg,jpeg,png}
    <root>/test/<class>/<image>.{jpg,jpeg,png}

* Classes are the class folders' names in sorted order (Python's string
  order): class `i` is label `i`. Both splits must hold the same class
  folders.
* Records are ordered by a hash of their path `<class>/<file name>`
  (`record_order`): a fixed order that never depends on the file system and
  mixes the classes, so that any prefix of a split — a probe's first n
  training images, the first evaluation batches, the evaluation grid — holds
  every class in proportion (a folder order would give the first class
  only). Other files (another extension, hidden files) and folders inside a
  class folder are ignored.
* Decoding is Pillow's. A set with any colour image is read as RGB: grey
  images are converted to it, and RGBA / LA / palette images lose their alpha
  (Pillow's `convert`, no compositing); a set of only grey images is read as
  one channel. The conversion is reported once, as a warning. Images of 16
  bits or floats are refused.
* The size: when every image has one size `H×W`, that is the data's
  (`image_size` defaults to `min(H, W)`; `transforms.FitImage` fits it);
  when sizes differ, `image_size` must be set, and every image is fitted to
  it (`config.fit`: a centred square resized, by default).

Opening a split reads every file's header once (about 60 µs an image here,
3–4 s for CIFAR-10's 60 000 JPEGs with a warm disk cache), so that a bad
folder stops the run before anything compiles; the result is kept for the
life of the process while the folders are unchanged. Pixels are decoded when
a record is read. For long runs, `python -m leae_jax.prepare` writes the
decoded images once as prepared records.

The datasets read from such a tree are here too: `image_folder` (registered
here: any tree, its size, channels and classes from the files) and any TFDS
dataset whose `data_dir` is one (`tfds_source` opens it with
`open_image_folder`, its class folders checked against the dataset's
classes); `describe_folder` says what a tree holds.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import logging
import os
from typing import Any

import numpy as np

from leae_jax.data.errors import CorruptDataError
from leae_jax.data.errors import SPLITS
from leae_jax.data.errors import check_split
from leae_jax.data.errors import first_line
from leae_jax.data.registry import DatasetInfo
from leae_jax.data.registry import SourceOptions
from leae_jax.data.registry import dataset_info
from leae_jax.data.registry import register

__all__ = [
    "EXTENSIONS",
    "FolderFacts",
    "FolderIndex",
    "ImageFolderError",
    "ImageFolderSource",
    "describe_folder",
    "folder_facts",
    "is_image_folder",
    "open_image_folder",
    "reads_image_folder",
    "scan",
]

_log = logging.getLogger(__name__)

#: File name endings read as images (any case).
EXTENSIONS = (".jpg", ".jpeg", ".png")
#: Pillow modes of grey images (read as one channel when the whole set is grey).
_GREY_MODES = ("1", "L", "LA", "La")
#: Pillow modes of 8-bit colour images, converted to RGB.
_COLOUR_MODES = ("RGB", "RGBA", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa")
_LAYOUT = "<root>/{train,test}/<class>/<image>.{jpg,jpeg,png}"


class ImageFolderError(CorruptDataError):
  """An image folder that cannot be read as a dataset (its message names the path)."""


@dataclasses.dataclass(frozen=True)
class FolderIndex:
  """What one split of an image folder holds (`scan`).

  Attributes:
    root: The folder's root.
    split: 'train' or 'test'.
    classes: The class folders' names, sorted; label `i` is `classes[i]`.
    files: Every image's path relative to `root/split` ('<class>/<name>'), in record order.
    labels: `(N,)` int32 class of each file.
    sizes: `{(height, width): count}` over the split's images.
    modes: `{Pillow mode: count}` over the split's images.
    first_of_size: `{(height, width): a file of that size}` (for messages).
  """

  root: str
  split: str
  classes: tuple[str, ...]
  files: tuple[str, ...]
  labels: np.ndarray
  sizes: dict[tuple[int, int], int]
  modes: dict[str, int]
  first_of_size: dict[tuple[int, int], str]

  def __len__(self) -> int:
    return len(self.files)


def is_image_folder(root: str | os.PathLike | None) -> bool:
  """Whether `root` looks like an image folder: a `train` or `test` folder holding folders."""
  if root is None:
    return False
  for split in SPLITS:
    path = os.path.join(os.fspath(root), split)
    if os.path.isdir(path) and any(entry.is_dir() for entry in os.scandir(path)
                                   if not entry.name.startswith(".")):
      return True
  return False


def _is_image(name: str) -> bool:
  return not name.startswith(".") and name.lower().endswith(EXTENSIONS)


def _class_folders(root: str, split: str) -> list[str]:
  """The class folders of `root/split`, sorted; ImageFolderError for a missing or empty split."""
  if not os.path.isdir(root):
    what = "is not a folder" if os.path.exists(root) else "does not exist"
    raise ImageFolderError(f"image folder {root} {what}; an image folder holds {_LAYOUT}.")
  path = os.path.join(root, split)
  if not os.path.isdir(path):
    hint = ""
    if any(os.path.isdir(os.path.join(root, e)) and any(
        _is_image(f) for f in os.listdir(os.path.join(root, e))) for e in os.listdir(root)):
      hint = (f" ({root} holds class folders of images itself: give the folder above it, which "
              f"holds train/ and test/)")
    raise ImageFolderError(f"image folder {root} has no {split}/ folder{hint}; an image folder "
                           f"holds {_LAYOUT}.")
  classes = sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))
  if not classes:
    raise ImageFolderError(f"{path} holds no class folders; an image folder holds {_LAYOUT} "
                           f"(put images of one class, or all images, in a folder such as "
                           f"{os.path.join(path, 'all')}).")
  return classes


def _folder_stamp(root: str, split: str) -> tuple[Any, ...]:
  """Changes when a class folder of `root/split` gains, loses or renames a file or folder."""
  path = os.path.join(root, split)
  return tuple((e.name, e.stat().st_mtime_ns) for e in sorted(os.scandir(path), key=lambda e: e.name)
               if e.is_dir()) + (os.stat(path).st_mtime_ns,)


def scan(root: str | os.PathLike, split: str) -> FolderIndex:
  """Lists and checks one split of an image folder; ImageFolderError naming the path if it is bad.

  Reads every image's header (not its pixels): a file Pillow cannot identify
  as an image is refused, naming it. Kept while the folders are unchanged.
  """
  root = os.path.abspath(os.fspath(root))
  check_split(split)
  _class_folders(root, split)  # a missing root or split folder is reported before any stat
  return _scan(root, split, _folder_stamp(root, split))


@functools.lru_cache(maxsize=16)
def _scan(root: str, split: str, stamp: tuple[Any, ...]) -> FolderIndex:
  del stamp  # only the cache key: a changed folder is scanned again
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from PIL import UnidentifiedImageError  # pylint: disable=g-import-not-at-top

  classes = _class_folders(root, split)
  files: list[str] = []
  labels: list[int] = []
  sizes: collections.Counter = collections.Counter()
  modes: collections.Counter = collections.Counter()
  first_of_size: dict[tuple[int, int], str] = {}
  for label, name in enumerate(classes):
    folder = os.path.join(root, split, name)
    names = sorted(e.name for e in os.scandir(folder) if e.is_file() and _is_image(e.name))
    if not names:
      raise ImageFolderError(f"{folder} holds no images ({', '.join(EXTENSIONS)}); remove the "
                             f"folder or put its class's images in it.")
    for file_name in names:
      path = os.path.join(folder, file_name)
      try:
        with Image.open(path) as image:
          width, height = image.size
          mode = image.mode
      except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ImageFolderError(f"{path} cannot be decoded as an image ({first_line(err)}); "
                               f"remove or replace it.") from err
      if mode not in _GREY_MODES + _COLOUR_MODES:
        raise ImageFolderError(f"{path} is a {mode!r} image (16-bit or floating point); image "
                               f"folders hold 8-bit images: convert it to 8-bit grey or RGB.")
      relative = f"{name}/{file_name}"
      files.append(relative)
      labels.append(label)
      sizes[(height, width)] += 1
      modes[mode] += 1
      first_of_size.setdefault((height, width), relative)
  order = record_order(files)
  return FolderIndex(root=root, split=split, classes=tuple(classes),
                     files=tuple(files[i] for i in order),
                     labels=np.asarray(labels, np.int32)[order], sizes=dict(sizes),
                     modes=dict(modes), first_of_size=first_of_size)


def record_order(paths: list[str]) -> np.ndarray:
  """The record order of a split's `<class>/<file name>` paths: indices sorted by each
  path's BLAKE2b digest (ties, impossible in practice, by the path).

  A hash rather than a seeded shuffle: the same files give the same order on
  every machine and NumPy version, and adding or removing files leaves the
  others in their relative order.
  """
  keys = [(hashlib.blake2b(p.encode("utf-8"), digest_size=8).digest(), p) for p in paths]
  return np.asarray(sorted(range(len(paths)), key=keys.__getitem__), np.int64)


def _channels(indexes: list[FolderIndex]) -> int:
  """1 when every image of the set is grey, else 3 (the grey ones are converted to RGB)."""
  modes = collections.Counter()
  for index in indexes:
    modes.update(index.modes)
  return 1 if all(m in _GREY_MODES for m in modes) else 3


@functools.lru_cache(maxsize=16)
def _warn_conversions(root: str, stamps: tuple[Any, ...], channels: int, counts: tuple) -> None:
  """Once per folder state: which images are converted to the set's channels."""
  del stamps
  converted = {mode: n for mode, n in counts
               if (channels == 3 and mode != "RGB") or (channels == 1 and mode != "L")}
  if converted:
    target = "RGB" if channels == 3 else "grey (L)"
    alpha = " (alpha dropped)" if any("A" in m or m in ("P", "PA") for m in converted) else ""
    _log.warning("image folder %s: %s images converted to %s%s.", root,
                 ", ".join(f"{n} {m}" for m, n in sorted(converted.items())), target, alpha)


@dataclasses.dataclass(frozen=True)
class FolderFacts:
  """What a whole image folder holds (`folder_facts`).

  Attributes:
    root: The folder.
    classes: The class folders' names, sorted (label i = classes[i]).
    num_train: Images in train/.
    num_test: Images in test/.
    channels: 3 if any image is in colour, else 1.
    native_size: (height, width) of every image, or None when sizes differ.
  """

  root: str
  classes: tuple[str, ...]
  num_train: int
  num_test: int
  channels: int
  native_size: tuple[int, int] | None


def folder_facts(root: str | os.PathLike, *, image_size: int | None = None) -> FolderFacts:
  """Scans both splits of the image folder `root` and says what it holds.

  ImageFolderError (naming the path) when the folder is bad (`scan`), when
  its splits' class folders differ, or when its images differ in size and no
  `image_size` is set to fit them to. Warns once which images are converted
  to the set's channels.
  """
  indexes = [scan(root, split) for split in SPLITS]
  train, test = indexes
  if train.classes != test.classes:
    only_train = sorted(set(train.classes) - set(test.classes))
    only_test = sorted(set(test.classes) - set(train.classes))
    parts = [f"only in train/: {', '.join(only_train)}" if only_train else "",
             f"only in test/: {', '.join(only_test)}" if only_test else ""]
    raise ImageFolderError(f"image folder {train.root}: the class folders of train/ and test/ "
                           f"differ ({'; '.join(p for p in parts if p)}); both splits need the "
                           f"same classes.")
  sizes: collections.Counter = collections.Counter()
  modes: collections.Counter = collections.Counter()
  first: dict[tuple[int, int], str] = {}
  for index in indexes:
    sizes.update(index.sizes)
    modes.update(index.modes)
    for size, name in index.first_of_size.items():
      first.setdefault(size, f"{index.split}/{name}")
  native = next(iter(sizes)) if len(sizes) == 1 else None
  if native is None and not image_size:
    (a, _), (b, _) = sizes.most_common(2)
    raise ImageFolderError(
        f"image folder {train.root}: images differ in size ({first[a]} is {a[0]}×{a[1]}, "
        f"{first[b]} is {b[0]}×{b[1]}; {len(sizes)} sizes in all) and no image_size is set: set "
        f"--config.image_size=S to fit every image to S×S (--config.fit: auto or resize = the "
        f"centred square resized, center_crop, pad).")
  channels = _channels(indexes)
  _warn_conversions(train.root, (len(train), len(test)), channels, tuple(sorted(modes.items())))
  return FolderFacts(root=train.root, classes=train.classes, num_train=len(train),
                     num_test=len(test), channels=channels, native_size=native)


class ImageFolderSource:
  """Random-access source over one split of an image folder (`scan` lists it).

  Records are `{'image': uint8 (H, W, C), 'label': int32}` in the order the
  module docstring gives, decoded when read; `C` is 3 when the set has any
  colour image (`channels`), else 1. Picklable, with a stable repr (grain
  validates checkpoints with it).
  """

  def __init__(self, root: str | os.PathLike, split: str, *, channels: int | None = None):
    self.index = scan(root, split)
    self.root = self.index.root
    self.split = split
    self.channels = int(channels or _channels([self.index]))
    self._mode = "RGB" if self.channels == 3 else "L"

  @property
  def classes(self) -> tuple[str, ...]:
    return self.index.classes

  def __len__(self) -> int:
    return len(self.index)

  def __repr__(self) -> str:
    return (f"ImageFolderSource(root={self.root!r}, split={self.split!r}, "
            f"num_records={len(self)}, channels={self.channels})")

  def path(self, index: int) -> str:
    """The file of record `index`."""
    return os.path.join(self.root, self.split, self.index.files[int(index)])

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    index = int(index)
    if not 0 <= index < len(self):
      raise IndexError(f"index {index} out of range for {self!r}.")
    path = self.path(index)
    from PIL import Image  # pylint: disable=g-import-not-at-top

    try:
      with Image.open(path) as image:
        pixels = np.asarray(image.convert(self._mode), np.uint8)
    except (OSError, ValueError) as err:  # truncated or corrupt data past a valid header
      raise ImageFolderError(f"{path} cannot be decoded ({first_line(err)}); remove or "
                             f"replace it.") from err
    if pixels.ndim == 2:
      pixels = pixels[:, :, None]
    return {"image": pixels, "label": self.index.labels[index]}


# ---------------------------------------------------------------------------
# The datasets read from image folders: `image_folder`, and any TFDS dataset
# whose `data_dir` is one (`tfds_source` opens those with `open_image_folder`).
# ---------------------------------------------------------------------------


def open_image_folder(info: DatasetInfo, split: str, options: SourceOptions) -> ImageFolderSource:
  """`split` of the image folder `options.data_dir`, checked as `describe` checks it."""
  described = describe_folder(dataset_info(info.name), options)
  return ImageFolderSource(options.data_dir, split, channels=described.channels)


def reads_image_folder(info: DatasetInfo, options: SourceOptions) -> bool:
  """Whether `info`'s split opens as an image folder with these options (`image_folder`)."""
  if options.prepared_dir is not None:
    return False
  return info.opener is open_image_folder or (
      info.tfds_name is not None and is_image_folder(options.data_dir))


def describe_folder(info: DatasetInfo, options: SourceOptions) -> DatasetInfo:
  """`info` completed with what the image folder `options` point at holds (`sources.describe`).

  The image size (`native_size`, and `image_size` its shorter side unless
  `options` set one), channels, classes and split sizes come from the files
  (`folder_facts`, which checks the whole folder), and the class folders must
  be the dataset's `class_names`. `info` as it is when its split does not
  open as an image folder (`reads_image_folder`).

  Raises:
    ImageFolderError: the folder is missing or bad, or not this dataset's (one line naming it).
  """
  if not reads_image_folder(info, options):
    return info
  name = info.name
  if options.data_dir is None:
    raise ImageFolderError(
        f"dataset={name!r} reads an image folder: set --config.data_dir=DIR, where DIR holds "
        f"DIR/{{train,test}}/<class>/<image>.jpg|png.")
  image_size = options.image_size if options.image_size and options.image_size > 0 else None
  facts = folder_facts(options.data_dir, image_size=image_size)
  if info.class_names is not None and facts.classes != info.class_names:
    raise ImageFolderError(
        f"image folder {facts.root} has the class folders {', '.join(facts.classes)}, but "
        f"{name} has the classes {', '.join(info.class_names)}; use --config.dataset=image_folder "
        f"for another dataset.")
  if info.channels and facts.channels != info.channels:
    raise ImageFolderError(
        f"image folder {facts.root} holds {facts.channels}-channel images, but {name} has "
        f"{info.channels}; use --config.dataset=image_folder for another dataset.")
  native = facts.native_size
  labelled = info.has_labels or info.opener is open_image_folder  # CelebA's folders: no classes
  return dataclasses.replace(
      info, image_size=info.image_size or (min(native) if native else int(image_size)),
      channels=facts.channels, num_classes=len(facts.classes) if labelled else None,
      has_labels=labelled, num_train=facts.num_train, num_test=facts.num_test,
      native_size=native, class_names=facts.classes if labelled else None)


# Any image folder (`--config.data_dir=DIR`): its size, channels, classes and
# split sizes come from the files (`describe_folder`).
register(DatasetInfo(
    name="image_folder", image_size=0, channels=0, num_classes=None, has_labels=True,
    opener=open_image_folder,
))
