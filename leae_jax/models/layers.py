"""Layers of every model: initialisers, convolutions and dense layers with PyTorch's numerics,
the code norm, and the options they validate.

Everything here is shared by the image architectures (`residual`, `first`) and the
series model (`series`); nothing here knows an architecture.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np

from leae_jax import sharding


Dtype = Any
PyTree = Any

INITS = ("pytorch", "flax")
NORM_VARIANCES = ("unbiased", "biased")
#: Compute dtypes of `config.model.dtype` (parameters are always float32).
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
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


def kernel_grad_chunks(rows: int, positions: int, target: int) -> int:
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
    n = kernel_grad_chunks(rows, dy.shape[1] * dy.shape[2], KERNEL_GRAD_CHUNK)
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


def conv_layer(features: int, kernel: int, stride: int, dtype: Dtype, *, in_features: int,
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


def dense_layer(features: int, dtype: Dtype, *, in_features: int, initializer: str, precision: str,
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


def validate_options(initializer: str, conv_precision: str, dense_precision: str,
                      norm_running_variance: str) -> None:
  if initializer not in INITS:
    raise ValueError(f"Unknown model.init {initializer!r}; valid: {', '.join(INITS)}.")
  for field, value in (("conv_precision", conv_precision), ("dense_precision", dense_precision)):
    if value not in PRECISIONS:
      raise ValueError(f"Unknown model.{field} {value!r}; valid: {', '.join(PRECISIONS)}.")
  if norm_running_variance not in NORM_VARIANCES:
    raise ValueError(f"Unknown model.norm_running_variance {norm_running_variance!r}; "
                     f"valid: {', '.join(NORM_VARIANCES)}.")
