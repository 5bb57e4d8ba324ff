"""The convolutional autoencoder of the published runs (Flax linen, NHWC).

`Autoencoder` has exactly two parameter subtrees, `encoder` and `decoder`, and
two methods, `encode` and `decode`. The only normalisation is a batch norm over
the code at the end of the encoder; its running statistics live in the
`batch_stats` collection under `encoder`.

Latent layouts:
* `spatial`: the code is the `(s/8, s/8, latent_channels)` feature map.
* `pooled`: the `(s/8, s/8, pool_channels)` map is collapsed to a single
  `latent_channels` vector by `mlp`, `oneshot` or `progressive`, and the
  decoder expands it back with the mirrored layer(s). Codes are `(N, c)`.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

Dtype = Any

LATENT_KINDS = ("spatial", "pooled")
POOL_KINDS = ("mlp", "oneshot", "progressive")
DOWNSAMPLE = 8


def space_to_depth(x: jax.Array, block: int = 2) -> jax.Array:
  """`(N, H, W, C)` → `(N, H/b, W/b, C·b²)`, channels ordered (c, dy, dx)."""
  n, h, w, c = x.shape
  x = x.reshape(n, h // block, block, w // block, block, c)
  x = x.transpose(0, 1, 3, 5, 2, 4)
  return x.reshape(n, h // block, w // block, c * block * block)


def upsample_nearest(x: jax.Array, factor: int = 2) -> jax.Array:
  """Nearest-neighbour upsampling of an NHWC map by an integer factor."""
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


def _conv(features: int, kernel: int, stride: int, dtype: Dtype, name: str | None = None) -> nn.Conv:
  # Explicit symmetric padding reproduces PyTorch's `padding=k//2` (k odd) and
  # `padding=1` for the 4x4 stride-2 stem, so spatial sides halve exactly.
  pad = 1 if kernel == 4 else kernel // 2
  return nn.Conv(
      features,
      (kernel, kernel),
      strides=(stride, stride),
      padding=((pad, pad), (pad, pad)),
      dtype=dtype,
      param_dtype=jnp.float32,
      name=name,
  )


# Rows (or columns) of a 3x3 kernel seen by each output phase of "nearest ×2
# upsample, then 3x3 conv": phase 0 of output row 2i reads input rows i−1, i, i
# (taps 0 | 1+2), phase 1 (row 2i+1) reads i, i, i+1 (taps 0+1 | 2).
_PHASE_FOLD = np.array([[[1, 0, 0], [0, 1, 1]], [[1, 1, 0], [0, 0, 1]]], np.float32)


def upsample_conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`conv3x3(upsample_nearest(x, 2))` with zero padding 1, in sub-pixel form.

  Each of the four output phases (a, b) of the upsampled convolution is a 2x2
  convolution of the *low-resolution* input with the 3x3 kernel's taps folded
  together, so the result is exact (up to float rounding) with 4/9 of the
  multiply-adds, and XLA:CPU's backward pass is ~3x faster than through the
  upsampled map (benchmarks/README.md).
  """
  n, h, w, _ = x.shape
  fold = jnp.asarray(_PHASE_FOLD, kernel.dtype)
  phases = []
  for a in (0, 1):
    for b in (0, 1):
      k = jnp.einsum("py,qx,yxio->pqio", fold[a], fold[b], kernel)
      pad = ((1, 0) if a == 0 else (0, 1), (1, 0) if b == 0 else (0, 1))
      phases.append(jax.lax.conv_general_dilated(
          x, k, (1, 1), pad, dimension_numbers=("NHWC", "HWIO", "NHWC")))
  y = jnp.stack(phases, axis=3).reshape(n, h, w, 2, 2, -1)  # (..., a, b, C)
  return y.transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * w, -1)


class UpsampleConv(nn.Module):
  """Nearest ×2 upsampling followed by a 3x3 convolution (padding 1).

  Parameters are exactly those of the `nn.Conv` it replaces (`kernel` 3x3,
  `bias`, same initialisers), so checkpoints and parameter counts are
  unchanged; only the computation is reorganised (`upsample_conv3x3`).
  """

  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (3, 3, x.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
    y = upsample_conv3x3(x.astype(self.dtype), kernel.astype(self.dtype))
    return y + bias.astype(self.dtype)


class DownBlock(nn.Module):
  """Residual 2x downsampling: conv3x3/s2 → SiLU → conv3x3, plus a s2d skip."""

  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = _conv(self.features, 3, 2, self.dtype)(x)
    h = _conv(self.features, 3, 1, self.dtype)(nn.silu(h))
    skip = match_channels(space_to_depth(x), self.features).astype(h.dtype)
    return nn.silu(h + skip)


class UpBlock(nn.Module):
  """Residual 2x upsampling: nearest ×2 → conv3x3 → SiLU → conv3x3, plus a 1x1 skip."""

  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    # Explicit names keep the parameter tree of the plain nn.Conv version.
    h = UpsampleConv(self.features, self.dtype, name="Conv_0")(x)
    h = _conv(self.features, 3, 1, self.dtype, name="Conv_1")(nn.silu(h))
    # A 1x1 conv commutes with nearest upsampling; run it at low resolution.
    skip = upsample_nearest(_conv(self.features, 1, 1, self.dtype, name="Conv_2")(x))
    return nn.silu(h + skip)


class Encoder(nn.Module):
  """Image `(N, s, s, C)` in [0, 1] → code (spatial or pooled), float32."""

  hidden: int
  latent_channels: int
  latent: str = "spatial"
  pool: str = "mlp"
  pool_channels: int = 128
  dtype: Dtype = jnp.float32
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    _check_image(x)
    grid = x.shape[1] // DOWNSAMPLE
    spatial = self.latent == "spatial"
    x = x.astype(self.dtype)
    h = nn.silu(_conv(self.hidden, 4, 2, self.dtype)(x))
    h = DownBlock(2 * self.hidden, self.dtype)(h)
    h = DownBlock(self.latent_channels if spatial else self.pool_channels, self.dtype)(h)
    if not spatial:
      h = self._collapse(h, grid)
    # Batch norm over every axis but the channel one: batch and positions.
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=self.bn_momentum,
        epsilon=self.bn_epsilon,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        name="code_norm",
    )(h.astype(jnp.float32))

  def _collapse(self, h: jax.Array, grid: int) -> jax.Array:
    n = h.shape[0]
    c = self.latent_channels
    if self.pool == "mlp":
      return nn.Dense(c, dtype=self.dtype, param_dtype=jnp.float32, name="collapse")(h.reshape(n, -1))
    if self.pool == "oneshot":
      h = nn.silu(_conv(self.pool_channels, 3, 1, self.dtype, name="collapse_conv")(h))
      h = nn.Conv(c, (grid, grid), strides=(grid, grid), padding="VALID", dtype=self.dtype,
                  param_dtype=jnp.float32, name="collapse")(h)
      return h.reshape(n, c)
    if self.pool == "progressive":
      steps = _progressive_steps(grid)
      for i in range(steps):
        h = DownBlock(c if i == steps - 1 else self.pool_channels, self.dtype,
                      name=f"collapse_{i}")(h)
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

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    grid = self.image_size // DOWNSAMPLE
    h = z.astype(self.dtype)
    if self.latent != "spatial":
      h = self._expand(h, grid)
    h = UpBlock(2 * self.hidden, self.dtype)(h)
    h = UpBlock(self.hidden, self.dtype)(h)
    h = UpsampleConv(self.image_channels, self.dtype, name="to_image")(h)
    return nn.sigmoid(h.astype(jnp.float32))

  def _expand(self, z: jax.Array, grid: int) -> jax.Array:
    n = z.shape[0]
    m = self.pool_channels
    if self.pool == "mlp":
      h = nn.Dense(grid * grid * m, dtype=self.dtype, param_dtype=jnp.float32, name="expand")(z)
      return h.reshape(n, grid, grid, m)
    if self.pool == "oneshot":
      h = nn.ConvTranspose(m, (grid, grid), strides=(grid, grid), padding="VALID",
                           dtype=self.dtype, param_dtype=jnp.float32,
                           name="expand")(z.reshape(n, 1, 1, -1))
      return _conv(m, 3, 1, self.dtype, name="expand_conv")(nn.silu(h))
    if self.pool == "progressive":
      h = z.reshape(n, 1, 1, -1)
      for i in range(_progressive_steps(grid)):
        h = UpBlock(m, self.dtype, name=f"expand_{i}")(h)
      return h
    raise ValueError(f"Unknown pool {self.pool!r}; valid: {', '.join(POOL_KINDS)}.")


class Autoencoder(nn.Module):
  """Encoder + decoder with params `{'encoder': ..., 'decoder': ...}`."""

  hidden: int = 64
  latent_channels: int = 32
  image_size: int = 32
  image_channels: int = 3
  latent: str = "spatial"
  pool: str = "mlp"
  pool_channels: int = 128
  dtype: Dtype = jnp.float32

  def setup(self):
    _validate(self.image_size, self.image_channels, self.latent, self.pool)
    shared = dict(hidden=self.hidden, latent_channels=self.latent_channels, latent=self.latent,
                  pool=self.pool, pool_channels=self.pool_channels, dtype=self.dtype)
    self.encoder = Encoder(**shared)
    self.decoder = Decoder(image_size=self.image_size, image_channels=self.image_channels, **shared)

  def encode(self, x: jax.Array, train: bool = True) -> jax.Array:
    """Images → codes. `train` selects batch (True) or running (False) statistics."""
    if x.shape[1:] != (self.image_size, self.image_size, self.image_channels):
      raise ValueError(
          f"Model expects images of shape (N, {self.image_size}, {self.image_size}, "
          f"{self.image_channels}), got {x.shape}."
      )
    return self.encoder(x, train=train)

  def decode(self, z: jax.Array) -> jax.Array:
    """Codes → images in [0, 1]."""
    return self.decoder(z)

  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    return self.decode(self.encode(x, train=train))

  @property
  def latent_shape(self) -> tuple[int, ...]:
    """Shape of one code (without the batch axis)."""
    if self.latent == "spatial":
      g = self.image_size // DOWNSAMPLE
      return (g, g, self.latent_channels)
    return (self.latent_channels,)


def _progressive_steps(grid: int) -> int:
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


def _validate(image_size: int, image_channels: int, latent: str, pool: str) -> None:
  if image_size % DOWNSAMPLE or image_size <= 0:
    raise ValueError(
        f"image side must be divisible by {DOWNSAMPLE} (three 2x downsamplings); "
        f"got image_size={image_size}."
    )
  if image_channels not in (1, 3):
    raise ValueError(f"image_channels must be 1 or 3, got {image_channels}.")
  if latent not in LATENT_KINDS:
    raise ValueError(f"Unknown latent {latent!r}; valid: {', '.join(LATENT_KINDS)}.")
  if latent == "pooled":
    if pool not in POOL_KINDS:
      raise ValueError(f"Unknown pool {pool!r}; valid: {', '.join(POOL_KINDS)}.")
    if pool == "progressive":
      _progressive_steps(image_size // DOWNSAMPLE)


DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def create_model(config: ml_collections.ConfigDict, *, image_size: int, image_channels: int) -> Autoencoder:
  """Builds an `Autoencoder` from a model config (fields as in `configs/`).

  Expected fields: `hidden`, `latent_channels`, `latent`, and optionally
  `pool`, `pool_channels`, `dtype` ('float32' or 'bfloat16': the compute
  dtype; parameters are always float32).
  """
  dtype_name = config.get("dtype", "float32")
  if dtype_name not in DTYPES:
    raise ValueError(f"Unknown model dtype {dtype_name!r}; valid: {', '.join(DTYPES)}.")
  _validate(image_size, image_channels, config.latent, config.get("pool", "mlp"))
  return Autoencoder(
      hidden=config.hidden,
      latent_channels=config.latent_channels,
      image_size=image_size,
      image_channels=image_channels,
      latent=config.latent,
      pool=config.get("pool", "mlp"),
      pool_channels=config.get("pool_channels", 128),
      dtype=DTYPES[dtype_name],
  )


def init_variables(model: Autoencoder, key: jax.Array, batch_size: int = 2) -> dict:
  """Initial `{'params', 'batch_stats'}` for `model` (shape-only dummy input)."""
  x = jnp.zeros((batch_size, model.image_size, model.image_size, model.image_channels), jnp.float32)
  # Jitted: eager initialisation compiles every initializer op separately (slow).
  return dict(jax.jit(functools.partial(model.init, train=False))(key, x))


def count_params(params: Any) -> int:
  """Total number of scalars in a params pytree."""
  return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
