"""Reconstruction metrics, per example (pure jnp, jit-able).

Images: MSE, PSNR (on [0, 1] pixels) and SSIM; PSNR on luma and on chroma
alone, mean chroma (colour saturation) and power per radial spatial-frequency
band (blur), which plain PSNR/SSIM barely see. Series (normalised scale): MSE,
MAE and the error energy per frequency band (`band_energies`). Feature sets:
the Fréchet distance between fitted Gaussians (`frechet_distance`, NumPy).
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


# Full-range BT.601 (JPEG / PIL 'YCbCr') luma weights.
_KR, _KG, _KB = 0.299, 0.587, 0.114


def rgb_to_ycbcr(images: jax.Array) -> jax.Array:
  """`(N, H, W, 3)` full-range BT.601 (JPEG's) YCbCr of RGB `images` in [0, 1].

  Y = 0.299 R + 0.587 G + 0.114 B, Cb = 0.5 + (B − Y)·0.5/(1 − 0.114),
  Cr = 0.5 + (R − Y)·0.5/(1 − 0.299), all in [0, 1] units (PIL's
  `convert('YCbCr')` divided by 255, up to its rounding). Grey pixels
  (R = G = B) have Cb = Cr = 0.5.
  """
  if images.shape[-1] != 3:
    raise ValueError(f"rgb_to_ycbcr needs 3 channels, got shape {images.shape}")
  x = images.astype(jnp.float32)
  r, g, b = x[..., 0], x[..., 1], x[..., 2]
  y = _KR * r + _KG * g + _KB * b
  cb = 0.5 + (b - y) * (0.5 / (1.0 - _KB))
  cr = 0.5 + (r - y) * (0.5 / (1.0 - _KR))
  return jnp.stack([y, cb, cr], axis=-1)


def per_image_luma_psnr(recon: jax.Array, images: jax.Array) -> jax.Array:
  """`(N,)` PSNR in dB of the luma (Y) channel only."""
  return psnr_from_mse(per_image_mse(rgb_to_ycbcr(recon)[..., :1], rgb_to_ycbcr(images)[..., :1]))


def per_image_chroma_psnr(recon: jax.Array, images: jax.Array) -> jax.Array:
  """`(N,)` PSNR in dB over the two chroma channels (Cb, Cr) only.

  Blind to brightness errors, so it isolates colour errors (a greyscale
  reconstruction of a colourful image scores low here yet high in luma PSNR).
  """
  return psnr_from_mse(per_image_mse(rgb_to_ycbcr(recon)[..., 1:], rgb_to_ycbcr(images)[..., 1:]))


def per_image_chroma(images: jax.Array) -> jax.Array:
  """`(N,)` mean over pixels of the chroma magnitude `sqrt((Cb − 0.5)² + (Cr − 0.5)²)`.

  0 for a grey image. The saturation ratio (Σ chroma(recon) / Σ chroma(input)
  over a test set, computed by the caller) below 1 means washed-out colour.
  """
  ycbcr = rgb_to_ycbcr(images)
  magnitude = jnp.sqrt(jnp.sum(jnp.square(ycbcr[..., 1:] - 0.5), axis=-1))
  return jnp.mean(magnitude, axis=(1, 2))


#: Radial spatial-frequency bands of `image_band_power`, as fractions r of the
#: Nyquist radius (r = 1 is 0.5 cycles/pixel along an axis). A bin belongs to
#: the band with `low < r <= high`; the first band also holds r = 0 (DC, which
#: is zero there since the image mean is removed), and the last band also holds
#: every bin beyond its `high` when `high >= 1`: the corners of the 2-D
#: spectrum, 1 < r <= √2. So with these bands every bin is counted exactly once.
IMAGE_BANDS = ((0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))

# Slack on the band edges so that a bin on an edge (e.g. r = 0.5 from a 3-4-5
# triangle of frequencies) is not moved across it by float rounding.
_EDGE_TOL = 1e-9


def _image_band_masks(height: int, width: int, bands) -> np.ndarray:
  """`(H·W, len(bands))` 0/1 membership of each 2-D FFT bin in each band."""
  fy = np.fft.fftfreq(height)[:, None]
  fx = np.fft.fftfreq(width)[None, :]
  r = (np.sqrt(fy**2 + fx**2) / 0.5).reshape(-1)
  masks = []
  for i, (lo, hi) in enumerate(bands):
    above = r > lo + _EDGE_TOL if lo > 0 else r >= 0
    last_open = i == len(bands) - 1 and hi >= 1.0
    below = np.ones_like(above) if last_open else r <= hi + _EDGE_TOL
    masks.append(above & below)
  return np.stack(masks, axis=1).astype(np.float32)


def image_band_power(images: jax.Array, bands=IMAGE_BANDS) -> jax.Array:
  """`(N, len(bands))` spatial power of each image `(N, H, W, C)` per radial band.

  The per-channel mean of each image is subtracted first: the DC term says
  nothing about blur, so band 0 holds no DC power. Then `|fft2|² / (H·W)` over
  (H, W), summed over channels, so that the bins add up to `Σ (x − mean)²`
  (Parseval), summed over the bins of each band (see `IMAGE_BANDS` for which
  bins go where; radial frequency r = sqrt(fy² + fx²) / 0.5 with fy, fx in
  cycles/pixel from `np.fft.fftfreq`). Recon/input ratios below 1 in the high
  bands mean blur.
  """
  n, height, width, _ = images.shape
  x = images.astype(jnp.float32)
  x = x - jnp.mean(x, axis=(1, 2), keepdims=True)
  spectrum = jnp.fft.fft2(x, axes=(1, 2))
  power = jnp.sum(jnp.square(jnp.abs(spectrum)), axis=-1) / (height * width)  # (N, H, W)
  return power.reshape(n, height * width) @ jnp.asarray(_image_band_masks(height, width, bands))


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


def _sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
  """Symmetric square root of a symmetric PSD matrix (eigenvalues rounded below 0 clipped)."""
  eigenvalues, vectors = np.linalg.eigh(matrix)
  return (vectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ vectors.T


def frechet_distance(features_a, features_b) -> float:
  """Fréchet distance between Gaussians fitted to features `(N, F)` and `(M, F)`.

  `|μa − μb|² + tr Σa + tr Σb − 2 tr((Σa^½ Σb Σa^½)^½)` in float64 NumPy
  (covariances with ddof=1), symmetric square roots through `np.linalg.eigh`
  so that no scipy is needed. Clipped at 0 (rounding can give −1e-15 for
  identical sets).
  """
  a = np.asarray(features_a, np.float64)
  b = np.asarray(features_b, np.float64)
  if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
    raise ValueError(f"need (N, F) and (M, F) features, got {a.shape} and {b.shape}")
  if a.shape[0] < 2 or b.shape[0] < 2:
    raise ValueError(f"need at least 2 examples per set, got {a.shape[0]} and {b.shape[0]}")
  cov_a = np.atleast_2d(np.cov(a, rowvar=False, ddof=1))
  cov_b = np.atleast_2d(np.cov(b, rowvar=False, ddof=1))
  sqrt_a = _sqrtm_psd(cov_a)
  middle = sqrt_a @ cov_b @ sqrt_a
  middle = 0.5 * (middle + middle.T)  # exact symmetry for eigh
  trace_sqrt = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(middle), 0.0, None)))
  diff = a.mean(axis=0) - b.mean(axis=0)
  distance = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt
  return float(max(distance, 0.0))
