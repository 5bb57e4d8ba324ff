"""Reconstruction metrics, per example (pure jnp, jit-able).

Images: MSE, PSNR (on [0, 1] pixels) and SSIM. Series (normalised scale):
MSE, MAE and the error energy per frequency band (`band_energies`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# PSNR of a perfect reconstruction would be infinite; clamp the MSE so the
# number stays finite and averageable (caps PSNR at 100 dB).
_MIN_MSE = 1e-10


def per_image_mse(a: jax.Array, b: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """`(N,)` mean squared error per example (image or series), optionally only where
  `mask` ((N, H, W, 1) or (N, L, 1)) is 1."""
  err = jnp.square(a.astype(jnp.float32) - b.astype(jnp.float32))
  axes = tuple(range(1, err.ndim))
  if mask is None:
    return jnp.mean(err, axis=axes)
  mask = jnp.broadcast_to(mask.astype(jnp.float32), err.shape)
  return jnp.sum(err * mask, axis=axes) / jnp.maximum(jnp.sum(mask, axis=axes), 1.0)


def per_example_mae(a: jax.Array, b: jax.Array) -> jax.Array:
  """`(N,)` mean absolute error per example."""
  err = jnp.abs(a.astype(jnp.float32) - b.astype(jnp.float32))
  return jnp.mean(err, axis=tuple(range(1, err.ndim)))


#: Frequency bands of the spectral error, as fractions of the Nyquist
#: frequency: `low < f <= high` (the first band holds the mean too). For a
#: 128-step series: periods of 16 steps and more, 8–16, 4–8 and 2–4 steps.
SPECTRAL_BANDS = ((0.0, 0.125), (0.125, 0.25), (0.25, 0.5), (0.5, 1.0))


def band_energies(series: jax.Array, bands=SPECTRAL_BANDS) -> jax.Array:
  """`(N, len(bands))` energy of each series `(N, L, C)` in each frequency band.

  The real-FFT bins along time, weighted so that the energies of all bins
  add up to `Σ_t,c x²` (Parseval: the bins between the mean and Nyquist
  stand for two of the full spectrum); summed over channels.
  """
  length = series.shape[1]
  spectrum = jnp.fft.rfft(series.astype(jnp.float32), axis=1)
  power = jnp.sum(jnp.square(jnp.abs(spectrum)), axis=-1) / length  # (N, F)
  k = np.arange(length // 2 + 1)
  weight = np.where((k == 0) | (2 * k == length), 1.0, 2.0)
  f = k / (length / 2)
  masks = np.stack([(f > lo if lo > 0 else f >= 0) & (f <= hi) for lo, hi in bands], axis=1)
  return power @ jnp.asarray(weight[:, None] * masks, jnp.float32)


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
