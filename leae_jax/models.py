"""The convolutional autoencoders of the published runs (Flax linen, NHWC).

`Autoencoder` has exactly two parameter subtrees, `encoder` and `decoder`, and
two methods, `encode` and `decode`. The only normalisation is a batch norm over
the code at the end of the encoder; its running statistics live in the
`batch_stats` collection under `encoder`.

Architectures (config `model.arch`, module field `arch`):
* `'residual'` (default): the reference's later architecture, used by every
  published run but the toy: nearest-upsampling + conv up blocks with 1x1
  skips, a per-channel code norm; image sides divisible by 8.
* `'first'`: the reference's first architecture (commit 5149a49, the published
  toy run): transposed-convolution up blocks with pixel-shuffle skips, a batch
  norm over each element of the flattened code, and a bilinear resize of the
  decoder output when its side (8x the code grid) is not the image side
  (28 px images: 28 → 14 → 7 → 4, decoded 4 → 8 → 16 → 32, resized to 28).
  Spatial codes only; `FirstEncoder` / `FirstDecoder`.

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
import math
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import ml_collections
import numpy as np

from leae_jax import sharding

Dtype = Any
PyTree = Any

ARCHS = ("residual", "first")
LATENT_KINDS = ("spatial", "pooled")
POOL_KINDS = ("mlp", "oneshot", "progressive")
DOWNSAMPLE = 8
INITS = ("pytorch", "flax")
NORM_VARIANCES = ("unbiased", "biased")
PRECISIONS = {"default": jax.lax.Precision.DEFAULT, "high": jax.lax.Precision.HIGH,
              "highest": jax.lax.Precision.HIGHEST}


def initializers(init: str, fan_in: int, *, transposed: bool = False) -> tuple[Any, Any]:
  """`(kernel_init, bias_init)` of a layer whose PyTorch fan-in is `fan_in`.

  `transposed`: a transposed convolution, whose flax kernel is
  `(kh, kw, in, out)` but whose PyTorch fan-in is `out · kh · kw`.
  """
  if init == "flax":
    return nn.initializers.lecun_normal(), nn.initializers.zeros_init()
  if init != "pytorch":
    raise ValueError(f"Unknown model.init {init!r}; valid: {', '.join(INITS)}.")
  axes = dict(in_axis=-1, out_axis=-2) if transposed else {}
  # kaiming_uniform(a=√5): gain² = 2/(1+5) = 1/3, so U(±√(3·(1/3)/fan_in)) = U(±1/√fan_in).
  kernel = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform", **axes)
  bound = 1.0 / math.sqrt(fan_in)

  def bias(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return kernel, bias


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


def unit_range(images: jax.Array) -> jax.Array:
  """uint8 images → float32 in [0, 1] (the same product as `data.ToFloatImage`); float images as given.

  Prepared records travel to the device as uint8 (`data.prepared`); this
  scales them there, bit for bit as the host pipeline would have.
  """
  if images.dtype != jnp.uint8:
    return images
  return images.astype(jnp.float32) * jnp.float32(1.0 / 255.0)


def split_batch(x: jax.Array) -> jax.Array:
  """Keeps `x`'s batch dimension split over the devices of the mesh in context.

  `train.Trainer` traces its steps under its mesh (`('data', 'fsdp')`); there
  every layer's output is constrained to stay split over the batch. Without
  it XLA's partitioner may carry the fsdp split of the weights into the
  activations and gather whole batches later: with the 36 M masked model on
  a 1 × 8 mesh the step's temporaries grew 1.8× over data parallelism. With
  no mesh in context (one device, notebooks), or a batch that does not
  split evenly, it returns `x` unchanged.
  """
  shards = _batch_shards()
  if not x.ndim or shards == 1 or x.shape[0] % shards:
    return x
  return jax.lax.with_sharding_constraint(x, P(sharding.BATCH_AXES))


def _batch_shards() -> int:
  """Devices the batch is split over under the mesh in context (1 without one)."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or not set(sharding.BATCH_AXES) <= set(mesh.axis_names):
    return 1
  return math.prod(mesh.shape[a] for a in sharding.BATCH_AXES)


#: Output positions (images × rows × cols) per batch chunk of a convolution's
#: kernel gradient on CPU (`conv2d`); 0 computes it in one piece.
KERNEL_GRAD_CHUNK = 1024
#: At most this many chunks (each is a convolution of its own in the compiled
#: step: CelebA's 64×64 maps would otherwise take 128, and minutes to compile).
MAX_KERNEL_GRAD_CHUNKS = 32
_NHWC = ("NHWC", "HWIO", "NHWC")


def _kernel_grad_chunks(rows: int, positions: int, target: int) -> int:
  """How many batch chunks the kernel gradient of a layer is summed over (a divisor of `rows`)."""
  if target <= 0:
    return 1
  want = max(1, min(rows, MAX_KERNEL_GRAD_CHUNKS, round(rows * positions / target)))
  return max(d for d in range(1, want + 1) if rows % d == 0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv2d(x: jax.Array, kernel: jax.Array, strides: tuple[int, int], padding: Any,
           precision: jax.lax.Precision | None = None) -> jax.Array:
  """`lax.conv_general_dilated` (NHWC, HWIO) whose kernel gradient XLA:CPU computes fast.

  The value, the input gradient and, on GPU and TPU, the kernel gradient are
  XLA's own. On CPU the kernel gradient is summed over batch chunks of about
  `KERNEL_GRAD_CHUNK` output positions: XLA:CPU computes the whole-batch
  kernel gradient of a 3x3 convolution at a third of its forward speed, the
  chunks' near it (per layer 1.5–2.3× faster, benchmarks/README.md). Chunk
  `i` holds images `i, i + n, i + 2n, ...`, so that a batch split over
  devices stays split evenly within every chunk. Same sum, other order:
  gradients agree with XLA's to float32 rounding (tested).
  """
  return _xla_conv2d(x, kernel, strides, padding, precision)


def _xla_conv2d(x, kernel, strides, padding, precision):
  return jax.lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=_NHWC,
                                      precision=precision)


def _conv2d_fwd(x, kernel, strides, padding, precision):
  return conv2d(x, kernel, strides, padding, precision), (x, kernel)


def _conv2d_bwd(strides, padding, precision, residuals, dy):
  x, kernel = residuals

  conv_of = functools.partial(_xla_conv2d, strides=strides, padding=padding, precision=precision)
  _, vjp = jax.vjp(conv_of, x, kernel)
  dx, whole_dk = vjp(dy)

  def chunked_dk(x, dy):
    rows = _rows_per_shard(x.shape[0])
    n = _kernel_grad_chunks(rows, dy.shape[1] * dy.shape[2], KERNEL_GRAD_CHUNK)
    if n == 1:
      return whole_dk
    xs = x.reshape(x.shape[0] // n, n, *x.shape[1:])
    dys = dy.reshape(dy.shape[0] // n, n, *dy.shape[1:])
    total = None
    for i in range(n):  # unrolled: XLA:CPU runs convolutions in loops far slower
      part = jax.vjp(lambda k: conv_of(xs[:, i], k), kernel)[1](dys[:, i])[0]
      part = part.astype(jnp.float32)
      total = part if total is None else total + part
    return total.astype(kernel.dtype)

  dk = jax.lax.platform_dependent(x, dy, cpu=chunked_dk, default=lambda x, dy: whole_dk)
  return dx, dk


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def _rows_per_shard(batch: int) -> int:
  """Batch rows each device holds under the mesh in context (all of them without one)."""
  shards = _batch_shards()
  return batch // shards if batch % shards == 0 else batch


# Flax's layers with `split_batch` on their outputs. Same class names, so the
# automatic parameter names (Conv_0, Dense_1, ...) do not change.
class Conv(nn.Module):
  """`nn.Conv` (2-D, channels last) computed by `conv2d`; same parameters and initialisers.

  `nn.Conv` has no supported way to swap its convolution, so this is its
  2-D case written out: `kernel` (kh, kw, in, out) and `bias` (out,) in
  `param_dtype`, inputs and parameters cast to `dtype`, output split over
  the batch (`split_batch`).
  """

  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  padding: Any = "SAME"
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  precision: jax.lax.Precision | None = None
  kernel_init: Any = nn.initializers.lecun_normal()
  bias_init: Any = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    shape = (*self.kernel_size, inputs.shape[-1], self.features)
    kernel = self.param("kernel", self.kernel_init, shape, self.param_dtype)
    bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
    padding = self.padding if isinstance(self.padding, str) else tuple(map(tuple, self.padding))
    y = conv2d(inputs.astype(self.dtype), kernel.astype(self.dtype), tuple(self.strides), padding,
               self.precision)
    return split_batch(y + bias.astype(self.dtype))


class ConvTranspose(nn.ConvTranspose):
  def __call__(self, inputs: jax.Array) -> jax.Array:
    return split_batch(super().__call__(inputs))


class Dense(nn.Dense):
  def __call__(self, inputs: jax.Array) -> jax.Array:
    return split_batch(super().__call__(inputs))


def _conv(features: int, kernel: int, stride: int, dtype: Dtype, *, in_features: int,
          initializer: str = "pytorch", precision: str = "default", name: str | None = None,
          padding: Any = None, time_only: bool = False) -> Conv:
  # Explicit symmetric padding reproduces PyTorch's `padding=k//2` (k odd) and
  # `padding=1` for the 4x4 stride-2 stem, so spatial sides halve exactly.
  # `time_only`: a (k, 1) kernel on a series run as (N, L, 1, C), i.e. a 1-D
  # convolution along time with PyTorch's Conv1d fan-in.
  pad = 1 if kernel == 4 else kernel // 2
  kernel_init, bias_init = initializers(
      initializer, in_features * kernel * (1 if time_only else kernel))
  if padding is None:
    padding = ((pad, pad), (0, 0) if time_only else (pad, pad))
  return Conv(
      features,
      (kernel, 1) if time_only else (kernel, kernel),
      strides=(stride, 1) if time_only else (stride, stride),
      padding=padding,
      dtype=dtype,
      param_dtype=jnp.float32,
      precision=PRECISIONS[precision],
      kernel_init=kernel_init,
      bias_init=bias_init,
      name=name,
  )


def _dense(features: int, dtype: Dtype, *, in_features: int, initializer: str, precision: str,
           name: str) -> Dense:
  kernel_init, bias_init = initializers(initializer, in_features)
  return Dense(features, dtype=dtype, param_dtype=jnp.float32, precision=PRECISIONS[precision],
                  kernel_init=kernel_init, bias_init=bias_init, name=name)


# Rows (or columns) of a 3x3 kernel seen by each output phase of "nearest ×2
# upsample, then 3x3 conv": phase 0 of output row 2i reads input rows i−1, i, i
# (taps 0 | 1+2), phase 1 (row 2i+1) reads i, i, i+1 (taps 0+1 | 2).
_PHASE_FOLD = np.array([[[1, 0, 0], [0, 1, 1]], [[1, 1, 0], [0, 0, 1]]], np.float32)


def upsample_conv3x3(x: jax.Array, kernel: jax.Array,
                     precision: jax.lax.Precision | None = None) -> jax.Array:
  """`conv3x3(upsample_nearest(x, 2))` with zero padding 1, in sub-pixel form.

  Each of the four output phases (a, b) of the upsampled convolution is a 2x2
  convolution of the *low-resolution* input with the 3x3 kernel's taps folded
  together, so the result is exact (up to float rounding) with 4/9 of the
  multiply-adds, and XLA:CPU's backward pass is ~3x faster than through the
  upsampled map (benchmarks/README.md).
  """
  n, h, w, _ = x.shape
  # The taps are folded in float32 (exact sums of at most four weights) and
  # only then cast to the compute dtype: folding in bfloat16 would round each
  # partial sum, a second rounding the direct convolution never makes.
  fold = jnp.asarray(_PHASE_FOLD, jnp.float32)
  kernel32 = kernel.astype(jnp.float32)
  phases = []
  for a in (0, 1):
    for b in (0, 1):
      k = jnp.einsum("py,qx,yxio->pqio", fold[a], fold[b], kernel32,
                     precision=jax.lax.Precision.HIGHEST).astype(x.dtype)
      pad = ((1, 0) if a == 0 else (0, 1), (1, 0) if b == 0 else (0, 1))
      phases.append(conv2d(x, k, (1, 1), pad, precision))
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
  initializer: str = "pytorch"
  precision: str = "default"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel_init, bias_init = initializers(self.initializer, 9 * x.shape[-1])
    kernel = self.param("kernel", kernel_init, (3, 3, x.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", bias_init, (self.features,), jnp.float32)
    y = upsample_conv3x3(x.astype(self.dtype), kernel, PRECISIONS[self.precision])
    return y + bias.astype(self.dtype)


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
    h = _conv(self.features, 3, 2, self.dtype, in_features=x.shape[-1], **kw)(x)
    h = _conv(self.features, 3, 1, self.dtype, in_features=self.features, **kw)(nn.silu(h))
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
      h = _conv(self.features, 3, 1, self.dtype, in_features=x.shape[-1], name="Conv_0",
                **conv_kw)(upsample_nearest(x, time_only=True))
    else:  # the same function, as sub-pixel convolutions at low resolution
      h = UpsampleConv(self.features, self.dtype, name="Conv_0", **kw)(x)
    h = _conv(self.features, 3, 1, self.dtype, in_features=self.features, name="Conv_1",
              **conv_kw)(nn.silu(h))
    # A 1x1 conv commutes with nearest upsampling; run it at low resolution.
    skip = upsample_nearest(_conv(self.features, 1, 1, self.dtype, in_features=x.shape[-1],
                                  name="Conv_2", **conv_kw)(x), time_only=self.time_only)
    return nn.silu(h + skip)


class CodeNorm(nn.Module):
  """Batch norm over every axis but the last (batch and positions), PyTorch semantics.

  Training mode normalises with the batch mean and the *biased* batch
  variance (two-pass, in float32) and moves the running statistics by
  `1 − momentum` towards the batch ones; the running variance takes the
  *unbiased* batch variance (`n/(n−1)`), as `torch.nn.BatchNorm` does, unless
  `running_variance='biased'` (flax's `nn.BatchNorm`). Evaluation mode uses
  the running statistics. The variables are named like `nn.BatchNorm`'s
  (`scale`, `bias`; `mean`, `var`).
  """

  momentum: float = 0.9
  epsilon: float = 1e-5
  running_variance: str = "unbiased"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    features = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones_init(), (features,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (features,), jnp.float32)
    ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), jnp.float32))
    ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), jnp.float32))
    x = x.astype(jnp.float32)
    if train:
      axes = tuple(range(x.ndim - 1))
      count = math.prod(x.shape[:-1])
      mean = jnp.mean(x, axis=axes)
      var = jnp.mean(jnp.square(x - mean), axis=axes)
      if not self.is_initializing():
        running = var * (count / max(count - 1, 1)) if self.running_variance == "unbiased" else var
        ra_mean.value = self.momentum * ra_mean.value + (1.0 - self.momentum) * mean
        ra_var.value = self.momentum * ra_var.value + (1.0 - self.momentum) * running
    else:
      mean, var = ra_mean.value, ra_var.value
    return (x - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias


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
    h = nn.silu(_conv(self.hidden, 4, 2, self.dtype, in_features=x.shape[-1], **kw)(x))
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
      return _dense(c, self.dtype, in_features=flat.shape[-1], initializer=self.initializer,
                    precision=self.dense_precision, name="collapse")(flat)
    if self.pool == "oneshot":
      h = nn.silu(_conv(m, 3, 1, self.dtype, in_features=m, name="collapse_conv", **kw)(h))
      kernel_init, bias_init = initializers(self.initializer, m * grid * grid)
      h = Conv(c, (grid, grid), strides=(grid, grid), padding="VALID", dtype=self.dtype,
                  param_dtype=jnp.float32, precision=PRECISIONS[self.conv_precision],
                  kernel_init=kernel_init, bias_init=bias_init, name="collapse")(h)
      return h.reshape(n, c)
    if self.pool == "progressive":
      # conv3x3 + SiLU, one residual down block per halving to 1x1, then a
      # 1x1 projection to the code width when it differs from the map's.
      h = nn.silu(_conv(m, 3, 1, self.dtype, in_features=m, name="collapse_conv", **kw)(h))
      for i in range(_progressive_steps(grid)):
        h = DownBlock(m, self.dtype, name=f"collapse_{i}", **kw)(h)
      if c != m:
        h = _conv(c, 1, 1, self.dtype, in_features=m, name="collapse_proj", **kw)(h)
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
      h = _dense(grid * grid * m, self.dtype, in_features=c, initializer=self.initializer,
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
        h = nn.silu(_conv(m, 1, 1, self.dtype, in_features=c, name="expand_proj", **kw)(h))
      for i in range(_progressive_steps(grid)):
        h = UpBlock(m, self.dtype, name=f"expand_{i}", **kw)(h)
      return h
    raise ValueError(f"Unknown pool {self.pool!r}; valid: {', '.join(POOL_KINDS)}.")


# ---------------------------------------------------------------------------
# The first architecture (reference commit 5149a49, the published toy run).


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


def _conv_transpose(features: int, dtype: Dtype, *, initializer: str, precision: str,
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
    h = _conv(self.features, 3, 2, self.dtype, in_features=x.shape[-1], **kw)(x)
    h = _conv(self.features, 3, 1, self.dtype, in_features=self.features, **kw)(nn.silu(h))
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
    h = _conv_transpose(self.features, self.dtype, **kw)(x)
    h = _conv(self.features, 3, 1, self.dtype, in_features=self.features, **kw)(nn.silu(h))
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
    h = nn.silu(_conv(self.hidden, 4, 2, self.dtype, in_features=x.shape[-1], name="stem",
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
    h = _conv_transpose(self.image_channels, self.dtype, name="to_image", **kw)(h)
    return resize_bilinear(nn.sigmoid(h.astype(jnp.float32)), self.image_size)


class Autoencoder(nn.Module):
  """Encoder + decoder with params `{'encoder': ..., 'decoder': ...}`.

  `arch` picks the architecture (`ARCHS`): `'residual'` (`Encoder` /
  `Decoder`) or `'first'` (`FirstEncoder` / `FirstDecoder`, spatial codes
  only; `pool`, `pool_channels` and `dense_precision` are unused there).
  The 1-D model of sequences is `series_models.SeriesAutoencoder`.
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
    _validate_options(self.initializer, self.conv_precision, self.dense_precision,
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


def _validate(image_size: int, image_channels: int, latent: str, pool: str, *,
              arch: str = "residual", hidden: int | None = None,
              latent_channels: int | None = None) -> None:
  if arch not in ARCHS:
    raise ValueError(f"Unknown model.arch {arch!r}; valid: {', '.join(ARCHS)}.")
  if arch == "first":
    _validate_first(image_size, image_channels, latent, hidden, latent_channels)
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
      _progressive_steps(image_size // DOWNSAMPLE)


def _validate_first(image_size: int, image_channels: int, latent: str, hidden: int | None,
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


def _validate_options(initializer: str, conv_precision: str, dense_precision: str,
                      norm_running_variance: str) -> None:
  if initializer not in INITS:
    raise ValueError(f"Unknown model.init {initializer!r}; valid: {', '.join(INITS)}.")
  for field, value in (("conv_precision", conv_precision), ("dense_precision", dense_precision)):
    if value not in PRECISIONS:
      raise ValueError(f"Unknown model.{field} {value!r}; valid: {', '.join(PRECISIONS)}.")
  if norm_running_variance not in NORM_VARIANCES:
    raise ValueError(f"Unknown model.norm_running_variance {norm_running_variance!r}; "
                     f"valid: {', '.join(NORM_VARIANCES)}.")


DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


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
  _validate_options(**options)
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
  model of `series_models`).
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
