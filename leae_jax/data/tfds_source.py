"""TFDS datasets: a split from TFDS's ArrayRecord copy (`tfds.data_source`) or an image folder.

`open_tfds` opens a TFDS-backed dataset: from an image folder when its
`data_dir` is one (`image_folder`), else from TFDS's prepared copy, building
one on request (`download=True`). Each way it can fail is one
`DatasetUnavailableError` line saying what to pass (`_how_to_provide`): no
copy, no TensorFlow to build one (`PREPARE_INSTALL`), no network
(`_check_network`, which gives up after `NETWORK_TIMEOUT`), or a failed
download, which leaves no files behind (`_removed_on_failure`). TensorFlow
Datasets is imported only when a split is opened. Registers `cifar10` and
`celeb_a` on import (`fashion_mnist`, which falls back to its IDX files, is
`idx`'s).
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import logging
import os
import shutil
import socket
from typing import Any, Iterator

from leae_jax.data import image_folder
from leae_jax.data.errors import DatasetUnavailableError
from leae_jax.data.errors import first_line
from leae_jax.data.registry import DatasetInfo
from leae_jax.data.registry import SourceOptions
from leae_jax.data.registry import register

__all__ = [
    "NETWORK_TIMEOUT",
    "PREPARE_INSTALL",
    "open_tfds",
    "tfds_data_dir",
]


def tfds_data_dir(data_dir: str | os.PathLike | None) -> str:
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


def open_tfds(info: DatasetInfo, split: str, options: SourceOptions) -> Any:
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
    return image_folder.open_image_folder(info, split, options)
  data_dir_str = tfds_data_dir(data_dir)
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


register(DatasetInfo(
    name="cifar10", image_size=32, channels=3, num_classes=10, has_labels=True,
    num_train=50_000, num_test=10_000, native_size=(32, 32), tfds_name="cifar10",
    opener=open_tfds, download_host="www.cs.toronto.edu",
    class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"),
))
register(DatasetInfo(
    name="celeb_a", image_size=128, channels=3, num_classes=None, has_labels=False,
    num_train=162_770, num_test=19_962, native_size=(218, 178), tfds_name="celeb_a",
    fit="center_crop", opener=open_tfds, download_host="mmlab.ie.cuhk.edu.hk",
))
