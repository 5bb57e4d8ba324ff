"""Transformations ("views") under which the judge compares image and reconstruction.

A `View` is a pair of pure functions:

* `sample(key, shape) -> params`: draws the per-sample randomness for a batch
  of images of `shape = (N, H, W, C)` (crop boxes, masks...), once per step;
* `transform(params, images) -> images`: applies it, batched, jit-able.

Because the randomness is sampled separately, the *same* crop box or mask is
applied to the real image and to its reconstruction (`View.pair`). Views are
built by name from a registry (`get_view('crop_resize', crop_ratio=0.15)`), and
a notebook can add its own with `@register('name')`.

All image views keep the image shape and map [0, 1] images to [0, 1] images.
The views of sequences `(N, L, C)` live in `series_views`, in the registry's
`sequence` namespace (`get_view(name, modality='sequence')`).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp

Params = Any
Shape = tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class View:
  """A named transformation with its randomness split from its application."""

  name: str
  sample: Callable[[jax.Array, Shape], Params]
  transform: Callable[[Params, jax.Array], jax.Array]

  def __call__(self, key: jax.Array, images: jax.Array) -> jax.Array:
    """Samples fresh randomness from `key` and transforms `images`."""
    return self.transform(self.sample(key, images.shape), images)

  def pair(self, key: jax.Array, a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Applies one draw of the randomness identically to `a` and `b`."""
    if a.shape != b.shape:
      raise ValueError(f"View {self.name!r}: paired batches differ in shape, {a.shape} vs {b.shape}.")
    params = self.sample(key, a.shape)
    return self.transform(params, a), self.transform(params, b)


def _no_randomness(key: jax.Array, shape: Shape) -> None:
  del key, shape
  return None


def deterministic(name: str, fn: Callable[[jax.Array], jax.Array]) -> View:
  """Wraps a key-free image function as a `View`."""
  return View(name, _no_randomness, lambda params, images: fn(images))


# ---------------------------------------------------------------------------
# Registry.

#: The kinds of data views apply to. Each has its own namespace of view names
#: (`register(..., modality=...)`): `image` views take `(N, H, W, C)` batches in
#: [0, 1]; `sequence` views (`series_views`) take `(N, L, C)` batches of
#: normalised series. One name may mean the analogous view in each namespace
#: (`crop_resize`, `patch_mask`, ...), so the config variants apply to both.
MODALITIES = ("image", "sequence")

_REGISTRY: dict[str, dict[str, Callable[..., View]]] = {m: {} for m in MODALITIES}


def _namespace(modality: str) -> dict[str, Callable[..., View]]:
  if modality not in _REGISTRY:
    raise ValueError(f"Unknown modality {modality!r}; valid: {', '.join(MODALITIES)}.")
  return _REGISTRY[modality]


def register(name: str, *, modality: str = "image") -> Callable[[Callable[..., View]], Callable[..., View]]:
  """Decorator registering a view factory `(**kwargs) -> View` under `name` for `modality`."""
  namespace = _namespace(modality)

  def wrap(factory: Callable[..., View]) -> Callable[..., View]:
    namespace[name] = factory
    return factory

  return wrap


def names(modality: str = "image") -> list[str]:
  """Registered view names of `modality`."""
  return sorted(_namespace(modality))


def default_args(modality: str = "image") -> dict[str, dict[str, Any]]:
  """Every registered view's keyword arguments and their defaults, by view name.

  The base config's `objective.view_args` starts from this (for the config's
  modality), so each view's arguments can be overridden from the command line
  in every config.
  """
  return {name: {k: p.default for k, p in inspect.signature(factory).parameters.items()
                 if p.default is not inspect.Parameter.empty}
          for name, factory in sorted(_namespace(modality).items())}


def get_view(name: str, *, modality: str = "image", **kwargs: Any) -> View:
  """Builds the registered view `name` of `modality` with keyword arguments `kwargs`."""
  namespace = _namespace(modality)
  if name not in namespace:
    kind = "" if modality == "image" else f" {modality}"  # image messages as they always were
    raise ValueError(f"Unknown{kind} view {name!r}; valid{kind} views: {', '.join(names(modality))}.")
  factory = namespace[name]
  accepted = inspect.signature(factory).parameters
  unknown = sorted(set(kwargs) - set(accepted))
  if unknown:
    raise ValueError(
        f"View {name!r} got unknown argument(s) {', '.join(unknown)}; "
        f"it accepts: {', '.join(accepted) or 'none'}."
    )
  return factory(**kwargs)


# ---------------------------------------------------------------------------
# Shared helpers.


def _exact_count_mask(key: jax.Array, shape: Shape, count: int) -> jax.Array:
  """Boolean mask of `shape = (N, ...)` with exactly `count` True per sample."""
  n = shape[0]
  size = math.prod(shape[1:])
  if count <= 0:
    return jnp.zeros(shape, bool)
  if count >= size:
    return jnp.ones(shape, bool)
  noise = jax.random.uniform(key, (n, size))
  # The count-th smallest noise value is the threshold (ties have probability 0).
  threshold = jnp.sort(noise, axis=-1)[:, count - 1 : count]
  return (noise <= threshold).reshape(shape)


def _check_ratio(name: str, ratio: float) -> None:
  if not 0.0 <= ratio <= 1.0:
    raise ValueError(f"{name} must lie in [0, 1], got {ratio}.")


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


def interpolation_matrix(start: jax.Array, side: jax.Array, size: int, in_size: int) -> jax.Array:
  """`(N, size, in_size)` bilinear resampling matrices for 1-D windows.

  Output index i samples input coordinate `start + i·(side−1)/(size−1)` (the
  grid `linspace(0, side−1, size)` inside the window), with the neighbour
  clamped at the edge. Applying one matrix per axis resizes a crop with two
  small matmuls instead of a gather.
  """
  # Split i·(side−1)/(size−1) into integer and fractional parts with integer
  # arithmetic: float division (which XLA turns into a reciprocal multiply) can
  # land a hair below an integer and pick the wrong neighbour.
  denom = max(size - 1, 1)
  numer = jnp.arange(size, dtype=jnp.int32)[None, :] * (side[:, None].astype(jnp.int32) - 1)
  frac = (numer % denom).astype(jnp.float32) / denom
  lo = jnp.clip(start[:, None].astype(jnp.int32) + numer // denom, 0, in_size - 1)
  hi = jnp.clip(lo + 1, 0, in_size - 1)
  return ((1.0 - frac)[..., None] * jax.nn.one_hot(lo, in_size)
          + frac[..., None] * jax.nn.one_hot(hi, in_size))


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
  _check_ratio("pixel_mask ratio", ratio)

  def sample(key: jax.Array, shape: Shape) -> jax.Array:
    n, h, w = shape[:3]
    drop = _exact_count_mask(key, (n, h, w, 1), int(ratio * h * w))
    return (~drop).astype(jnp.float32)

  return View("pixel_mask", sample, lambda keep, images: images * keep.astype(images.dtype))


@register("patch_mask")
def patch_mask(ratio: float = 0.7, patch_size: int = 4) -> View:
  """Zeroes exactly `floor(ratio · #patches)` random `patch_size²` patches per image."""
  _check_ratio("patch_mask ratio", ratio)

  def sample(key: jax.Array, shape: Shape) -> jax.Array:
    n, h, w = shape[:3]
    if h % patch_size or w % patch_size:
      raise ValueError(f"patch_mask: image {h}x{w} is not divisible into {patch_size}x{patch_size} patches.")
    gh, gw = h // patch_size, w // patch_size
    drop = _exact_count_mask(key, (n, gh, 1, gw, 1, 1), int(ratio * gh * gw))
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
  _check_ratio("channel_mask ratio", ratio)

  def sample(key: jax.Array, shape: Shape) -> jax.Array:
    n, c = shape[0], shape[-1]
    if at_least_one:
      drop = _exact_count_mask(key, (n, 1, 1, c), min(round(ratio * c), c - 1))
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
  _check_ratio("inpaint mask_ratio", mask_ratio)

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


# The sequence views register themselves in the `sequence` namespace; imported
# here so that every user of the registry sees them.
from leae_jax import series_views  # noqa: E402,F401  pylint: disable=g-import-not-at-top,wrong-import-position
