"""The 1-D residual convolutional autoencoder for multichannel sequences `(N, L, C)`.

The image model's later architecture (`residual.Encoder` / `residual.Decoder`)
with one spatial axis instead of two, built from the same `config.model`
fields (`hidden`, `latent_channels`, `dtype`, `init`, `conv_precision`,
`norm_running_variance`) and the same parts (`layers.initializers`,
`residual.DownBlock`, `residual.UpBlock`, `layers.CodeNorm`):

* Encoder: conv k4/s2/p1 to `h` channels + SiLU; `DownBlock(2h)`;
  `DownBlock(c)`; the code norm (batch norm per code channel, PyTorch
  semantics). The blocks are the image model's `residual.DownBlock` /
  `residual.UpBlock` with `time_only=True`: `DownBlock(f)` =
  `SiLU(conv3(SiLU(conv3/s2(x))) + skip)`, the skip parameter-free: a 2-step
  space-to-depth (`2C` channels) and `match_channels` to `f`.
* Code: `(L/8, c)`, normalised.
* Decoder: `UpBlock(2h)`, `UpBlock(h)`, nearest ×2 + conv3 to `C`
  channels. `UpBlock(f)` = `SiLU(conv3(SiLU(conv3(up₂(x)))) + up₂(conv1(x)))`.
  The output is linear: series are normalised (zero mean, unit variance per
  channel), not bounded like pixels, so there is no sigmoid.

Params are `{'encoder', 'decoder'}` and the batch-norm statistics live under
`encoder`, as in `models.Autoencoder`, so `models.encode` / `models.decode`,
the objectives, the judges and the train state work unchanged.

Inside, a series runs as an `(N, L, 1, C)` map and every convolution is the
image model's 2-D `layers.Conv` with a `(k, 1)` kernel: the same function and
parameter count as a 1-D convolution, and the same fast CPU kernel gradient
(`layers.conv2d`). Codes and outputs are `(N, L/8, c)` and `(N, L, C)`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from leae_jax.models import layers
from leae_jax.models import resample
from leae_jax.models import residual

Dtype = Any
DOWNSAMPLE = residual.DOWNSAMPLE


def _conv(features: int, kernel: int, stride: int, dtype: Dtype, *, in_features: int,
          initializer: str, precision: str, name: str | None = None) -> layers.Conv:
  # The image model's convolution with a (k, 1) kernel on the (N, L, 1, C) map.
  return layers.conv_layer(features, kernel, stride, dtype, in_features=in_features,
                      initializer=initializer, precision=precision, name=name, time_only=True)


class SeriesEncoder(nn.Module):
  """Series `(N, L, C)` → code `(N, L/8, latent_channels)`, float32."""

  hidden: int
  latent_channels: int
  dtype: Dtype = jnp.float32
  initializer: str = "pytorch"
  conv_precision: str = "default"
  norm_running_variance: str = "unbiased"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    kw = dict(initializer=self.initializer, precision=self.conv_precision)
    x = x.astype(self.dtype)[:, :, None, :]  # (N, L, 1, C)
    h = nn.silu(_conv(self.hidden, 4, 2, self.dtype, in_features=x.shape[-1], **kw)(x))
    h = residual.DownBlock(2 * self.hidden, self.dtype, **kw, time_only=True)(h)
    h = residual.DownBlock(self.latent_channels, self.dtype, **kw, time_only=True)(h)
    return layers.CodeNorm(running_variance=self.norm_running_variance,
                           name="code_norm")(h[:, :, 0, :], train=train)


class SeriesDecoder(nn.Module):
  """Code `(N, L/8, latent_channels)` → series `(N, L, C)`, linear output, float32."""

  hidden: int
  channels: int
  dtype: Dtype = jnp.float32
  initializer: str = "pytorch"
  conv_precision: str = "default"

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    kw = dict(initializer=self.initializer, precision=self.conv_precision)
    h = z.astype(self.dtype)[:, :, None, :]  # (N, L/8, 1, c)
    h = residual.UpBlock(2 * self.hidden, self.dtype, **kw, time_only=True)(h)
    h = residual.UpBlock(self.hidden, self.dtype, **kw, time_only=True)(h)
    h = _conv(self.channels, 3, 1, self.dtype, in_features=self.hidden, name="to_series",
              **kw)(resample.upsample_nearest(h, time_only=True))
    return h[:, :, 0, :].astype(jnp.float32)


class SeriesAutoencoder(nn.Module):
  """Encoder + decoder of series, params `{'encoder': ..., 'decoder': ...}` (as `models.Autoencoder`)."""

  modality: ClassVar[str] = "sequence"

  hidden: int = 32
  latent_channels: int = 8
  length: int = 128
  channels: int = 1
  dtype: Dtype = jnp.float32
  initializer: str = "pytorch"
  conv_precision: str = "default"
  norm_running_variance: str = "unbiased"

  def setup(self):
    _validate(self.length, self.channels)
    self.encoder = SeriesEncoder(self.hidden, self.latent_channels, self.dtype, self.initializer,
                                 self.conv_precision, self.norm_running_variance)
    self.decoder = SeriesDecoder(self.hidden, self.channels, self.dtype, self.initializer,
                                 self.conv_precision)

  def encode(self, x: jax.Array, train: bool = True) -> jax.Array:
    """Series → codes. `train` selects batch (True) or running (False) statistics."""
    if x.shape[1:] != self.input_shape:
      raise ValueError(f"Model expects series of shape (N, {self.length}, {self.channels}), "
                       f"got {x.shape}.")
    return self.encoder(x, train=train)

  def decode(self, z: jax.Array) -> jax.Array:
    """Codes → series (normalised scale)."""
    return self.decoder(z)

  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    return self.decode(self.encode(x, train=train))

  @property
  def input_shape(self) -> tuple[int, ...]:
    """Shape of one input series (without the batch axis)."""
    return (self.length, self.channels)

  @property
  def latent_shape(self) -> tuple[int, ...]:
    """Shape of one code (without the batch axis)."""
    return (self.length // DOWNSAMPLE, self.latent_channels)


def _validate(length: int, channels: int) -> None:
  if length <= 0 or length % DOWNSAMPLE:
    raise ValueError(f"image_size={length} is not valid for series: the length must be a "
                     f"positive multiple of {DOWNSAMPLE} (three 2x downsamplings).")
  if channels <= 0:
    raise ValueError(f"series need at least one channel, got {channels}.")


def create_model(config: ml_collections.ConfigDict, *, length: int,
                 channels: int) -> SeriesAutoencoder:
  """Builds a `SeriesAutoencoder` from a model config (the image model's fields).

  Reads `hidden`, `latent_channels`, `dtype`, `init`, `conv_precision` and
  `norm_running_variance`; `arch` must be 'residual' and `latent` 'spatial'
  (the pooled codes and the first architecture exist for images only).
  """
  if config.arch != "residual":
    raise ValueError(f"model.arch={config.arch!r} is not valid for series: the 1-D model is the "
                     "residual architecture, model.arch='residual'.")
  if config.latent != "spatial":
    raise ValueError(f"model.latent={config.latent!r} is not valid for series: their code is "
                     "(length/8, latent_channels), model.latent='spatial'.")
  if config.dtype not in layers.DTYPES:
    raise ValueError(f"Unknown model.dtype {config.dtype!r}; valid: {', '.join(layers.DTYPES)}.")
  if config.hidden <= 0 or config.latent_channels <= 0:
    raise ValueError(f"model.hidden and model.latent_channels must be positive, got "
                     f"{config.hidden} and {config.latent_channels}.")
  layers.validate_options(config.init, config.conv_precision, config.dense_precision,
                           config.norm_running_variance)
  _validate(length, channels)
  return SeriesAutoencoder(hidden=config.hidden, latent_channels=config.latent_channels,
                           length=length, channels=channels, dtype=layers.DTYPES[config.dtype],
                           initializer=config.init, conv_precision=config.conv_precision,
                           norm_running_variance=config.norm_running_variance)
