"""Sequence datasets: procedural series and UEA BasicMotions, registered with `modality='sequence'`.

Records are `{'image': float32 (L, C), 'label': int32}`: the model input keeps
the pipeline's one key whatever its kind (`image` is "the input" here), so the
loaders, the sharding and the training loop carry series unchanged.
`image_size` is the series length (`config.image_size`, -1: the dataset's).

Normalisation: **per channel**, with the mean and standard deviation of each
channel over all time steps of the training split (`ChannelStats`), the same
for every series and for both splits. Per-series normalisation would erase
the amplitude and offset differences between series (a walking and a
standing recording differ mostly in amplitude); per channel keeps them, and
the reconstruction errors are in units of each channel's spread.

Datasets:
  synthetic_series   procedural, 3 channels, 128 steps: sums of sines, chirps,
                     steps or spikes (the label) on a slow background wave, with
                     per-channel gains and noise; every record a function of
                     (seed, split, index). 10 000 train / 1 000 test.
  uea_basic_motions  UEA BasicMotions (real, labelled: standing, running,
                     walking, badminton): 6 channels (3-axis accelerometer and
                     gyroscope of a smart watch), 100 steps at 10 Hz, 40 train /
                     40 test. Read from the `.ts` files that `sktime` installs
                     with itself (`pip install -e ".[timeseries]"`; nothing is
                     downloaded), or from `data_dir` if it holds
                     `BasicMotions_TRAIN.ts` / `BasicMotions_TEST.ts`. Its 100
                     steps are centre-cropped to 96 (2 steps off each end), a
                     length the model's three halvings divide.

Lengths: `FitLength` centre-crops a series at most 1.25× the requested length
(values stay exact) and resamples any other linearly.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
from typing import Any

import grain
import numpy as np

from leae_jax.data.errors import CorruptDataError
from leae_jax.data.errors import DatasetUnavailableError
from leae_jax.data.errors import check_split
from leae_jax.data.registry import DatasetInfo
from leae_jax.data.registry import SourceOptions
from leae_jax.data.registry import dataset_info
from leae_jax.data.registry import register

__all__ = [
    "SYNTHETIC_KINDS",
    "ChannelStats",
    "FitLength",
    "Standardise",
    "SyntheticSeriesSource",
    "UeaSource",
    "channel_stats",
    "read_ts",
    "sktime_data_dir",
]

SYNTHETIC_KINDS = ("sines", "chirp", "steps", "spikes")
TIMESERIES_INSTALL = 'pip install -e ".[timeseries]"'


# ---------------------------------------------------------------------------
# Procedural series.


class SyntheticSeriesSource:
  """Procedural multichannel series, one kind per record (the label), generated per index.

  On `t = i/L` (`i < L`): a slow background wave `0.3·sin(2π f t + φ_c)`
  (f in 0.5–2 cycles), plus by kind:

  * 0 `sines`: 2–3 sines of 2–24 cycles, amplitude 0.4–1, phase per channel;
  * 1 `chirp`: a linear chirp from 1–4 to 12–32 cycles, phase per channel;
  * 2 `steps`: a piecewise-constant level with 2–4 jumps at shared times;
  * 3 `spikes`: 3–6 Gaussian spikes of 0.5–1.5 steps' width, amplitude ±1.5–3;

  each channel scaled by its own gain (0.5–1.5), plus white noise of standard
  deviation 0.05–0.15. Steps and spikes are broadband: the detail that
  coarse codes lose first. Deterministic, picklable, no storage.
  """

  def __init__(self, split: str, *, length: int = 128, channels: int = 3,
               num_records: int | None = None, seed: int = 0):
    check_split(split)
    if length < 8:
      raise ValueError(f"synthetic_series needs a length >= 8, got {length}.")
    if seed < 0:
      raise ValueError(f"seed must be non-negative, got {seed}.")
    default = dataset_info("synthetic_series").split_size(split)
    self.split = split
    self.length = int(length)
    self.channels = int(channels)
    self.num_records = int(default if num_records is None else num_records)
    if self.num_records <= 0:
      raise ValueError(f"num_records must be positive, got {self.num_records}.")
    self.seed = int(seed)

  def __len__(self) -> int:
    return self.num_records

  def __repr__(self) -> str:
    return (f"SyntheticSeriesSource(split={self.split!r}, length={self.length}, "
            f"channels={self.channels}, num_records={self.num_records}, seed={self.seed})")

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    index = int(index)
    if not 0 <= index < self.num_records:
      raise IndexError(f"index {index} out of range for {self!r}.")
    rng = np.random.default_rng([self.seed, 1 + ("train", "test").index(self.split), index])
    n, c = self.length, self.channels
    t = (np.arange(n) / n)[:, None]
    steps = np.arange(n)[:, None]
    kind = int(rng.integers(len(SYNTHETIC_KINDS)))
    x = 0.3 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t + rng.uniform(0, 2 * np.pi, c))
    if kind == 0:
      for _ in range(int(rng.integers(2, 4))):
        x = x + rng.uniform(0.4, 1.0) * np.sin(
            2 * np.pi * rng.uniform(2, 24) * t + rng.uniform(0, 2 * np.pi, c))
    elif kind == 1:
      f0, f1 = rng.uniform(1, 4), rng.uniform(12, 32)
      x = x + rng.uniform(0.6, 1.0) * np.sin(
          2 * np.pi * (f0 * t + 0.5 * (f1 - f0) * t * t) + rng.uniform(0, 2 * np.pi, c))
    elif kind == 2:
      jumps = np.sort(rng.uniform(0.1, 0.9, int(rng.integers(2, 5))))
      levels = rng.uniform(-1.5, 1.5, len(jumps) + 1)
      x = x + levels[np.searchsorted(jumps, t[:, 0])][:, None]
    else:
      for _ in range(int(rng.integers(3, 7))):
        centre, width = rng.uniform(0, n), rng.uniform(0.5, 1.5)
        amplitude = rng.uniform(1.5, 3.0) * rng.choice((-1.0, 1.0))
        x = x + amplitude * np.exp(-0.5 * ((steps - centre) / width) ** 2)
    x = x * rng.uniform(0.5, 1.5, c) + rng.normal(0.0, rng.uniform(0.05, 0.15), (n, c))
    return {"image": x.astype(np.float32), "label": np.int32(kind)}


def _synthetic_source(info: DatasetInfo, split: str, options: SourceOptions) -> SyntheticSeriesSource:
  return SyntheticSeriesSource(split, length=options.image_size or info.image_size,
                               channels=info.channels, num_records=options.num_records,
                               seed=options.shapes_seed)


# ---------------------------------------------------------------------------
# UEA archive files (.ts), as sktime ships them.


def sktime_data_dir() -> str | None:
  """The directory of the data sets `sktime` installs with itself (None without sktime).

  Found without importing sktime (which is slow to import): only its files are read.
  """
  try:
    spec = importlib.util.find_spec("sktime")
  except (ImportError, ValueError):
    return None
  if spec is None or not spec.submodule_search_locations:
    return None
  return os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data")


def read_ts(path: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
  """Reads an equal-length `.ts` file (the UEA/UCR archive format).

  Returns `(series (N, L, C) float32, labels (N,) int32, class names)`; label
  `k` is the k-th class of the header's `@classLabel` line.

  Raises:
    CorruptDataError: the file is not an equal-length, labelled `.ts` file.
  """
  classes: tuple[str, ...] = ()
  rows, labels = [], []
  in_data = False
  with open(path) as f:
    for number, line in enumerate(f, 1):
      line = line.strip()
      if not line or line.startswith("#"):
        continue
      if not in_data:
        lower = line.lower()
        if lower.startswith("@classlabel"):
          parts = line.split()
          if len(parts) < 3 or parts[1].lower() != "true":
            raise CorruptDataError(f"{path}:{number}: expected '@classLabel true <classes>'.")
          classes = tuple(parts[2:])
        elif lower.startswith("@data"):
          in_data = True
        continue
      *dims, label = line.split(":")
      if label not in classes or not dims:
        raise CorruptDataError(f"{path}:{number}: a series with label {label!r}, not one of the "
                               f"header's classes {', '.join(classes) or '(none)'}.")
      try:
        rows.append([np.array(d.split(","), np.float32) for d in dims])
      except ValueError as err:
        raise CorruptDataError(f"{path}:{number}: {err}; the file is truncated or corrupt.") from err
      labels.append(classes.index(label))
  if not rows:
    raise CorruptDataError(f"{path}: no series after '@data'; the file is truncated or not a .ts file.")
  shapes = {tuple(len(d) for d in r) for r in rows}
  if len(shapes) != 1 or len(set(next(iter(shapes)))) != 1:
    raise CorruptDataError(f"{path}: series of unequal lengths or dimensions {sorted(shapes)[:3]}; "
                           "only equal-length files are supported.")
  series = np.stack([np.stack(r, axis=-1) for r in rows]).astype(np.float32)
  if not np.all(np.isfinite(series)):
    raise CorruptDataError(f"{path}: missing or non-finite values.")
  return series, np.asarray(labels, np.int32), classes


@functools.lru_cache(maxsize=8)
def _read_split(path: str) -> tuple[np.ndarray, np.ndarray]:
  series, labels, _ = read_ts(path)
  series.setflags(write=False)
  labels.setflags(write=False)
  return series, labels


class UeaSource:
  """Random-access source over one split of a UEA `.ts` problem: `{'image': (L, C), 'label'}`."""

  def __init__(self, problem: str, split: str, directory: str):
    check_split(split)
    self.problem = problem
    self.split = split
    self.path = os.path.join(directory, f"{problem}_{split.upper()}.ts")
    if not os.path.isfile(self.path):
      raise FileNotFoundError(f"missing {self.path}")
    self._series, self._labels = _read_split(self.path)

  def __len__(self) -> int:
    return int(self._labels.shape[0])

  def __repr__(self) -> str:
    return f"UeaSource(path={self.path!r}, num_records={len(self)})"

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    index = int(index)
    return {"image": self._series[index], "label": self._labels[index]}


def _uea_directory(problem: str, options: SourceOptions) -> str:
  """`options.data_dir` if it holds the problem's files, else sktime's copy."""
  if options.data_dir is not None and os.path.isfile(
      os.path.join(os.fspath(options.data_dir), f"{problem}_TRAIN.ts")):
    return os.fspath(options.data_dir)
  shipped = sktime_data_dir()
  if shipped is None:
    raise DatasetUnavailableError(
        f"{problem} is read from the files sktime installs with itself, and sktime is not "
        f"installed: {TIMESERIES_INSTALL} (or pass data_dir=<a directory with "
        f"{problem}_TRAIN.ts and {problem}_TEST.ts>).")
  return os.path.join(shipped, problem)


def _uea_opener(problem: str):
  def opener(info: DatasetInfo, split: str, options: SourceOptions) -> UeaSource:
    del info
    directory = _uea_directory(problem, options)
    try:
      return UeaSource(problem, split, directory)
    except FileNotFoundError as err:
      raise DatasetUnavailableError(
          f"{problem}: {err}; reinstall sktime ({TIMESERIES_INSTALL}) or pass data_dir=<a "
          f"directory with {problem}_TRAIN.ts and {problem}_TEST.ts>.") from err

  return opener


# ---------------------------------------------------------------------------
# Preprocessing: length, then per-channel normalisation.


@dataclasses.dataclass(frozen=True)
class FitLength(grain.transforms.Map):
  """Brings a series `(L, C)` to `length` steps.

  Centre-crops (`(L − length)//2` steps off the start) when `length <= L <=
  1.25·length`, so values stay exact; otherwise resamples the whole series
  linearly (output step i at input position `i·(L−1)/(length−1)`).
  """

  length: int

  def map(self, element: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    series = np.asarray(element["image"], np.float32)
    n = series.shape[0]
    if n == self.length:
      return element
    if self.length < n <= 1.25 * self.length:
      start = (n - self.length) // 2
      return {**element, "image": series[start:start + self.length]}
    positions = np.linspace(0.0, n - 1.0, self.length)
    out = np.stack([np.interp(positions, np.arange(n), series[:, c])
                    for c in range(series.shape[1])], axis=-1)
    return {**element, "image": out.astype(np.float32)}


@dataclasses.dataclass(frozen=True)
class ChannelStats:
  """Per-channel mean and standard deviation (over the training split's series and steps)."""

  mean: tuple[float, ...]
  std: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class Standardise(grain.transforms.Map):
  """`(x − mean) / std` per channel; the label is kept (int32)."""

  stats: ChannelStats

  def map(self, element: dict[str, Any]) -> dict[str, np.ndarray]:
    mean = np.asarray(self.stats.mean, np.float32)
    std = np.asarray(self.stats.std, np.float32)
    series = (np.asarray(element["image"], np.float32) - mean) / std
    return {"image": np.ascontiguousarray(series, np.float32),
            "label": np.int32(element.get("label", -1))}


#: Training series the statistics are estimated from, at most.
_STATS_RECORDS = 2048


@functools.lru_cache(maxsize=16)
def channel_stats(name: str, length: int) -> ChannelStats:
  """The per-channel statistics of `name`'s training split at `length` steps.

  The first 2048 training records (every record of a smaller split; a
  procedural dataset's at its default seed). Cached: computed once per process.
  """
  source = dataset_info(name).open("train", image_size=length)
  count = min(len(source), _STATS_RECORDS)
  fit = FitLength(length)
  stacked = np.stack([fit.map(source[i])["image"] for i in range(count)]).astype(np.float64)
  mean = stacked.mean(axis=(0, 1))
  std = np.maximum(stacked.std(axis=(0, 1)), 1e-6)
  return ChannelStats(tuple(float(m) for m in mean), tuple(float(s) for s in std))


def _preprocess(info: DatasetInfo, length: int) -> list[grain.transforms.Map]:
  if length % 8:
    # The model says so too; saying it here names the field before any data is read.
    raise ValueError(f"image_size={length} is not valid for series: the length must be a "
                     "positive multiple of 8 (three 2x downsamplings).")
  return [FitLength(length), Standardise(channel_stats(info.name, length))]


# ---------------------------------------------------------------------------
# Registry entries.

register(DatasetInfo(
    name="synthetic_series", image_size=128, channels=3, num_classes=len(SYNTHETIC_KINDS),
    has_labels=True, num_train=10_000, num_test=1_000, modality="sequence",
    opener=_synthetic_source, preprocess=_preprocess))
register(DatasetInfo(
    name="uea_basic_motions", image_size=96, channels=6, num_classes=4, has_labels=True,
    num_train=40, num_test=40, modality="sequence", opener=_uea_opener("BasicMotions"),
    preprocess=_preprocess))
