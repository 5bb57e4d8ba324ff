"""The reference's later architecture (every published run but the toy): residual down and up
blocks, the encoder and decoder with a spatial or pooled code."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from leae_jax.models.layers import PRECISIONS
from leae_jax.models.layers import CodeNorm
from leae_jax.models.layers import Conv
from leae_jax.models.layers import ConvTranspose
from leae_jax.models.layers import Dtype
from leae_jax.models.layers import UpsampleConv
from leae_jax.models.layers import conv_layer
from leae_jax.models.layers import dense_layer
from leae_jax.models.layers import initializers
from leae_jax.models.resample import match_channels
from leae_jax.models.resample import space_to_depth
from leae_jax.models.resample import upsample_nearest

LATENT_KINDS = ("spatial", "pooled")
POOL_KINDS = ("mlp", "oneshot", "progressive")
DOWNSAMPLE = 8


class DownBlock(nn.Module):
  """Residual 2x downsampling: conv3x3/s2 → SiLU → conv3x3, plus a s2d skip.

  `time_only`: the series model's block, on `(N, L, 1, C)` with (3, 1)
  kernels and a 2-step space-to-depth along time.
  """

  features: int
  dtype: Dtype = jnp.float32
  initializer: str = "pytorch"
  precision: str = "default"
  time_only: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kw = dict(initializer=self.initializer, precision=self.precision, time_only=self.time_only)
    h = conv_layer(self.features, 3, 2, self.dtype, in_features=x.shape[-1], **kw)(x)
    h = conv_layer(self.features, 3, 1, self.dtype, in_features=self.features, **kw)(nn.silu(h))
    skip = match_channels(space_to_depth(x, time_only=self.time_only),
                          self.features).astype(h.dtype)
    return nn.silu(h + skip)


class UpBlock(nn.Module):
  """Residual 2x upsampling: nearest ×2 → conv3x3 → SiLU → conv3x3, plus a 1x1 skip.

  `time_only`: the series model's block, on `(N, L, 1, C)` with (3, 1)
  kernels, upsampling along time.
  """

  features: int
  dtype: Dtype = jnp.float32
  initializer: str = "pytorch"
  precision: str = "default"
  time_only: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kw = dict(initializer=self.initializer, precision=self.precision)
    conv_kw = dict(kw, time_only=self.time_only)
    # Explicit names keep the parameter tree of the plain nn.Conv version.
    if self.time_only:
      h = conv_layer(self.features, 3, 1, self.dtype, in_features=x.shape[-1], name="Conv_0",
                **conv_kw)(upsample_nearest(x, time_only=True))
    else:  # the same function, as sub-pixel convolutions at low resolution
      h = UpsampleConv(self.features, self.dtype, name="Conv_0", **kw)(x)
    h = conv_layer(self.features, 3, 1, self.dtype, in_features=self.features, name="Conv_1",
              **conv_kw)(nn.silu(h))
    # A 1x1 conv commutes with nearest upsampling; run it at low resolution.
    skip = upsample_nearest(conv_layer(self.features, 1, 1, self.dtype, in_features=x.shape[-1],
                                  name="Conv_2", **conv_kw)(x), time_only=self.time_only)
    return nn.silu(h + skip)


class Encoder(nn.Module):
  """Image `(N, s, s, C)` in [0, 1] → code (spatial or pooled), float32."""

  hidden: int
  latent_channels: int
  latent: str = "spatial"
  pool: str = "mlp"
  pool_channels: int = 128
  dtype: Dtype = jnp.float32
  initializer: str = "pytorch"
  conv_precision: str = "default"
  dense_precision: str = "highest"
  norm_running_variance: str = "unbiased"
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    _check_image(x)
    grid = x.shape[1] // DOWNSAMPLE
    spatial = self.latent == "spatial"
    kw = dict(initializer=self.initializer, precision=self.conv_precision)
    x = x.astype(self.dtype)
    h = nn.silu(conv_layer(self.hidden, 4, 2, self.dtype, in_features=x.shape[-1], **kw)(x))
    h = DownBlock(2 * self.hidden, self.dtype, **kw)(h)
    h = DownBlock(self.latent_channels if spatial else self.pool_channels, self.dtype, **kw)(h)
    if not spatial:
      h = self._collapse(h, grid)
    return CodeNorm(self.bn_momentum, self.bn_epsilon, self.norm_running_variance,
                    name="code_norm")(h, train=train)

  def _collapse(self, h: jax.Array, grid: int) -> jax.Array:
    n = h.shape[0]
    c, m = self.latent_channels, self.pool_channels
    kw = dict(initializer=self.initializer, precision=self.conv_precision)
    if self.pool == "mlp":
      flat = h.reshape(n, -1)
      return dense_layer(c, self.dtype, in_features=flat.shape[-1], initializer=self.initializer,
                    precision=self.dense_precision, name="collapse")(flat)
    if self.pool == "oneshot":
      h = nn.silu(conv_layer(m, 3, 1, self.dtype, in_features=m, name="collapse_conv", **kw)(h))
      kernel_init, bias_init = initializers(self.initializer, m * grid * grid)
      h = Conv(c, (grid, grid), strides=(grid, grid), padding="VALID", dtype=self.dtype,
                  param_dtype=jnp.float32, precision=PRECISIONS[self.conv_precision],
                  kernel_init=kernel_init, bias_init=bias_init, name="collapse")(h)
      return h.reshape(n, c)
    if self.pool == "progressive":
      # conv3x3 + SiLU, one residual down block per halving to 1x1, then a
      # 1x1 projection to the code width when it differs from the map's.
      h = nn.silu(conv_layer(m, 3, 1, self.dtype, in_features=m, name="collapse_conv", **kw)(h))
      for i in range(progressive_steps(grid)):
        h = DownBlock(m, self.dtype, name=f"collapse_{i}", **kw)(h)
      if c != m:
        h = conv_layer(c, 1, 1, self.dtype, in_features=m, name="collapse_proj", **kw)(h)
      return h.reshape(n, c)
    raise ValueError(f"Unknown pool {self.pool!r}; valid: {', '.join(POOL_KINDS)}.")


class Decoder(nn.Module):
  """Code → image `(N, s, s, C)` in [0, 1] (sigmoid output, float32)."""

  hidden: int
  latent_channels: int
  image_size: int
  image_channels: int
  latent: str = "spatial"
  pool: str = "mlp"
  pool_channels: int = 128
  dtype: Dtype = jnp.float32
  initializer: str = "pytorch"
  conv_precision: str = "default"
  dense_precision: str = "highest"

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    grid = self.image_size // DOWNSAMPLE
    kw = dict(initializer=self.initializer, precision=self.conv_precision)
    h = z.astype(self.dtype)
    if self.latent != "spatial":
      h = self._expand(h, grid)
    h = UpBlock(2 * self.hidden, self.dtype, **kw)(h)
    h = UpBlock(self.hidden, self.dtype, **kw)(h)
    h = UpsampleConv(self.image_channels, self.dtype, name="to_image", **kw)(h)
    return nn.sigmoid(h.astype(jnp.float32))

  def _expand(self, z: jax.Array, grid: int) -> jax.Array:
    n, c = z.shape
    m = self.pool_channels
    kw = dict(initializer=self.initializer, precision=self.conv_precision)
    if self.pool == "mlp":
      # Linear, then SiLU (the published expand).
      h = dense_layer(grid * grid * m, self.dtype, in_features=c, initializer=self.initializer,
                 precision=self.dense_precision, name="expand")(z)
      return nn.silu(h.reshape(n, grid, grid, m))
    if self.pool == "oneshot":
      # Transposed convolution (kernel = stride = grid), then SiLU; nothing else.
      kernel_init, bias_init = initializers(self.initializer, m * grid * grid, transposed=True)
      h = ConvTranspose(m, (grid, grid), strides=(grid, grid), padding="VALID",
                           dtype=self.dtype, param_dtype=jnp.float32,
                           precision=PRECISIONS[self.conv_precision], kernel_init=kernel_init,
                           bias_init=bias_init, name="expand")(z.reshape(n, 1, 1, c))
      return nn.silu(h)
    if self.pool == "progressive":
      h = z.reshape(n, 1, 1, c)
      if c != m:
        h = nn.silu(conv_layer(m, 1, 1, self.dtype, in_features=c, name="expand_proj", **kw)(h))
      for i in range(progressive_steps(grid)):
        h = UpBlock(m, self.dtype, name=f"expand_{i}", **kw)(h)
      return h
    raise ValueError(f"Unknown pool {self.pool!r}; valid: {', '.join(POOL_KINDS)}.")


def progressive_steps(grid: int) -> int:
  steps = int(round(math.log2(grid))) if grid >= 1 else -1
  if grid < 2 or 2**steps != grid:
    raise ValueError(
        f"pool='progressive' halves the latent grid down to 1x1, so image_size/8 must be a "
        f"power of two >= 2; got a {grid}x{grid} grid."
    )
  return steps


def _check_image(x: jax.Array) -> None:
  if x.ndim != 4:
    raise ValueError(f"Expected NHWC images (N, H, W, C), got shape {x.shape}.")
  _, h, w, _ = x.shape
  if h != w or h % DOWNSAMPLE:
    raise ValueError(
        f"Images must be square with a side divisible by {DOWNSAMPLE} (three 2x downsamplings); "
        f"got {h}x{w}."
    )
