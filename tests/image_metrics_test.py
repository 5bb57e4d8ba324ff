"""Colour, blur and Fréchet metrics of `leae_jax.metrics`, against hand-computed cases."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from leae_jax import metrics


def _random_images(seed=0, shape=(2, 16, 16, 3)):
  return np.random.default_rng(seed).uniform(0.0, 1.0, shape).astype(np.float32)


def _greyscale(images):
  """Each pixel's luma copied into R, G and B (so its own luma is unchanged)."""
  y = images @ np.array([0.299, 0.587, 0.114], np.float32)
  return np.repeat(y[..., None], 3, axis=-1)


# ---------------------------------------------------------------------------
# YCbCr, chroma and luma/chroma PSNR.


def test_rgb_to_ycbcr_matches_pil():
  from PIL import Image

  pixels = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
  pixels[0, :4] = [[255, 0, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0]]
  expected = np.asarray(Image.fromarray(pixels).convert("YCbCr"), np.float64)
  got = np.asarray(metrics.rgb_to_ycbcr(pixels[None].astype(np.float32) / 255.0))[0] * 255.0
  # PIL works in fixed point and rounds to uint8: within one level.
  np.testing.assert_array_less(np.abs(got - expected), 1.0 + 1e-3)


def test_rgb_to_ycbcr_by_hand():
  red = np.zeros((1, 1, 1, 3), np.float32)
  red[..., 0] = 1.0
  y, cb, cr = np.asarray(metrics.rgb_to_ycbcr(red))[0, 0, 0]
  assert y == pytest.approx(0.299, abs=1e-6)
  assert cb == pytest.approx(0.5 - 0.299 * 0.5 / 0.886, abs=1e-6)
  assert cr == pytest.approx(1.0, abs=1e-6)
  grey = np.full((1, 2, 2, 3), 0.3, np.float32)
  np.testing.assert_allclose(np.asarray(metrics.rgb_to_ycbcr(grey)),
                             np.broadcast_to([0.3, 0.5, 0.5], (1, 2, 2, 3)), atol=1e-6)


def test_grey_image_has_zero_chroma_and_zero_saturation():
  colour = _random_images(2)
  grey = _greyscale(colour)
  chex.assert_trees_all_close(metrics.per_image_chroma(grey), jnp.zeros(2), atol=1e-6)
  saturation = float(np.sum(metrics.per_image_chroma(grey)) / np.sum(metrics.per_image_chroma(colour)))
  assert saturation == pytest.approx(0.0, abs=1e-5)
  assert float(np.min(metrics.per_image_chroma(colour))) > 0.05


def test_pure_red_chroma_by_hand():
  red = np.zeros((3, 4, 5, 3), np.float32)
  red[..., 0] = 1.0
  # Y = 0.299, Cb − ½ = −0.299·0.5/0.886, Cr − ½ = (1 − 0.299)·0.5/0.701 = 0.5.
  expected = math.hypot(0.299 * 0.5 / 0.886, 0.5)  # ≈ 0.52770
  np.testing.assert_allclose(np.asarray(metrics.per_image_chroma(red)), [expected] * 3, rtol=1e-5)
  # Half-saturated (pink): half the chroma, as chroma is linear in (RGB − grey).
  pink = 0.5 + 0.5 * red
  np.testing.assert_allclose(np.asarray(metrics.per_image_chroma(pink)), [expected / 2] * 3, rtol=1e-5)


def test_chroma_and_luma_psnr():
  images = _random_images(3)
  chex.assert_trees_all_close(metrics.per_image_chroma_psnr(images, images), jnp.full(2, 100.0), atol=1e-4)
  chex.assert_trees_all_close(metrics.per_image_luma_psnr(images, images), jnp.full(2, 100.0), atol=1e-4)

  grey = _greyscale(images)
  luma = np.asarray(metrics.per_image_luma_psnr(grey, images))
  chroma = np.asarray(metrics.per_image_chroma_psnr(grey, images))
  # Same luma: only float rounding (MSE ~1e-14, clamped), so near the cap.
  assert np.all(luma > 60.0)
  assert np.all(chroma < luma - 30.0)
  # By hand: the grey copy has Cb = Cr = 0.5, so the chroma MSE is the mean
  # squared (Cb − 0.5, Cr − 0.5) of the input.
  ycc = np.asarray(metrics.rgb_to_ycbcr(images), np.float64)
  mse = np.mean(np.square(ycc[..., 1:] - 0.5), axis=(1, 2, 3))
  np.testing.assert_allclose(chroma, -10.0 * np.log10(mse), rtol=1e-5)


def test_luma_psnr_sees_brightness_chroma_psnr_does_not():
  images = 0.25 + 0.5 * _random_images(4)
  brighter = images + 0.1  # Y up by 0.1 (weights sum to 1), Cb, Cr unchanged
  np.testing.assert_allclose(np.asarray(metrics.per_image_luma_psnr(brighter, images)), [20.0, 20.0],
                             rtol=1e-4)
  assert np.all(np.asarray(metrics.per_image_chroma_psnr(brighter, images)) > 60.0)


# ---------------------------------------------------------------------------
# Spatial-frequency band power.


def _box_blur_circular(images, k=3):
  out = np.zeros_like(images)
  for dy in range(-(k // 2), k // 2 + 1):
    for dx in range(-(k // 2), k // 2 + 1):
      out += np.roll(images, (dy, dx), axis=(1, 2))
  return out / k**2


def test_blur_lowers_high_band_power():
  noise = _random_images(5, (2, 32, 32, 3))
  blurred = _box_blur_circular(noise)
  ratio = np.sum(np.asarray(metrics.image_band_power(blurred)), axis=0) / np.sum(
      np.asarray(metrics.image_band_power(noise)), axis=0)
  assert ratio[-1] < 0.5
  assert ratio[0] > 0.6
  assert np.all(np.diff(ratio) < 0)  # a 3×3 box is a low-pass: monotone here


def test_band_powers_sum_to_centred_energy():
  images = _random_images(6, (3, 12, 10, 3))  # non-square, even and odd-half sizes
  power = np.asarray(metrics.image_band_power(images))
  chex.assert_shape(power, (3, len(metrics.IMAGE_BANDS)))
  centred = images - images.mean(axis=(1, 2), keepdims=True)
  np.testing.assert_allclose(power.sum(axis=1), np.sum(np.square(centred), axis=(1, 2, 3)), rtol=1e-4)
  odd = _random_images(7, (1, 9, 7, 2))
  np.testing.assert_allclose(np.asarray(metrics.image_band_power(odd)).sum(axis=1),
                             np.sum(np.square(odd - odd.mean(axis=(1, 2), keepdims=True)), axis=(1, 2, 3)),
                             rtol=1e-4)


def test_constant_image_has_zero_power_in_every_band():
  constant = np.full((2, 8, 8, 3), 0.7, np.float32)
  chex.assert_trees_all_close(metrics.image_band_power(constant), jnp.zeros((2, 4)), atol=1e-8)


@pytest.mark.parametrize(
    "ky, kx, band",
    [
        (0, 2, 0),  # 2/16 = 0.125 cycles/px: r = 0.25, upper edge of band 0
        (0, 3, 1),  # r = 0.375
        (4, 0, 1),  # r = 0.5, upper edge of band 1
        (3, 4, 2),  # r = 5/16/0.5 = 0.625 (off-axis)
        (0, 8, 3),  # Nyquist along x: r = 1
        (6, 6, 3),  # corner: r = 0.75·√2 ≈ 1.06 > 1 goes to the last band
        (8, 8, 3),  # far corner: r = √2
    ])
def test_single_frequency_lands_in_its_band(ky, kx, band):
  size = 16
  yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
  wave = np.cos(2 * np.pi * (ky * yy + kx * xx) / size)
  images = np.stack([wave, 0.5 * wave], axis=-1)[None].astype(np.float32)
  power = np.asarray(metrics.image_band_power(images))[0]
  total = np.sum(np.square(images))  # mean of a whole-period cosine is 0
  expected = np.zeros(4)
  expected[band] = total
  np.testing.assert_allclose(power, expected, atol=1e-3 * total)


# ---------------------------------------------------------------------------
# Shapes and jit.


def test_shapes_and_jit():
  recon, images = _random_images(8, (3, 8, 6, 3)), _random_images(9, (3, 8, 6, 3))
  eager = {
      "ycbcr": metrics.rgb_to_ycbcr(images),
      "chroma_psnr": metrics.per_image_chroma_psnr(recon, images),
      "luma_psnr": metrics.per_image_luma_psnr(recon, images),
      "chroma": metrics.per_image_chroma(images),
      "bands": metrics.image_band_power(images),
  }
  chex.assert_shape(eager["ycbcr"], (3, 8, 6, 3))
  chex.assert_shape([eager["chroma_psnr"], eager["luma_psnr"], eager["chroma"]], (3,))
  chex.assert_shape(eager["bands"], (3, 4))

  @jax.jit
  def all_metrics(recon, images):
    return {
        "ycbcr": metrics.rgb_to_ycbcr(images),
        "chroma_psnr": metrics.per_image_chroma_psnr(recon, images),
        "luma_psnr": metrics.per_image_luma_psnr(recon, images),
        "chroma": metrics.per_image_chroma(images),
        "bands": metrics.image_band_power(images),
    }

  chex.assert_trees_all_close(all_metrics(recon, images), eager, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="3 channels"):
    metrics.rgb_to_ycbcr(images[..., :1])


# ---------------------------------------------------------------------------
# Fréchet distance.


def _with_exact_moments(rng, n, mean, cov):
  """`(n, F)` samples whose sample mean is `mean` and ddof=1 covariance is `cov`, exactly."""
  z = rng.standard_normal((n, len(mean)))
  z -= z.mean(axis=0)
  whiten = np.linalg.cholesky(np.cov(z, rowvar=False))
  z = np.linalg.solve(whiten, z.T).T  # sample covariance now the identity
  return z @ np.linalg.cholesky(cov).T + mean


def test_frechet_identical_sets_is_zero():
  feats = np.random.default_rng(10).standard_normal((50, 8)) * 3.0 + 1.0
  scale = np.trace(np.cov(feats, rowvar=False))
  assert metrics.frechet_distance(feats, feats) < 1e-6 * scale
  assert isinstance(metrics.frechet_distance(feats, feats), float)


def test_frechet_diagonal_closed_form():
  rng = np.random.default_rng(11)
  mu_a, mu_b = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
  var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
  a = _with_exact_moments(rng, 40, mu_a, np.diag(var_a))
  b = _with_exact_moments(rng, 60, mu_b, np.diag(var_b))
  # |Δμ|² = 1 + 0 + 4; Σ(√a − √b)² = 4 + 1 + 0.
  expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
  assert expected == pytest.approx(10.0)
  assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
  assert metrics.frechet_distance(b, a) == pytest.approx(expected, rel=1e-9)


def test_frechet_matches_scipy_sqrtm():
  import scipy.linalg

  rng = np.random.default_rng(12)
  a = rng.standard_normal((64, 6)) @ rng.standard_normal((6, 6))
  b = rng.standard_normal((48, 6)) @ rng.standard_normal((6, 6)) + 0.5
  cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  covmean = np.real(scipy.linalg.sqrtm(cov_a @ cov_b))
  expected = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(cov_a + cov_b - 2.0 * covmean)
  assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=1e-7)
  # Rank-deficient covariance (fewer examples than features) still works.
  c = rng.standard_normal((4, 6))
  cov_c = np.cov(c, rowvar=False)
  covmean = np.real(scipy.linalg.sqrtm(cov_a @ cov_c))
  expected = np.sum((a.mean(0) - c.mean(0)) ** 2) + np.trace(cov_a + cov_c - 2.0 * covmean)
  assert metrics.frechet_distance(a, c) == pytest.approx(expected, rel=1e-6)
  with pytest.raises(ValueError):
    metrics.frechet_distance(a, b[:, :5])


def test_the_image_modality_summarises_ratios_of_means():
  from leae_jax import modalities

  image = modalities.get("image")
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.uniform(size=(4, 16, 16, 3)), jnp.float32)
  grey = jnp.repeat(jnp.mean(images, axis=-1, keepdims=True), 3, axis=-1)

  def summary(recon, inputs):
    per_image = image.metrics(recon, inputs)
    assert set(per_image) <= set(image.metric_names)
    return image.summarise({k: float(np.sum(v)) for k, v in per_image.items()})

  same = summary(images, images)
  np.testing.assert_allclose([same["saturation_ratio"]] + [same[f"spectral_power_b{i}"]
                                                           for i in range(4)], 1.0, rtol=1e-6)
  assert "chroma" not in same and "band_power_b0" not in same  # sums are consumed
  washed = summary(grey, images)
  assert washed["saturation_ratio"] < 1e-6 and washed["chroma_psnr"] < same["chroma_psnr"]
  blurred = summary((images + jnp.roll(images, 1, axis=2)) / 2, images)
  assert blurred["spectral_power_b3"] < 0.5 < blurred["spectral_power_b0"]
  # Grey images: blur is measured, colour is not.
  assert "saturation_ratio" not in summary(images[..., :1], images[..., :1])
