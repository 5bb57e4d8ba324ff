"""Micro-benchmarks behind the CPU speed-ups of the CIFAR step (batch 128).

  python benchmarks/micro_ops.py

Prints JSON lines, milliseconds (median of 5 blocks of 5 calls):

* `upsample_conv`: "nearest ×2 then conv3x3" at the decoder's three shapes,
  direct (conv of the upsampled map) vs `layers.upsample_conv3x3` (four
  folded 2x2 convs on the low-resolution map), forward and forward+backward;
* `sigreg`: SIGReg on the 4x4x32 CIFAR code, literal Epps–Pulley (cos/sin at
  every knot, autodiff) vs the library's angle-addition scan with its
  hand-written backward;
* `conv_grads`: a 3x3 convolution's forward, input gradient and kernel
  gradient separately (XLA's whole-batch kernel gradient);
* `kernel_grad`: every parameter-carrying convolution of the CIFAR step, its
  kernel gradient as XLA computes it for the whole batch vs `layers.conv2d`'s
  (summed over batch chunks of ~1024 output positions on CPU).
"""

import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from leae_jax.models import layers
from leae_jax.models import resample
from leae_jax import sigreg as sigreg_lib

DN = ("NHWC", "HWIO", "NHWC")


def timed(fn, *args) -> float:
  jax.block_until_ready(fn(*args))
  blocks = []
  for _ in range(5):
    t0 = time.perf_counter()
    for _ in range(5):
      out = fn(*args)
    jax.block_until_ready(out)
    blocks.append((time.perf_counter() - t0) / 5 * 1e3)
  return round(float(np.median(blocks)), 2)


def conv3x3(x, k):
  return jax.lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=DN)


def direct_upsample_conv(x, k):
  return conv3x3(resample.upsample_nearest(x), k)


def fwd_bwd(f):
  return jax.jit(jax.grad(lambda x, k: jnp.sum(f(x, k) ** 2), argnums=(0, 1)))


def sigreg_with(epps):
  def fn(z, key):
    n, h, w, d = z.shape
    a = sigreg_lib.random_directions(key, d, 256)
    proj = jnp.einsum("nhwd,dk->hwnk", z, a).reshape(h * w, n, 256)
    return jnp.mean(jax.vmap(epps)(proj))
  return fn


def main():
  rng = np.random.default_rng(0)
  for side, cin, cout in [(4, 32, 128), (8, 128, 64), (16, 64, 3)]:
    x = jnp.asarray(rng.normal(size=(128, side, side, cin)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(3, 3, cin, cout)) * 0.05, jnp.float32)
    print(json.dumps({
        "op": "upsample_conv", "input": [128, side, side, cin], "features": cout,
        "direct_fwd": timed(jax.jit(direct_upsample_conv), x, k),
        "subpixel_fwd": timed(jax.jit(layers.upsample_conv3x3), x, k),
        "direct_fwd_bwd": timed(fwd_bwd(direct_upsample_conv), x, k),
        "subpixel_fwd_bwd": timed(fwd_bwd(layers.upsample_conv3x3), x, k),
    }), flush=True)

  z = jnp.asarray(rng.normal(size=(128, 4, 4, 32)), jnp.float32)
  key = jax.random.key(0)
  literal = sigreg_with(sigreg_lib.epps_pulley_reference)
  fast = sigreg_with(sigreg_lib.epps_pulley)
  print(json.dumps({
      "op": "sigreg", "codes": [128, 4, 4, 32], "slices": 256, "knots": 17,
      "literal_fwd": timed(jax.jit(literal), z, key),
      "fast_fwd": timed(jax.jit(fast), z, key),
      "literal_fwd_bwd": timed(jax.jit(jax.value_and_grad(literal)), z, key),
      "fast_fwd_bwd": timed(jax.jit(jax.value_and_grad(fast)), z, key),
  }), flush=True)

  for side, cin, cout in [(16, 64, 64), (8, 128, 128)]:
    x = jnp.asarray(rng.normal(size=(128, side, side, cin)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(3, 3, cin, cout)) * 0.05, jnp.float32)
    dy = jnp.ones((128, side, side, cout), jnp.float32)
    grad_x = jax.jit(lambda x, k, dy: jax.vjp(lambda x: conv3x3(x, k), x)[1](dy)[0])
    grad_k = jax.jit(lambda x, k, dy: jax.vjp(lambda k: conv3x3(x, k), k)[1](dy)[0])
    print(json.dumps({
        "op": "conv_grads", "input": [128, side, side, cin], "features": cout,
        "fwd": timed(jax.jit(conv3x3), x, k), "input_grad": timed(grad_x, x, k, dy),
        "kernel_grad": timed(grad_k, x, k, dy),
    }), flush=True)

  # (layer, input side, in, out, kernel, stride, padding) of the CIFAR model.
  shapes = [("encoder stem", 32, 3, 64, 4, 2, 1), ("encoder down 0, stride 2", 16, 64, 128, 3, 2, 1),
            ("encoder down 0, 3x3", 8, 128, 128, 3, 1, 1), ("encoder down 1, stride 2", 8, 128, 32, 3, 2, 1),
            ("decoder up 0, sub-pixel phase", 4, 32, 128, 2, 1, (1, 0)),
            ("decoder up 0, 3x3", 8, 128, 128, 3, 1, 1), ("decoder up 0, 1x1 skip", 4, 32, 128, 1, 1, 0),
            ("decoder up 1, sub-pixel phase", 8, 128, 64, 2, 1, (1, 0)),
            ("decoder up 1, 3x3", 16, 64, 64, 3, 1, 1), ("decoder up 1, 1x1 skip", 8, 128, 64, 1, 1, 0),
            ("to_image, sub-pixel phase", 16, 64, 3, 2, 1, (1, 0))]
  for name, side, cin, cout, size, stride, pad in shapes:
    pad = (pad, pad) if isinstance(pad, int) else pad
    padding, strides = (pad, pad), (stride, stride)
    x = jnp.asarray(rng.normal(size=(128, side, side, cin)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(size, size, cin, cout)) * 0.05, jnp.float32)
    xla = lambda x, k: jax.lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=DN)
    ours = lambda x, k: layers.conv2d(x, k, strides, padding)
    dy = jnp.ones(xla(x, k).shape, jnp.float32)
    grad_k = lambda f: jax.jit(lambda x, k, dy: jax.vjp(lambda k: f(x, k), k)[1](dy)[0])
    print(json.dumps({
        "op": "kernel_grad", "layer": name, "input": [128, side, side, cin], "features": cout,
        "kernel": size, "stride": stride,
        "xla_whole_batch": timed(grad_k(xla), x, k, dy), "chunked": timed(grad_k(ours), x, k, dy),
    }), flush=True)


if __name__ == "__main__":
  main()
