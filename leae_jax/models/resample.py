"""Parameter-free reshaping and resampling of NHWC maps (pixel (un)shuffles, nearest and
bilinear resizes, channel grouping): the skips and resizes of the architectures."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np


def space_to_depth(x: jax.Array, block: int = 2, time_only: bool = False) -> jax.Array:
  """`(N, H, W, C)` → `(N, H/b, W/b, C·b²)`, channels ordered (c, dy, dx).

  `time_only`: a series run as `(N, L, 1, C)` → `(N, L/b, 1, C·b)`, ordered (c, dt).
  """
  n, h, w, c = x.shape
  if time_only:
    return x.reshape(n, h // block, block, c).transpose(0, 1, 3, 2).reshape(
        n, h // block, 1, c * block)
  x = x.reshape(n, h // block, block, w // block, block, c)
  x = x.transpose(0, 1, 3, 5, 2, 4)
  return x.reshape(n, h // block, w // block, c * block * block)


def upsample_nearest(x: jax.Array, factor: int = 2, time_only: bool = False) -> jax.Array:
  """Nearest-neighbour upsampling of an NHWC map by an integer factor (`time_only`: along H)."""
  if time_only:
    return jnp.repeat(x, factor, axis=1)
  n, h, w, c = x.shape
  x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, factor, w, factor, c))
  return x.reshape(n, h * factor, w * factor, c)


def match_channels(x: jax.Array, features: int) -> jax.Array:
  """Parameter-free channel change: average consecutive groups, or repeat."""
  c = x.shape[-1]
  if c == features:
    return x
  if c % features == 0:
    return x.reshape(*x.shape[:-1], features, c // features).mean(axis=-1)
  if features % c == 0:
    return jnp.repeat(x, features // c, axis=-1)
  raise ValueError(
      f"Cannot match {c} channels to {features} without parameters: one must divide the other."
  )


def depth_to_space(x: jax.Array, block: int = 2) -> jax.Array:
  """`(N, H, W, C·b²)` → `(N, H·b, W·b, C)`: PyTorch's `pixel_shuffle`, inverse of `space_to_depth`.

  Input channel `c·b² + dy·b + dx` lands at output pixel `(y·b + dy, x·b + dx)`.
  """
  n, h, w, c = x.shape
  if c % (block * block):
    raise ValueError(f"depth_to_space: {c} channels are not divisible by {block * block}.")
  x = x.reshape(n, h, w, c // (block * block), block, block)
  x = x.transpose(0, 1, 4, 2, 5, 3)  # (n, h, dy, w, dx, c)
  return x.reshape(n, h * block, w * block, c // (block * block))


def flatten_channel_major(x: jax.Array) -> jax.Array:
  """`(N, H, W, C)` → `(N, C·H·W)` in PyTorch's `flatten(1)` order of the NCHW map."""
  return x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)


def pad_to_even(x: jax.Array) -> jax.Array:
  """Zero-pads an odd height or width by one row / column at the bottom / right."""
  _, h, w, _ = x.shape
  if h % 2 or w % 2:
    x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
  return x


def channel_group_mean(x: jax.Array, features: int) -> jax.Array:
  """Means of consecutive groups of `C / features` channels (channel `o·g + i` → `o`)."""
  c = x.shape[-1]
  if c % features:
    raise ValueError(f"Cannot average {c} channels into {features}: {features} must divide {c}.")
  return x.reshape(*x.shape[:-1], features, c // features).mean(axis=-1)


def channel_tile(x: jax.Array, features: int) -> jax.Array:
  """Channels repeated as a block, `a, b, a, b` (PyTorch's `Tensor.repeat`, not `jnp.repeat`)."""
  c = x.shape[-1]
  if features % c:
    raise ValueError(f"Cannot repeat {c} channels into {features}: {c} must divide {features}.")
  return jnp.tile(x, (1,) * (x.ndim - 1) + (features // c,))


def _bilinear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Neighbours and weights of PyTorch's `align_corners=False` bilinear resampling, one axis.

  Computed in float32 as PyTorch's CPU kernel does: source coordinate
  `(in/out)·(i + 0.5) − 0.5`, negatives clamped to 0, upper neighbour clamped
  to the last row.
  """
  scale = np.float32(in_size) / np.float32(out_size)
  src = scale * (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
  src = np.maximum(src, np.float32(0.0))
  lo = src.astype(np.int64)  # truncation = floor, src >= 0
  hi = np.minimum(lo + 1, in_size - 1)
  frac = (src - lo.astype(np.float32)).astype(np.float32)
  return lo, hi, frac


def resize_bilinear(x: jax.Array, size: int) -> jax.Array:
  """`F.interpolate(x, (size, size), mode='bilinear', align_corners=False)` on NHWC, no antialiasing.

  A gather and a linear blend per axis (no matmul), so its precision does not
  depend on the backend's matmul precision, like PyTorch's kernel.
  """
  _, h, w, _ = x.shape
  if (h, w) == (size, size):
    return x
  out = x
  # Width first, then height: PyTorch's h0·(w0·x00 + w1·x01) + h1·(w0·x10 + w1·x11).
  lo, hi, frac = _bilinear_taps(w, size)
  f = jnp.asarray(frac, out.dtype)[None, None, :, None]
  out = (1 - f) * out[:, :, lo] + f * out[:, :, hi]
  lo, hi, frac = _bilinear_taps(h, size)
  f = jnp.asarray(frac, out.dtype)[None, :, None, None]
  return (1 - f) * out[:, lo] + f * out[:, hi]
