"""Reconstruction metrics on [0, 1] pixels, per image (pure jnp, jit-able)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

# PSNR of a perfect reconstruction would be infinite; clamp the MSE so the
# number stays finite and averageable (caps PSNR at 100 dB).
_MIN_MSE = 1e-10


def per_image_mse(a: jax.Array, b: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """`(N,)` mean squared error per image, optionally only where `mask` (N,H,W,1) is 1."""
  err = jnp.square(a.astype(jnp.float32) - b.astype(jnp.float32))
  if mask is None:
    return jnp.mean(err, axis=(1, 2, 3))
  mask = jnp.broadcast_to(mask.astype(jnp.float32), err.shape)
  return jnp.sum(err * mask, axis=(1, 2, 3)) / jnp.maximum(jnp.sum(mask, axis=(1, 2, 3)), 1.0)


def psnr_from_mse(mse: jax.Array) -> jax.Array:
  """PSNR in dB for [0, 1] pixels."""
  return -10.0 * jnp.log10(jnp.maximum(mse, _MIN_MSE))


def per_image_psnr(a: jax.Array, b: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """`(N,)` PSNR in dB per image (inside `mask` when given)."""
  return psnr_from_mse(per_image_mse(a, b, mask))


def per_image_ssim(a: jax.Array, b: jax.Array) -> jax.Array:
  """`(N,)` SSIM per image (Gaussian window 11, σ 1.5; dm-pix's implementation)."""
  import dm_pix

  return dm_pix.ssim(a.astype(jnp.float32), b.astype(jnp.float32), max_val=1.0,
                     filter_size=11, filter_sigma=1.5)


def covariance_eigenvalues(codes: jax.Array) -> jax.Array:
  """Eigenvalues (descending) of the covariance of `(N, D)` codes."""
  x = codes.astype(jnp.float32) - jnp.mean(codes, axis=0, keepdims=True)
  cov = x.T @ x / max(x.shape[0] - 1, 1)
  return jnp.clip(jnp.linalg.eigvalsh(cov)[::-1], 0.0, None)


def effective_rank(eigenvalues: jax.Array) -> jax.Array:
  """`exp(entropy(p))` with `p` the normalised eigenvalues: D for isotropic, 1 for rank one."""
  p = eigenvalues / jnp.maximum(jnp.sum(eigenvalues), 1e-30)
  entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
  return jnp.exp(entropy)
