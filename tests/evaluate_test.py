"""Tests for leae_jax.evaluate, leae_jax.probe and the metrics they use."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from leae_jax import data
from leae_jax import evaluate
from leae_jax import evaluation
from leae_jax import metrics
from leae_jax import probe
from leae_jax import sigreg as sigreg_lib
from leae_jax import train

import helpers


def test_psnr_of_known_pairs():
  a = jnp.zeros((2, 8, 8, 3))
  b = jnp.full((2, 8, 8, 3), 0.5)
  np.testing.assert_allclose(metrics.per_image_psnr(a, b), 10 * np.log10(1 / 0.25), rtol=1e-6)  # 6.02 dB
  np.testing.assert_allclose(metrics.per_image_psnr(a, a), 100.0)  # identical: capped, finite
  x = jax.random.uniform(jax.random.key(0), (4, 64, 64, 1), minval=0.3, maxval=0.7)
  noisy = x + 0.1 * jax.random.normal(jax.random.key(1), x.shape)
  np.testing.assert_allclose(metrics.per_image_psnr(x, noisy), 20.0, atol=0.15)  # σ 0.1 → 20 dB
  hole = jnp.zeros((2, 8, 8, 1)).at[:, :4].set(1.0)
  c = b.at[:, :4].set(0.0)  # error only outside the hole
  np.testing.assert_allclose(metrics.per_image_psnr(a, c, hole), 100.0)


def test_ssim_of_known_pairs():
  x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3))
  np.testing.assert_allclose(metrics.per_image_ssim(x, x), 1.0, rtol=1e-5)
  # Two constant images: SSIM = (2·μa·μb + C1) / (μa² + μb² + C1), C1 = 0.01².
  a, b = jnp.full((1, 16, 16, 1), 0.5), jnp.full((1, 16, 16, 1), 0.25)
  want = (2 * 0.5 * 0.25 + 1e-4) / (0.25 + 0.0625 + 1e-4)
  np.testing.assert_allclose(metrics.per_image_ssim(a, b), want, rtol=1e-5)
  noisy = jnp.clip(x + 0.2 * jax.random.normal(jax.random.key(2), x.shape), 0, 1)
  assert float(metrics.per_image_ssim(x, noisy).max()) < 0.9


def test_effective_rank_of_identity_and_rank_one_covariances():
  np.testing.assert_allclose(metrics.effective_rank(jnp.ones(12)), 12.0, rtol=1e-5)
  np.testing.assert_allclose(metrics.effective_rank(jnp.array([5.0, 0, 0, 0])), 1.0, rtol=1e-6)
  iso = jax.random.normal(jax.random.key(0), (20000, 8))
  np.testing.assert_allclose(metrics.effective_rank(metrics.covariance_eigenvalues(iso)), 8.0, rtol=0.01)
  rank_one = jax.random.normal(jax.random.key(1), (1000, 1)) * jnp.arange(1.0, 9.0)
  np.testing.assert_allclose(metrics.effective_rank(metrics.covariance_eigenvalues(rank_one)), 1.0,
                             atol=1e-3)


def test_linear_probe_separable_and_random_labels():
  rng = np.random.default_rng(0)
  centres = rng.normal(size=(4, 32)) * 2
  y = rng.integers(0, 4, 3000)
  x = centres[y] + rng.normal(size=(3000, 32))
  assert probe.linear_probe(x[:2000], y[:2000], x[2000:], y[2000:], 4)["accuracy"] > 0.95
  random_y = rng.integers(0, 4, 3000)
  acc = probe.linear_probe(x[:2000], random_y[:2000], x[2000:], random_y[2000:], 4)["accuracy"]
  assert abs(acc - 0.25) < 0.06


def _short_run(tmp_path, **overrides):
  config = helpers.tiny_config(**{
      "batch_size": 16, "eval_batch_size": 200, "num_train_steps": 6, "log_every_steps": 3,
      "eval_every_steps": 6, "checkpoint_every_steps": 3, **overrides})
  train.train_and_evaluate(config, str(tmp_path))
  return str(tmp_path)


def test_evaluate_a_short_shapes_run_returns_every_field(tmp_path):
  workdir = _short_run(tmp_path)
  results = evaluate.evaluate_workdir(workdir, probe_train_examples=400)
  for field in ("mse", "psnr", "ssim", "loss", "latent_agreement", "sigreg", "num_images",
                "probe_accuracy", "latent_sigreg", "latent_effective_rank", "latent_std_min",
                "latent_std_median", "spectrum_png", "pca_png"):
    assert field in results, field
  assert results["num_images"] == 2000 and results["probe_train_examples"] == 400
  assert os.path.exists(results["pca_png"]) and os.path.exists(results["spectrum_png"])
  assert json.load(open(os.path.join(workdir, "eval_6.json")))["psnr"] == results["psnr"]

  # The latent numbers, recomputed from codes obtained independently: the
  # restored model applied in inference mode to the test split and the first
  # 400 training images, in order; statistics in float64 NumPy.
  config = evaluate.load_config(workdir)
  state = evaluate.restore_state(workdir, config, train.Trainer(config))
  model = train.Trainer(config).model
  encode = jax.jit(lambda x: model.apply({"params": state.params, "batch_stats": state.batch_stats},
                                         x, train=False, method=model.encode))

  def codes_and_labels(split, n):
    batch = next(iter(data.iterate_once("shapes", split, batch_size=n, image_size=32)))
    return np.asarray(encode(jnp.asarray(batch["image"])), np.float64), batch["label"]

  test_codes, test_labels = codes_and_labels("test", 2000)
  train_codes, train_labels = codes_and_labels("train", 400)
  flat = test_codes.reshape(2000, -1)
  eig = np.clip(np.linalg.eigvalsh(np.cov(flat, rowvar=False)), 0, None)
  p = eig[eig > 0] / eig.sum()
  assert results["latent_dim"] == flat.shape[1] == 4 * 4 * 4
  np.testing.assert_allclose(results["latent_effective_rank"], np.exp(-np.sum(p * np.log(p))), rtol=1e-3)
  std = flat.std(axis=0)
  np.testing.assert_allclose(results["latent_std_min"], std.min(), rtol=1e-4)
  np.testing.assert_allclose(results["latent_std_median"], np.median(std), rtol=1e-4)
  chunks = [test_codes[i:i + 256] for i in range(0, 2000 - 255, 256)]  # 7 full chunks
  np.testing.assert_allclose(results["latent_sigreg"], np.mean(
      [sigreg_lib.sigreg(jnp.asarray(c, jnp.float32), jax.random.key(config.seed)) for c in chunks]),
                             rtol=1e-4)
  # The probe: the same fit on these codes; a few borderline test images may
  # flip between the two float paths, not more.
  num_classes = data.dataset_info("shapes").num_classes
  want = probe.linear_probe(train_codes, train_labels, test_codes, test_labels, num_classes)
  assert abs(results["probe_accuracy"] - want["accuracy"]) <= 0.005, (results, want)
  assert abs(results["probe_train_accuracy"] - want["train_accuracy"]) <= 0.005


def test_masked_run_reports_hole_psnr_and_comparison_grid(tmp_path):
  quick = {"num_train_steps": 2, "eval_every_steps": 0, "checkpoint_every_steps": 2}
  a = _short_run(tmp_path / "a", **quick)
  b = _short_run(tmp_path / "b", **{"objective.name": "masked_mse", **quick})
  results = evaluate.evaluate_workdir(b, probe=False, max_batches=1)
  assert np.isfinite(results["hole_psnr"]) and np.isfinite(results["masked_psnr"])
  out = evaluate.compare_workdirs([a, b], str(tmp_path / "compare.png"), num_images=4)
  assert os.path.getsize(out) > 1000
  # Chosen test images show what the first evaluation batch shows for them (same holes).
  config = evaluate.load_config(b)
  config.eval_batch_size = config.num_grid_images = 4
  trainer = train.Trainer(config)
  state = evaluate.restore_state(b, config, trainer)
  first = trainer.evaluate(state, max_batches=1).images
  chosen = evaluate._shown_at(trainer, state, [0, 1, 2, 3])  # pylint: disable=protected-access
  assert set(chosen) == set(first) == {"images", "reconstruction", "masked_input",
                                       "masked_reconstruction"}
  for key in first:
    np.testing.assert_allclose(chosen[key], first[key], atol=1e-6)
  later = evaluate._shown_at(trainer, state, [7, 3, 11])  # pylint: disable=protected-access
  np.testing.assert_allclose(later["images"][1], first["images"][3])
  assert later["images"].shape[0] == 3


def test_pca_picture_puts_codes_beside_inputs():
  images = np.random.default_rng(0).uniform(size=(3, 16, 16, 1)).astype(np.float32)
  codes = np.random.default_rng(1).normal(size=(3, 2, 2, 5)).astype(np.float32)
  grid = evaluate.pca_picture(images, codes, codes)
  assert grid.shape == (2 * 17 + 1, 3 * 17 + 1, 3)
  assert 0.0 <= grid.min() and grid.max() <= 1.0


def test_latent_health_flags_collapse():
  rng = np.random.default_rng(0)
  healthy, _ = evaluation.latent_health(rng.normal(size=(512, 16)).astype(np.float32))
  collapsed, _ = evaluation.latent_health((rng.normal(size=(512, 1)) * np.ones(16)).astype(np.float32))
  assert healthy["latent_effective_rank"] > 14 and collapsed["latent_effective_rank"] < 1.1
  assert collapsed["latent_sigreg"] > 10 * healthy["latent_sigreg"]


def test_missing_workdir_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="config.json not found"):
    evaluate.evaluate_workdir(str(tmp_path))
