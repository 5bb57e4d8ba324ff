"""Image views: crop-resize, pixel / patch / channel masks, inpainting and the detail stack.

Every view here is registered in the `image` namespace of `views.base` and maps
`(N, H, W, C)` images in [0, 1] to images of the same shape in [0, 1].
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from leae_jax.views.base import View
from leae_jax.views.base import check_ratio
from leae_jax.views.base import exact_count_mask
from leae_jax.views.base import deterministic
from leae_jax.views.base import interpolation_matrix
from leae_jax.views.base import register

Shape = tuple[int, ...]


def box_filter(images: jax.Array, kernel_size: int) -> jax.Array:
  """Sum over a `kernel_size` square window with zero padding, divided by `kernel_size²`.

  'same' output size, per channel. Near the border the zeros count in the
  mean (the window is always divided by k²), so borders darken, exactly as
  a PyTorch `conv2d` with a constant kernel and `padding=k//2`.
  """
  _check_odd(kernel_size)
  r = kernel_size // 2
  x = jnp.pad(images, ((0, 0), (r, r), (r, r), (0, 0)))
  # Separable: one pass along each axis, O(k) per pixel instead of O(k²).
  x = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, kernel_size, 1, 1), (1, 1, 1, 1), "VALID")
  x = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 1, kernel_size, 1), (1, 1, 1, 1), "VALID")
  return x / (kernel_size * kernel_size)


def grey_level(images: jax.Array) -> jax.Array:
  """`(N, H, W, 1)` grey level: the plain mean over channels (as published, not luma)."""
  return jnp.mean(images, axis=-1, keepdims=True)


# ---------------------------------------------------------------------------
# Crop-resize.


def resample(images: jax.Array, rows: jax.Array, cols: jax.Array) -> jax.Array:
  """`out[n, i, j] = Σ_hw rows[n, i, h] · images[n, h, w] · cols[n, j, w]`."""
  hp = jax.lax.Precision.HIGHEST  # tiny matrices: exactness is worth more than speed
  out = jnp.einsum("nih,nhwc->niwc", rows.astype(images.dtype), images, precision=hp)
  return jnp.einsum("njw,niwc->nijc", cols.astype(images.dtype), out, precision=hp)


@register("crop_resize")
def crop_resize(crop_ratio: float | tuple[float, ...] = (0.1, 0.5)) -> View:
  """Random square crop of side `max(1, floor(r · min(H, W)))`, resized back bilinearly.

  `crop_ratio` is a fixed ratio r (the published runs; also `(r,)` or `(r,
  r)`), or a `(low, high)` range from which r is drawn uniformly per image. The side is rounded down,
  as the reference does (`int(min(H, W) · r)`): CIFAR at r = 0.15 crops 4
  pixels, not 5. The box's corner is uniform over the positions that fit.
  """
  # A number, (r,) (what `--config...crop_ratio=0.3` gives a tuple field) or (low, high).
  ratios = (crop_ratio,) if isinstance(crop_ratio, (int, float)) else tuple(crop_ratio)
  if len(ratios) not in (1, 2):
    raise ValueError(f"crop_ratio must be a ratio r or a range (low, high), got {crop_ratio}.")
  lo, hi = ratios[0], ratios[-1]
  if not 0.0 < lo <= hi <= 1.0:
    raise ValueError(f"crop_ratio must lie in (0, 1] (and low <= high), got {crop_ratio}.")

  def sample(key: jax.Array, shape: Shape) -> dict[str, jax.Array]:
    n, h, w = shape[:3]
    k_ratio, k_top, k_left = jax.random.split(key, 3)
    ratio = jax.random.uniform(k_ratio, (n,), minval=lo, maxval=hi)
    # A hair of slack so that a ratio like 0.3 · 10 = 2.9999999 in float32 floors to 3.
    side = jnp.clip(jnp.floor(ratio * min(h, w) + 1e-4), 1, min(h, w)).astype(jnp.int32)
    top = jnp.floor(jax.random.uniform(k_top, (n,)) * (h - side + 1)).astype(jnp.int32)
    left = jnp.floor(jax.random.uniform(k_left, (n,)) * (w - side + 1)).astype(jnp.int32)
    return dict(top=top, left=left, side=side)

  def transform(params: dict[str, jax.Array], images: jax.Array) -> jax.Array:
    _, h, w, _ = images.shape
    rows = interpolation_matrix(params["top"], params["side"], h, h)
    cols = interpolation_matrix(params["left"], params["side"], w, w)
    return resample(images, rows, cols)

  return View("crop_resize", sample, transform)


# ---------------------------------------------------------------------------
# Masks.


@register("pixel_mask")
def pixel_mask(ratio: float = 0.7) -> View:
  """Zeroes exactly `floor(ratio · H · W)` random pixels (all channels) per image."""
  check_ratio("pixel_mask ratio", ratio)

  def sample(key: jax.Array, shape: Shape) -> jax.Array:
    n, h, w = shape[:3]
    drop = exact_count_mask(key, (n, h, w, 1), int(ratio * h * w))
    return (~drop).astype(jnp.float32)

  return View("pixel_mask", sample, lambda keep, images: images * keep.astype(images.dtype))


@register("patch_mask")
def patch_mask(ratio: float = 0.7, patch_size: int = 4) -> View:
  """Zeroes exactly `floor(ratio · #patches)` random `patch_size²` patches per image."""
  check_ratio("patch_mask ratio", ratio)

  def sample(key: jax.Array, shape: Shape) -> jax.Array:
    n, h, w = shape[:3]
    if h % patch_size or w % patch_size:
      raise ValueError(f"patch_mask: image {h}x{w} is not divisible into {patch_size}x{patch_size} patches.")
    gh, gw = h // patch_size, w // patch_size
    drop = exact_count_mask(key, (n, gh, 1, gw, 1, 1), int(ratio * gh * gw))
    drop = jnp.broadcast_to(drop, (n, gh, patch_size, gw, patch_size, 1)).reshape(n, h, w, 1)
    return (~drop).astype(jnp.float32)

  return View("patch_mask", sample, lambda keep, images: images * keep.astype(images.dtype))


@register("channel_mask")
def channel_mask(ratio: float = 0.7, at_least_one: bool = False) -> View:
  """Zeroes each colour channel of each image independently with probability `ratio`.

  As published: the number of dropped channels is Binomial(C, ratio), so at
  0.7 on RGB about a third of the images (0.7³) lose every channel and become
  black, and on one-channel images the view blanks 70 % of the batch.
  `at_least_one=True` (an option, not the reference) instead drops exactly
  `min(round(ratio · C), C − 1)` channels, so every image keeps one.
  """
  check_ratio("channel_mask ratio", ratio)

  def sample(key: jax.Array, shape: Shape) -> jax.Array:
    n, c = shape[0], shape[-1]
    if at_least_one:
      drop = exact_count_mask(key, (n, 1, 1, c), min(round(ratio * c), c - 1))
    else:
      drop = jax.random.uniform(key, (n, 1, 1, c)) <= ratio
    return (~drop).astype(jnp.float32)

  return View("channel_mask", sample, lambda keep, images: images * keep.astype(images.dtype))


@register("inpaint")
def inpaint(mask_ratio: float = 0.35) -> View:
  """One random square hole of area ≈ `mask_ratio`, filled with the per-channel mean.

  `sample` returns `{'hole': (N, H, W, 1)}` with 1 inside the hole, which
  evaluation reuses to measure PSNR inside the hole.
  """
  check_ratio("inpaint mask_ratio", mask_ratio)

  def sample(key: jax.Array, shape: Shape) -> dict[str, jax.Array]:
    n, h, w = shape[:3]
    # The reference's side: round(√ratio · min(H, W)), at least one pixel.
    # (A ratio of 0 means no hole at all.)
    side = 0 if mask_ratio == 0 else min(h, w, max(1, int(round(math.sqrt(mask_ratio) * min(h, w)))))
    k_top, k_left = jax.random.split(key)
    top = jax.random.randint(k_top, (n, 1, 1, 1), 0, h - side + 1)
    left = jax.random.randint(k_left, (n, 1, 1, 1), 0, w - side + 1)
    yy = jnp.arange(h)[None, :, None, None]
    xx = jnp.arange(w)[None, None, :, None]
    hole = (yy >= top) & (yy < top + side) & (xx >= left) & (xx < left + side)
    return dict(hole=hole.astype(jnp.float32))

  def transform(params: dict[str, jax.Array], images: jax.Array) -> jax.Array:
    hole = params["hole"].astype(images.dtype)
    mean = jnp.mean(images, axis=(1, 2), keepdims=True)
    return images * (1 - hole) + mean * hole

  return View("inpaint", sample, transform)


# ---------------------------------------------------------------------------
# The detail stack: deterministic filters, as published. Every filter works on
# zero-padded borders ('same' convolutions with zero padding, as PyTorch's
# `padding=k//2`); "grey" is the plain mean over channels; the single-channel
# filters (sobel, local_contrast) are repeated over the image's channels; and
# the per-image normalisations divide by a maximum over the image's pixels.


@register("identity")
def identity() -> View:
  """The untransformed image (the 'plain' view)."""
  return deterministic("identity", lambda images: images)


def _max_over_pixels(x: jax.Array) -> jax.Array:
  """Per-image, per-channel maximum over H and W, kept ≥ 1e-6 (the reference's clamp)."""
  return jnp.maximum(jnp.max(x, axis=(1, 2), keepdims=True), 1e-6)


def _check_odd(kernel_size: int) -> None:
  if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
    raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}.")


@register("blur")
def blur(kernel_size: int = 11) -> View:
  """Heavy box blur: `box_filter(x, kernel_size)` clamped to [0, 1]."""
  _check_odd(kernel_size)
  return deterministic("blur", lambda images: jnp.clip(box_filter(images, kernel_size), 0.0, 1.0))


@register("saturation_contrast")
def saturation_contrast(saturation: float = 1.8, contrast: float = 1.4) -> View:
  """Saturation ×`saturation` around the channel-mean grey, then contrast ×`contrast`.

  The contrast pivots on each channel's own spatial mean (per image and
  channel, not the grey mean); the result is clamped to [0, 1].
  """

  def fn(images: jax.Array) -> jax.Array:
    grey = grey_level(images)
    x = grey + saturation * (images - grey)
    mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    return jnp.clip(mean + contrast * (x - mean), 0.0, 1.0)

  return deterministic("saturation_contrast", fn)


def _conv_grey(grey: jax.Array, kernel: jax.Array) -> jax.Array:
  """3x3 cross-correlation of a `(N, H, W, 1)` map with zero padding."""
  return jax.lax.conv_general_dilated(grey, kernel[:, :, None, None], (1, 1), ((1, 1), (1, 1)),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                      precision=jax.lax.Precision.HIGHEST)


_SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


@register("sobel")
def sobel() -> View:
  """Sobel edge magnitude of the grey image, divided by its per-image maximum.

  `sqrt(gx² + gy² + 1e-6)` (the epsilon keeps the gradient finite on flat
  regions), normalised so the strongest edge of each image is 1, repeated
  over the channels, clamped to [0, 1].
  """

  def fn(images: jax.Array) -> jax.Array:
    grey = grey_level(images)
    kx = jnp.asarray(_SOBEL_X, images.dtype)
    gx, gy = _conv_grey(grey, kx), _conv_grey(grey, kx.T)
    magnitude = jnp.sqrt(gx * gx + gy * gy + 1e-6)
    magnitude = magnitude / _max_over_pixels(magnitude)
    return jnp.clip(jnp.broadcast_to(magnitude, images.shape), 0.0, 1.0)

  return deterministic("sobel", fn)


@register("high_pass")
def high_pass(kernel_size: int = 5) -> View:
  """`|x − box_filter(x)|` per channel, divided by its per-image, per-channel maximum."""
  _check_odd(kernel_size)

  def fn(images: jax.Array) -> jax.Array:
    residual = jnp.abs(images - box_filter(images, kernel_size))
    return jnp.clip(residual / _max_over_pixels(residual), 0.0, 1.0)

  return deterministic("high_pass", fn)


@register("local_contrast")
def local_contrast(kernel_size: int = 5, epsilon: float = 1e-4) -> View:
  """Local contrast normalisation of the grey image, mapped to [0, 1].

  `c = g − box(g)`, `n = c / sqrt(box(c²) + epsilon)`, divided by the
  per-image maximum of |n|, then `(n + 1)/2`, repeated over the channels and
  clamped to [0, 1].
  """
  _check_odd(kernel_size)

  def fn(images: jax.Array) -> jax.Array:
    grey = grey_level(images)
    centred = grey - box_filter(grey, kernel_size)
    normalised = centred / jnp.sqrt(box_filter(centred * centred, kernel_size) + epsilon)
    normalised = normalised / _max_over_pixels(jnp.abs(normalised))
    return jnp.clip(jnp.broadcast_to(0.5 * (normalised + 1.0), images.shape), 0.0, 1.0)

  return deterministic("local_contrast", fn)


DETAIL_STACK = ("blur", "saturation_contrast", "sobel", "high_pass", "local_contrast")
