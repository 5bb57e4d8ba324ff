"""The `shapes` dataset: procedural toy images of one grey circle, ring or square each.

Generated per index, so it needs no files and no download: the dataset of
quick runs and tests. Registers `shapes` on import.
"""

from __future__ import annotations

import functools

import numpy as np

from leae_jax.data.errors import SPLITS
from leae_jax.data.errors import check_split
from leae_jax.data.registry import DatasetInfo
from leae_jax.data.registry import SourceOptions
from leae_jax.data.registry import dataset_info
from leae_jax.data.registry import register

__all__ = ["SHAPE_NAMES", "ShapesSource"]

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


def _open(info: DatasetInfo, split: str, options: SourceOptions) -> ShapesSource:
  """Generated at `options.image_size` (default: the registry's), `num_records` of them."""
  return ShapesSource(split, image_size=options.image_size or info.image_size,
                      num_records=options.num_records, seed=options.shapes_seed)


register(DatasetInfo(
    name="shapes", image_size=32, channels=1, num_classes=3, has_labels=True,
    num_train=10_000, num_test=2_000, opener=_open,
))
