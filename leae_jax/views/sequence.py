"""Views of multichannel sequences: the `sequence` namespace of the view registry.

The analogues of the image views for batches of normalised series of shape
`(N, L, C)` (length `L` time steps, `C` channels). Each is registered with
`views.register(name, modality='sequence')` and built with
`views.get_view(name, modality='sequence', ...)`. As for images, a view
samples its randomness once per batch (`View.sample`) and applies the same
draw to the series and to its reconstruction (`View.pair`). Where a view has
an image counterpart it has the same name, so the config variants
(`crop_resize`, `patch_mask`, `channel_mask`, `masked`...) mean the same thing
on either kind of data.

| view | image analogue | what it does |
|---|---|---|
| `crop_resize` | crop-resize | a random window of `r·L` steps stretched back to `L` (linear interpolation) |
| `time_mask` | pixel mask | zeroes exactly `floor(ratio·L)` random time steps (every channel) |
| `patch_mask` | patch mask | zeroes exactly `floor(ratio·L/p)` random runs of `p` steps |
| `channel_mask` | channel mask | zeroes channels (by default never all of them) |
| `low_pass`, `band_pass`, `high_pass` | the detail stack | ideal filters: keep the Fourier bins of a band of the spectrum |
| `random_band` | — | a band-pass whose band is drawn per series |
| `amplitude_offset` | saturation / contrast | `a·x + b`, a random gain and offset per series and channel |
| `identity`, `inpaint` | same | the unchanged series; one contiguous hole filled with each channel's mean |

Series are normalised, not in [0, 1], so nothing is clamped; zero is each
channel's mean over the training split (the masks blank to the mean).
Frequencies are fractions of the Nyquist frequency: bin `k` of the
`L/2 + 1` real-FFT bins sits at `k/(L/2)`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from leae_jax.views import base

Shape = tuple[int, ...]
MODALITY = "sequence"
register = lambda name: base.register(name, modality=MODALITY)  # noqa: E731


def _check_series(name: str, shape: Shape) -> None:
  if len(shape) != 3:
    raise ValueError(f"{name}: expected series (N, L, C), got shape {shape}.")


def _pair(name: str, value, *, low: float = 0.0, high: float = 1.0) -> tuple[float, float]:
  """A number or a `(low, high)` range, checked to lie in [low, high] in order."""
  pair = (value, value) if isinstance(value, (int, float)) else tuple(value)
  if len(pair) == 1:
    pair = (pair[0], pair[0])
  if len(pair) != 2 or not low <= pair[0] <= pair[1] <= high:
    raise ValueError(f"{name} must be a number or a range (low, high) with "
                     f"{low} <= low <= high <= {high}, got {value}.")
  return float(pair[0]), float(pair[1])


def _keep(mask: jax.Array) -> jax.Array:
  return (~mask).astype(jnp.float32)


def _masked(keep: jax.Array, series: jax.Array) -> jax.Array:
  return series * keep.astype(series.dtype)


# ---------------------------------------------------------------------------
# Crop-resize along time.


@register("crop_resize")
def crop_resize(crop_ratio: float | tuple[float, ...] = (0.1, 0.5)) -> base.View:
  """A random window of `max(1, floor(r·L))` steps, resampled back to `L` steps.

  `r` is fixed or drawn uniformly per series from `(low, high)`; the window's
  start is uniform over the positions where it fits. Output step `i` reads
  input position `start + i·(side−1)/(L−1)` by linear interpolation (the
  image view's `interpolation_matrix` along the one axis), so the view zooms
  in on a stretch of the series and its detail moves to lower frequencies.
  The default range is the image view's, and the best of the ranges tried on
  series (docs/results_timeseries.md).
  """
  lo, hi = _pair("crop_ratio", crop_ratio)
  if lo <= 0:
    raise ValueError(f"crop_ratio must lie in (0, 1] (and low <= high), got {crop_ratio}.")

  def sample(key: jax.Array, shape: Shape) -> dict[str, jax.Array]:
    _check_series("crop_resize", shape)
    n, length = shape[:2]
    k_ratio, k_start = jax.random.split(key)
    ratio = jax.random.uniform(k_ratio, (n,), minval=lo, maxval=hi)
    side = jnp.clip(jnp.floor(ratio * length + 1e-4), 1, length).astype(jnp.int32)
    start = jnp.floor(jax.random.uniform(k_start, (n,)) * (length - side + 1)).astype(jnp.int32)
    return dict(start=start, side=side)

  def transform(params: dict[str, jax.Array], series: jax.Array) -> jax.Array:
    length = series.shape[1]
    rows = base.interpolation_matrix(params["start"], params["side"], length, length)
    return jnp.einsum("nil,nlc->nic", rows.astype(series.dtype), series,
                      precision=jax.lax.Precision.HIGHEST)

  return base.View("crop_resize", sample, transform)


# ---------------------------------------------------------------------------
# Masks.


@register("time_mask")
def time_mask(ratio: float = 0.5) -> base.View:
  """Zeroes exactly `floor(ratio·L)` random time steps of each series, every channel."""
  base.check_ratio("time_mask ratio", ratio)

  def sample(key: jax.Array, shape: Shape) -> jax.Array:
    _check_series("time_mask", shape)
    n, length = shape[:2]
    return _keep(base.exact_count_mask(key, (n, length, 1), int(ratio * length)))

  return base.View("time_mask", sample, _masked)


@register("patch_mask")
def patch_mask(ratio: float = 0.5, patch_size: int = 8) -> base.View:
  """Zeroes exactly `floor(ratio·L/patch_size)` random runs of `patch_size` steps per series."""
  base.check_ratio("patch_mask ratio", ratio)
  if not isinstance(patch_size, int) or patch_size < 1:
    raise ValueError(f"patch_mask patch_size must be a positive integer, got {patch_size}.")

  def sample(key: jax.Array, shape: Shape) -> jax.Array:
    _check_series("patch_mask", shape)
    n, length = shape[:2]
    if length % patch_size:
      raise ValueError(f"patch_mask: a series of {length} steps is not divisible into patches of "
                       f"{patch_size} steps.")
    g = length // patch_size
    drop = base.exact_count_mask(key, (n, g, 1, 1), int(ratio * g))
    return _keep(jnp.broadcast_to(drop, (n, g, patch_size, 1)).reshape(n, length, 1))

  return base.View("patch_mask", sample, _masked)


@register("channel_mask")
def channel_mask(ratio: float = 0.5, at_least_one: bool = True) -> base.View:
  """Zeroes channels of each series.

  `at_least_one=True` (the default for series) drops exactly
  `min(round(ratio·C), C − 1)` channels, so every series keeps one (and a
  one-channel series is left as it is); `False` drops each channel
  independently with probability `ratio`, as the image view does.
  """
  base.check_ratio("channel_mask ratio", ratio)

  def sample(key: jax.Array, shape: Shape) -> jax.Array:
    _check_series("channel_mask", shape)
    n, c = shape[0], shape[-1]
    if at_least_one:
      drop = base.exact_count_mask(key, (n, 1, c), min(round(ratio * c), c - 1))
    else:
      drop = jax.random.uniform(key, (n, 1, c)) <= ratio
    return _keep(drop)

  return base.View("channel_mask", sample, _masked)


@register("inpaint")
def inpaint(mask_ratio: float = 0.35) -> base.View:
  """One contiguous hole of `round(mask_ratio·L)` steps, filled with each channel's mean.

  The input corruption of the masked objectives, as the image `inpaint`;
  `sample` returns `{'hole': (N, L, 1)}` with 1 inside the hole.
  """
  base.check_ratio("inpaint mask_ratio", mask_ratio)

  def sample(key: jax.Array, shape: Shape) -> dict[str, jax.Array]:
    _check_series("inpaint", shape)
    n, length = shape[:2]
    side = 0 if mask_ratio == 0 else min(length, max(1, int(round(mask_ratio * length))))
    start = jax.random.randint(key, (n, 1, 1), 0, length - side + 1)
    t = jnp.arange(length)[None, :, None]
    return dict(hole=((t >= start) & (t < start + side)).astype(jnp.float32))

  def transform(params: dict[str, jax.Array], series: jax.Array) -> jax.Array:
    hole = params["hole"].astype(series.dtype)
    return series * (1 - hole) + jnp.mean(series, axis=1, keepdims=True) * hole

  return base.View("inpaint", sample, transform)


# ---------------------------------------------------------------------------
# Filters: the analogue of the detail stack.


def frequencies(length: int) -> np.ndarray:
  """The real-FFT bins of a series of `length` steps, as fractions of the Nyquist frequency."""
  return np.arange(length // 2 + 1) / (length / 2)


def _band_filter(series: jax.Array, keep: jax.Array) -> jax.Array:
  """Keeps the real-FFT bins where `keep` (`(F,)` or `(N, F)`) is 1; the rest are zeroed."""
  spectrum = jnp.fft.rfft(series.astype(jnp.float32), axis=1)
  out = jnp.fft.irfft(spectrum * keep[..., None].astype(spectrum.dtype), n=series.shape[1], axis=1)
  return out.astype(series.dtype)


def _fixed_band(name: str, low: float, high: float) -> base.View:
  """The ideal filter keeping the bins with `low < f <= high` (the mean too when `low < 0`)."""

  def fn(series: jax.Array) -> jax.Array:
    _check_series(name, series.shape)
    f = frequencies(series.shape[1])
    return _band_filter(series, jnp.asarray((f > low) & (f <= high), jnp.float32))

  return base.deterministic(name, fn)


# The three bands tile the spectrum: low_pass(a) + band_pass((a, b)) +
# high_pass(b) is the identity.


@register("low_pass")
def low_pass(cutoff: float = 0.125) -> base.View:
  """Keeps the frequencies up to `cutoff` (a fraction of Nyquist), the mean included."""
  _, hi = _pair("low_pass cutoff", cutoff)
  return _fixed_band("low_pass", -1.0, hi)


@register("band_pass")
def band_pass(band: tuple[float, float] = (0.125, 0.5)) -> base.View:
  """Keeps the frequencies `f` with `low < f <= high` (fractions of Nyquist)."""
  lo, hi = _pair("band_pass band", band)
  return _fixed_band("band_pass", lo, hi)


@register("high_pass")
def high_pass(cutoff: float = 0.5) -> base.View:
  """Keeps the frequencies above `cutoff` (a fraction of Nyquist), up to Nyquist."""
  lo, _ = _pair("high_pass cutoff", cutoff)
  return _fixed_band("high_pass", lo, 1.0)


@register("random_band")
def random_band(width: float | tuple[float, ...] = (0.125, 0.5)) -> base.View:
  """A band-pass with a band drawn per series: width `w` uniform in `width`, start uniform in `[0, 1 − w]`."""
  lo, hi = _pair("random_band width", width)
  if lo <= 0:
    raise ValueError(f"random_band width must be positive, got {width}.")

  def sample(key: jax.Array, shape: Shape) -> jax.Array:
    _check_series("random_band", shape)
    n, length = shape[:2]
    k_width, k_start = jax.random.split(key)
    w = jax.random.uniform(k_width, (n, 1), minval=lo, maxval=hi)
    start = jax.random.uniform(k_start, (n, 1)) * (1.0 - w)
    f = jnp.asarray(frequencies(length), jnp.float32)[None]
    return ((f >= start) & (f <= start + w)).astype(jnp.float32)

  return base.View("random_band", sample, lambda keep, series: _band_filter(series, keep))


# ---------------------------------------------------------------------------
# Amplitude and offset.


@register("amplitude_offset")
def amplitude_offset(scale: tuple[float, float] = (0.5, 2.0),
                     offset: tuple[float, float] = (-1.0, 1.0)) -> base.View:
  """`a·x + b` with a gain `a` log-uniform in `scale` and an offset `b` uniform in `offset`,
  drawn per series and channel."""
  s_lo, s_hi = _pair("amplitude_offset scale", scale, low=1e-6, high=math.inf)
  o_lo, o_hi = _pair("amplitude_offset offset", offset, low=-math.inf, high=math.inf)

  def sample(key: jax.Array, shape: Shape) -> dict[str, jax.Array]:
    _check_series("amplitude_offset", shape)
    n, c = shape[0], shape[-1]
    k_scale, k_offset = jax.random.split(key)
    log_gain = jax.random.uniform(k_scale, (n, 1, c), minval=math.log(s_lo), maxval=math.log(s_hi))
    return dict(gain=jnp.exp(log_gain),
                offset=jax.random.uniform(k_offset, (n, 1, c), minval=o_lo, maxval=o_hi))

  def transform(params: dict[str, jax.Array], series: jax.Array) -> jax.Array:
    return (params["gain"] * series + params["offset"]).astype(series.dtype)

  return base.View("amplitude_offset", sample, transform)


@register("identity")
def identity() -> base.View:
  """The unchanged series (the 'plain' view)."""
  return base.deterministic("identity", lambda series: series)


#: The filters judged together by the sequence configs' `filter_stack` variant
#: (with a plain term, as the image detail stack).
FILTER_STACK = ("low_pass", "band_pass", "high_pass")
