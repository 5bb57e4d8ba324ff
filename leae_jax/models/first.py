"""The reference's first architecture (commit 5149a49, the published toy run): transposed-
convolution up blocks with pixel-shuffle skips, a per-element code norm, a bilinear resize."""

from __future__ import annotations


import flax.linen as nn
import jax
import jax.numpy as jnp

from leae_jax.models.layers import PRECISIONS
from leae_jax.models.layers import CodeNorm
from leae_jax.models.layers import ConvTranspose
from leae_jax.models.layers import Dtype
from leae_jax.models.layers import conv_layer
from leae_jax.models.layers import initializers
from leae_jax.models.resample import channel_group_mean
from leae_jax.models.resample import channel_tile
from leae_jax.models.resample import depth_to_space
from leae_jax.models.resample import flatten_channel_major
from leae_jax.models.resample import pad_to_even
from leae_jax.models.resample import resize_bilinear
from leae_jax.models.resample import space_to_depth


def conv_transpose_layer(features: int, dtype: Dtype, *, initializer: str, precision: str,
                    name: str | None = None) -> ConvTranspose:
  """PyTorch `ConvTranspose2d(kernel_size=4, stride=2, padding=1)`: side 2H.

  `transpose_kernel=True` makes the flax kernel `(4, 4, out, in)` hold PyTorch's
  weight `(in, out, 4, 4)` transposed, unflipped; the explicit padding of the
  stride-dilated input is `k − 1 − p = 2` on each side. PyTorch's fan-in is
  `out · 16`, the kernel's second-to-last axis, which is the initialiser's
  default fan-in axis.
  """
  kernel_init, bias_init = initializers(initializer, features * 16)
  return ConvTranspose(features, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)),
                          transpose_kernel=True, dtype=dtype, param_dtype=jnp.float32,
                          precision=PRECISIONS[precision], kernel_init=kernel_init,
                          bias_init=bias_init, name=name)


def first_arch_grid(image_size: int) -> int:
  """Code grid side of the first architecture: the stem floors, the down blocks ceil."""
  side = image_size // 2
  for _ in range(2):
    side = -(-side // 2)
  return side


class FirstDownBlock(nn.Module):
  """conv3x3/s2 → SiLU → conv3x3, plus group means of the pixel-unshuffled input; SiLU of the sum.

  Odd sides are zero-padded at the bottom / right before the unshuffle, so the
  skip has the convolution's side `ceil(H / 2)`.
  """

  features: int
  dtype: Dtype = jnp.float32
  initializer: str = "pytorch"
  precision: str = "default"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kw = dict(initializer=self.initializer, precision=self.precision)
    h = conv_layer(self.features, 3, 2, self.dtype, in_features=x.shape[-1], **kw)(x)
    h = conv_layer(self.features, 3, 1, self.dtype, in_features=self.features, **kw)(nn.silu(h))
    skip = channel_group_mean(space_to_depth(pad_to_even(x)), self.features).astype(h.dtype)
    return nn.silu(h + skip)


class FirstUpBlock(nn.Module):
  """ConvTranspose k4/s2/p1 → SiLU → conv3x3, plus pixel-shuffled input tiled to `features`; SiLU of the sum."""

  features: int
  dtype: Dtype = jnp.float32
  initializer: str = "pytorch"
  precision: str = "default"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kw = dict(initializer=self.initializer, precision=self.precision)
    h = conv_transpose_layer(self.features, self.dtype, **kw)(x)
    h = conv_layer(self.features, 3, 1, self.dtype, in_features=self.features, **kw)(nn.silu(h))
    skip = channel_tile(depth_to_space(x), self.features).astype(h.dtype)
    return nn.silu(h + skip)


class FirstEncoder(nn.Module):
  """Image `(N, s, s, C)` → code `(N, g, g, latent_channels)`, g = `first_arch_grid(s)`, float32.

  The code norm is a batch norm over each of the `latent_channels · g · g`
  elements of the code flattened channel-major (PyTorch's `flatten(1)` of an
  NCHW map, `BatchNorm1d`): its scale, bias and running statistics are vectors
  of that length, in that order.
  """

  hidden: int
  latent_channels: int
  dtype: Dtype = jnp.float32
  initializer: str = "pytorch"
  conv_precision: str = "default"
  norm_running_variance: str = "unbiased"
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    if x.ndim != 4 or x.shape[1] != x.shape[2]:
      raise ValueError(f"Expected square NHWC images (N, H, W, C), got shape {x.shape}.")
    kw = dict(initializer=self.initializer, precision=self.conv_precision)
    x = x.astype(self.dtype)
    h = nn.silu(conv_layer(self.hidden, 4, 2, self.dtype, in_features=x.shape[-1], name="stem",
                      **kw)(x))
    h = FirstDownBlock(2 * self.hidden, self.dtype, name="down_0", **kw)(h)
    h = FirstDownBlock(self.latent_channels, self.dtype, name="down_1", **kw)(h)
    n, g, _, c = h.shape
    flat = flatten_channel_major(h)
    flat = CodeNorm(self.bn_momentum, self.bn_epsilon, self.norm_running_variance,
                    name="code_norm")(flat, train=train)
    return flat.reshape(n, c, g, g).transpose(0, 2, 3, 1)


class FirstDecoder(nn.Module):
  """Code `(N, g, g, latent_channels)` → image `(N, s, s, C)` in [0, 1], float32.

  Two up blocks and a transposed-convolution head give side `8g`; a sigmoid,
  then a bilinear resize to `image_size` when that differs (`resize_bilinear`).
  """

  hidden: int
  latent_channels: int
  image_size: int
  image_channels: int
  dtype: Dtype = jnp.float32
  initializer: str = "pytorch"
  conv_precision: str = "default"

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    kw = dict(initializer=self.initializer, precision=self.conv_precision)
    h = z.astype(self.dtype)
    h = FirstUpBlock(2 * self.hidden, self.dtype, name="up_0", **kw)(h)
    h = FirstUpBlock(self.hidden, self.dtype, name="up_1", **kw)(h)
    h = conv_transpose_layer(self.image_channels, self.dtype, name="to_image", **kw)(h)
    return resize_bilinear(nn.sigmoid(h.astype(jnp.float32)), self.image_size)


def validate_first(image_size: int, image_channels: int, latent: str, hidden: int | None,
                    latent_channels: int | None) -> None:
  # Any side >= 8 works (odd sides are padded in the skips and the decoder's
  # 8·grid output is resized); the parameter-free skips need divisible widths.
  if image_size < 8:
    raise ValueError(f"model.arch='first' needs image_size >= 8, got {image_size}.")
  if image_channels not in (1, 3):
    raise ValueError(f"image_channels must be 1 or 3, got {image_channels}.")
  if latent != "spatial":
    raise ValueError(f"model.arch='first' has a spatial code only; got latent={latent!r}.")
  if hidden is None or latent_channels is None:
    return
  h, c = hidden, latent_channels
  if h <= 0 or c <= 0:
    raise ValueError(f"model.hidden and model.latent_channels must be positive, got {h} and {c}.")
  # Skips: 8h unshuffled channels averaged into c; c/4 shuffled channels
  # tiled to 2h; 2h/4 shuffled channels tiled to h.
  if h % 2 or (8 * h) % c or c % 4 or (2 * h) % (c // 4):
    raise ValueError(
        f"model.arch='first' needs an even model.hidden, model.latent_channels divisible by 4, "
        f"8·hidden divisible by latent_channels and 2·hidden divisible by latent_channels/4 "
        f"(parameter-free skips); got hidden={h}, latent_channels={c}.")
