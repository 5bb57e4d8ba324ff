"""The models: the image autoencoder of the published runs, and how to build and run any model.

The package, from the bottom up:
* `layers`: initialisers (PyTorch's or flax's), convolutions and dense layers
  with PyTorch's numerics (and a fast CPU kernel gradient), the code norm,
  compute dtypes and the options they validate;
* `resample`: parameter-free reshaping and resizing (pixel (un)shuffles,
  nearest and bilinear resizes, channel grouping);
* `residual`: the reference's later architecture, used by every published
  run but the toy: residual down/up blocks, `Encoder` / `Decoder` with a
  spatial or pooled code;
* `first`: the reference's first architecture (the published toy run);
* `series`: the 1-D model of sequences (`SeriesAutoencoder`), built from the
  same layers and blocks;
* here: `Autoencoder` (the image model: either architecture), `create_model`,
  `init_variables`, `count_params`, and `encode` / `decode`, which run any of
  these models with explicit normalisation semantics.

`Autoencoder` has exactly two parameter subtrees, `encoder` and `decoder`, and
two methods, `encode` and `decode`. The only normalisation is a batch norm over
the code at the end of the encoder; its running statistics live in the
`batch_stats` collection under `encoder`.

Architectures (config `model.arch`, module field `arch`):
* `'residual'` (default): nearest-upsampling + conv up blocks with 1x1
  skips, a per-channel code norm; image sides divisible by 8.
* `'first'` (commit 5149a49, the published toy run): transposed-convolution
  up blocks with pixel-shuffle skips, a batch norm over each element of the
  flattened code, and a bilinear resize of the decoder output when its side
  (8x the code grid) is not the image side (28 px images: 28 → 14 → 7 → 4,
  decoded 4 → 8 → 16 → 32, resized to 28). Spatial codes only.

Initialisation (config `model.init`, module field `initializer`): `'pytorch'` (the published runs: PyTorch's default
`kaiming_uniform(a=√5)` kernels, i.e. U(±1/√fan_in) with variance 1/(3·fan_in),
and biases U(±1/√fan_in); for the transposed convolution fan_in is computed
from its *output* channels, as PyTorch does) or `'flax'` (lecun-normal kernels,
zero biases).

Latent layouts:
* `spatial`: the code is the `(s/8, s/8, latent_channels)` feature map.
* `pooled`: the `(s/8, s/8, pool_channels)` map is collapsed to a single
  `latent_channels` vector by `mlp`, `oneshot` or `progressive`, and the
  decoder expands it back with the mirrored layer(s). Codes are `(N, c)`.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from leae_jax.models.first import FirstDecoder
from leae_jax.models.first import FirstEncoder
from leae_jax.models.first import first_arch_grid
from leae_jax.models.first import validate_first
from leae_jax.models.layers import DTYPES
from leae_jax.models.layers import Dtype
from leae_jax.models.layers import split_batch  # noqa: F401  (the train step keeps batches split)
from leae_jax.models.layers import unit_range  # noqa: F401  (uint8 batches scaled on the device)
from leae_jax.models.layers import PyTree
from leae_jax.models.layers import validate_options
from leae_jax.models.residual import DOWNSAMPLE
from leae_jax.models.residual import LATENT_KINDS
from leae_jax.models.residual import POOL_KINDS
from leae_jax.models.residual import Decoder
from leae_jax.models.residual import Encoder
from leae_jax.models.residual import progressive_steps
from leae_jax.models.resample import flatten_channel_major  # noqa: F401  (the toy's SIGReg samples)

ARCHS = ("residual", "first")


class Autoencoder(nn.Module):
  """Encoder + decoder with params `{'encoder': ..., 'decoder': ...}`.

  `arch` picks the architecture (`ARCHS`): `'residual'` (`Encoder` /
  `Decoder`) or `'first'` (`FirstEncoder` / `FirstDecoder`, spatial codes
  only; `pool`, `pool_channels` and `dense_precision` are unused there).
  The 1-D model of sequences is `series.SeriesAutoencoder`.
  """

  modality: ClassVar[str] = "image"  # the kind of data (views.MODALITIES)

  hidden: int = 64
  latent_channels: int = 32
  image_size: int = 32
  image_channels: int = 3
  latent: str = "spatial"
  pool: str = "mlp"
  pool_channels: int = 128
  dtype: Dtype = jnp.float32
  initializer: str = "pytorch"
  conv_precision: str = "default"
  dense_precision: str = "highest"
  norm_running_variance: str = "unbiased"
  arch: str = "residual"

  def setup(self):
    _validate(self.image_size, self.image_channels, self.latent, self.pool, arch=self.arch,
              hidden=self.hidden, latent_channels=self.latent_channels)
    validate_options(self.initializer, self.conv_precision, self.dense_precision,
                      self.norm_running_variance)
    if self.arch == "first":
      shared = dict(hidden=self.hidden, latent_channels=self.latent_channels, dtype=self.dtype,
                    initializer=self.initializer, conv_precision=self.conv_precision)
      self.encoder = FirstEncoder(norm_running_variance=self.norm_running_variance, **shared)
      self.decoder = FirstDecoder(image_size=self.image_size, image_channels=self.image_channels,
                                  **shared)
      return
    shared = dict(hidden=self.hidden, latent_channels=self.latent_channels, latent=self.latent,
                  pool=self.pool, pool_channels=self.pool_channels, dtype=self.dtype,
                  initializer=self.initializer, conv_precision=self.conv_precision,
                  dense_precision=self.dense_precision)
    self.encoder = Encoder(norm_running_variance=self.norm_running_variance, **shared)
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
  def input_shape(self) -> tuple[int, ...]:
    """Shape of one input image (without the batch axis)."""
    return (self.image_size, self.image_size, self.image_channels)

  @property
  def latent_shape(self) -> tuple[int, ...]:
    """Shape of one code (without the batch axis)."""
    if self.arch == "first":
      g = first_arch_grid(self.image_size)
      return (g, g, self.latent_channels)
    if self.latent == "spatial":
      g = self.image_size // DOWNSAMPLE
      return (g, g, self.latent_channels)
    return (self.latent_channels,)


def _validate(image_size: int, image_channels: int, latent: str, pool: str, *,
              arch: str = "residual", hidden: int | None = None,
              latent_channels: int | None = None) -> None:
  if arch not in ARCHS:
    raise ValueError(f"Unknown model.arch {arch!r}; valid: {', '.join(ARCHS)}.")
  if arch == "first":
    validate_first(image_size, image_channels, latent, hidden, latent_channels)
    return
  if image_size % DOWNSAMPLE or image_size <= 0:
    raise ValueError(
        f"image side must be divisible by {DOWNSAMPLE} (three 2x downsamplings); "
        f"got image_size={image_size}."
    )
  if image_channels not in (1, 3):
    raise ValueError(f"image_channels must be 1 or 3, got {image_channels}.")
  if latent not in LATENT_KINDS:
    raise ValueError(f"Unknown model.latent {latent!r}; valid: {', '.join(LATENT_KINDS)}.")
  if latent == "pooled":
    if pool not in POOL_KINDS:
      raise ValueError(f"Unknown model.pool {pool!r}; valid: {', '.join(POOL_KINDS)}.")
    if pool == "progressive":
      progressive_steps(image_size // DOWNSAMPLE)


def create_model(config: ml_collections.ConfigDict, *, image_size: int, image_channels: int) -> Autoencoder:
  """Builds an `Autoencoder` from a model config (fields as in `configs/`).

  Expected fields: `hidden`, `latent_channels`, `latent`, and optionally
  `arch` ('residual' | 'first', see the module docstring),
  `pool`, `pool_channels`, `dtype` ('float32' or 'bfloat16': the compute
  dtype; parameters are always float32), `init` ('pytorch' | 'flax'),
  `conv_precision` / `dense_precision` ('default' | 'high' | 'highest': the
  matmul precision of convolutions and dense layers; on GPUs 'default' lets
  XLA use TF32, as cuDNN convolutions do under PyTorch's defaults, while
  PyTorch runs its linear layers in full float32, hence 'highest'), and
  `norm_running_variance` ('unbiased' as PyTorch | 'biased').
  """
  dtype_name = config.dtype
  if dtype_name not in DTYPES:
    raise ValueError(f"Unknown model.dtype {dtype_name!r}; valid: {', '.join(DTYPES)}.")
  arch = config.arch
  _validate(image_size, image_channels, config.latent, config.pool, arch=arch,
            hidden=config.hidden, latent_channels=config.latent_channels)
  options = dict(initializer=config.init,
                 conv_precision=config.conv_precision,
                 dense_precision=config.dense_precision,
                 norm_running_variance=config.norm_running_variance)
  validate_options(**options)
  return Autoencoder(
      hidden=config.hidden,
      latent_channels=config.latent_channels,
      image_size=image_size,
      image_channels=image_channels,
      latent=config.latent,
      pool=config.pool,
      pool_channels=config.pool_channels,
      dtype=DTYPES[dtype_name],
      arch=arch,
      **options,
  )


def init_variables(model: nn.Module, key: jax.Array, batch_size: int = 2) -> dict:
  """Initial `{'params', 'batch_stats'}` for `model` (shape-only dummy input).

  `model` is an `Autoencoder` or any model with an `input_shape` (the series
  model of `series`).
  """
  x = jnp.zeros((batch_size, *model.input_shape), jnp.float32)
  # Jitted: eager initialisation compiles every initializer op separately (slow).
  return dict(jax.jit(functools.partial(model.init, train=False))(key, x))


def count_params(params: Any) -> int:
  """Total number of scalars in a params pytree."""
  return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))


# ---------------------------------------------------------------------------
# Running the model, with explicit normalisation semantics.


def encode(
    model: Autoencoder,
    encoder_params: PyTree,
    batch_stats: PyTree,
    images: jax.Array,
    *,
    train: bool = True,
) -> tuple[jax.Array, PyTree]:
  """Encodes `images`; returns `(codes, batch_stats after this batch)`.

  With `train=True` the code is normalised with the statistics of `images`
  and the returned running statistics include this batch; with `train=False`
  the stored running statistics are used and returned unchanged. Callers that
  must not update the statistics (the judge, corrupted inputs) simply drop
  the returned value.
  """
  variables = {"params": {"encoder": encoder_params}, "batch_stats": batch_stats}
  if not train:
    return model.apply(variables, images, train=False, method=model.encode), batch_stats
  codes, updates = model.apply(variables, images, train=True, method=model.encode,
                               mutable=["batch_stats"])
  return codes, updates["batch_stats"]


def decode(model: Autoencoder, decoder_params: PyTree, codes: jax.Array) -> jax.Array:
  """Decodes `codes` into images in [0, 1]."""
  return model.apply({"params": {"decoder": decoder_params}}, codes, method=model.decode)
