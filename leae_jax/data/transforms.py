"""Per-record preprocessing: grain `Map` transforms from raw records to model inputs.

`preprocess_ops` picks, for a registered dataset and an output side, the list
of transforms turning its raw records (`sources.get_source`) into
`{'image': float32 (H, W, C) in [0, 1], 'label': int32}`. They run inside
grain, possibly in worker processes, so they are picklable dataclasses.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import grain
import numpy as np

from leae_jax.data.registry import dataset_info

__all__ = [
    "CenterCropSquare",
    "CenterCropWindow",
    "FITS",
    "FitImage",
    "PadImage",
    "ResizeImage",
    "ToFloatImage",
    "ToImageLabel",
    "preprocess_ops",
]


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


#: How stored images are brought to the training size (`config.fit`, `FitImage`).
FITS = ("auto", "pad", "resize", "center_crop")


@dataclasses.dataclass(frozen=True)
class FitImage(grain.transforms.Map):
  """Brings each image to `size` x `size` as `fit` says, deciding from the image's own shape.

  An image already at `size` x `size` is left as it is. Otherwise:

  * 'center_crop': its central `size` x `size` window, no resizing (`CenterCropWindow`);
  * 'pad': centred zero padding (`PadImage`; the image must not be larger);
  * 'resize': its largest centred square (`CenterCropSquare`) resized to `size` (`ResizeImage`);
  * 'auto': `default` when that is not 'auto' and the image is at least `size` on
    both sides (CelebA: the central window); else a square image at most 1.25x
    smaller than `size` is padded (Fashion-MNIST 28 → 32: pixels stay exact,
    the border is thin) and any other image is resized as by 'resize'.

  Deciding per image lets one dataset hold images of several sizes (image
  folders of people's photos); for datasets of one stored size it is the
  same rule for every image.
  """

  size: int
  fit: str = "auto"
  default: str = "auto"

  def __post_init__(self):
    for field, value in (("fit", self.fit), ("default", self.default)):
      if value not in FITS:
        raise ValueError(f"{field}={value!r} is not valid: it must be one of {', '.join(FITS)}.")

  def ops(self, height: int, width: int) -> list[grain.transforms.Map]:
    """The transforms that fit an image of `height` x `width`."""
    size = self.size
    if (height, width) == (size, size):
      return []
    fit = self.fit
    if fit == "auto" and self.default != "auto" and size <= min(height, width):
      fit = self.default
    if fit == "center_crop":
      return [CenterCropWindow(size)]
    if fit == "pad" or (fit == "auto" and height == width and height < size <= 1.25 * height):
      return [PadImage(size)]
    return ([CenterCropSquare()] if height != width else []) + [ResizeImage(size)]

  def map(self, element: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    for op in self.ops(*element["image"].shape[:2]):
      element = op.map(element)
    return element


def preprocess_ops(
    name: str, image_size: int | None = None, *, fit: str = "auto", fitted: bool = False,
    to_float: bool = True,
) -> list[grain.transforms.Map]:
  """The grain transforms turning raw records of `name` into model inputs.

  Args:
    name: Registered dataset name.
    image_size: Output side (default: the registry value).
    fit: How to bring stored images to `image_size` (`FITS`; `FitImage`, per
      image): 'pad' (centred zero padding, target must not be smaller),
      'resize' (the centred square, resized), 'center_crop' (the central window
      of that side, no resizing: CelebA's default), or 'auto' (the dataset's
      own default where it has one, else: non-square images are
      centre-cropped and resized; square images are padded when the target is at
      most 1.25x larger (e.g. Fashion-MNIST 28 -> 32, so pixels stay exact and the
      border is thin) and resized otherwise). Shapes are generated at the
      requested size, so nothing is fitted.
    fitted: The records are already at `image_size` (a `prepared.PreparedSource`):
      no cropping, resizing or padding.
    to_float: End with `ToFloatImage`; without it uint8 images stay uint8
      (for the device to scale: `models.unit_range`).

  Returns:
    A list of `grain.transforms.Map` producing `{'image': float32 HWC in [0, 1],
    'label': int32}` (or uint8 images without `to_float`).
  """
  info = dataset_info(name)
  if fit not in FITS:
    raise ValueError(f"Unknown fit {fit!r}; valid values are: {', '.join(FITS)}.")
  size = int(image_size or info.image_size)
  if size <= 0:
    raise ValueError(f"image_size must be positive, got {size}.")
  if info.preprocess is not None:  # not images: the dataset's own transforms (data.series)
    return info.preprocess(info, size)
  ops: list[grain.transforms.Map] = [ToImageLabel()]
  if not fitted:
    ops.append(FitImage(size, fit, info.fit))
  if to_float:
    ops.append(ToFloatImage())
  return ops
