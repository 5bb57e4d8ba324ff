"""Time series (issue 16): the 1-D model, every sequence view, the sequence datasets, metrics,
the objectives on (B, L, C) batches, and one tiny training run through the real program."""

import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from leae_jax import base_config
from leae_jax import data
from leae_jax import metrics
from leae_jax import models
from leae_jax import objectives
from leae_jax import outputs
from leae_jax.models import series as series_models
from leae_jax import sigreg as sigreg_lib
from leae_jax import train
from leae_jax import views

import helpers

SEQ = "sequence"
ONE_SHARD = dict(shard_index=0, shard_count=1)
RANDOM_VIEWS = ("crop_resize", "time_mask", "patch_mask", "channel_mask", "random_band",
                "amplitude_offset", "inpaint")


def _series(n=4, length=32, channels=3, seed=0):
  return jax.random.normal(jax.random.key(seed), (n, length, channels))


def _model(length=32, channels=3, hidden=8, latent_channels=4):
  cfg = helpers.model_config(hidden=hidden, latent_channels=latent_channels)
  return series_models.create_model(cfg, length=length, channels=channels)


# --- the model ----------------------------------------------------------------


def test_model_shapes_code_and_parameter_counts():
  model = _model()
  variables = models.init_variables(model, jax.random.key(0))
  x = _series()
  codes, stats = models.encode(model, variables["params"]["encoder"], variables["batch_stats"], x)
  chex.assert_shape(codes, (4, 4, 4))  # length/8 × latent_channels
  assert model.latent_shape == (4, 4) and model.input_shape == (32, 3)
  # The code is normalised per channel over batch and positions (training mode).
  np.testing.assert_allclose(jnp.mean(codes, axis=(0, 1)), 0.0, atol=1e-5)
  np.testing.assert_allclose(jnp.std(codes, axis=(0, 1)), 1.0, atol=0.02)  # ε = 1e-5
  assert not jax.tree_util.tree_all(jax.tree_util.tree_map(
      lambda a, b: bool(jnp.all(a == b)), stats, variables["batch_stats"]))
  recon = models.decode(model, variables["params"]["decoder"], codes)
  chex.assert_shape(recon, x.shape)
  assert set(variables["params"]) == {"encoder", "decoder"}
  # The configs' models (docs/timeseries.md): 44 963 and 47 590 parameters.
  for name, params in (("timeseries", 44_963), ("timeseries_basic_motions", 47_590)):
    config = train.resolve(helpers.load_config(name))
    m = series_models.create_model(config.model, length=config.image_size,
                                   channels=config.image_channels)
    shapes = jax.eval_shape(lambda m=m: models.init_variables(m, jax.random.key(0)))
    assert models.count_params(shapes["params"]) == params, name


def test_model_rejects_what_it_cannot_build():
  with pytest.raises(ValueError, match=r"image_size=36 is not valid for series: the length must "
                                       r"be a positive multiple of 8"):
    _model(length=36)
  with pytest.raises(ValueError, match="model.arch='first' is not valid for series"):
    series_models.create_model(helpers.model_config(arch="first"), length=32, channels=1)
  with pytest.raises(ValueError, match="model.latent='pooled' is not valid for series"):
    series_models.create_model(helpers.model_config(latent="pooled"), length=32, channels=1)
  model = _model()
  variables = models.init_variables(model, jax.random.key(0))
  with pytest.raises(ValueError, match=r"expects series of shape \(N, 32, 3\)"):
    models.encode(model, variables["params"]["encoder"], variables["batch_stats"], _series(length=24))


def test_sigreg_takes_series_codes_as_positions():
  z = jax.random.normal(jax.random.key(1), (64, 5, 8))
  key = jax.random.key(2)
  np.testing.assert_allclose(sigreg_lib.sigreg(z, key), sigreg_lib.sigreg(z[:, :, None, :], key),
                             rtol=1e-6)


# --- the views ----------------------------------------------------------------


def test_sequence_views_have_their_own_namespace():
  assert set(views.names(SEQ)) == {
      "amplitude_offset", "band_pass", "channel_mask", "crop_resize", "high_pass", "identity",
      "inpaint", "low_pass", "patch_mask", "random_band", "time_mask"}
  assert "time_mask" not in views.names() and "sobel" not in views.names(SEQ)
  with pytest.raises(ValueError, match="Unknown sequence view 'sobel'; valid sequence views: "
                                       "amplitude_offset, band_pass"):
    views.get_view("sobel", modality=SEQ)
  with pytest.raises(ValueError, match="Unknown modality 'audio'"):
    views.get_view("identity", modality="audio")


@pytest.mark.parametrize("name", RANDOM_VIEWS)
def test_random_views_apply_one_draw_to_both_sides(name):
  # Every sequence view is linear in the series, or a mask / window / filter of
  # it, so the same draw on x and 0.5·x gives outputs in the same ratio —
  # except the offset, which is checked on the difference.
  x = _series(seed=1)
  view = views.get_view(name, modality=SEQ)
  a, b = view.pair(jax.random.key(4), x, 0.5 * x)
  if name == "amplitude_offset":
    c, _ = view.pair(jax.random.key(4), jnp.zeros_like(x), x)
    np.testing.assert_allclose(b - c, 0.5 * (a - c), atol=1e-5)
  else:
    np.testing.assert_allclose(b, 0.5 * a, atol=1e-5)
  assert not np.allclose(view(jax.random.key(5), x), a)  # a different key draws differently


@pytest.mark.parametrize("name", sorted(views.names(SEQ)))
def test_every_sequence_view_keeps_the_shape_and_passes_gradients(name):
  x = _series(n=3, length=32, channels=2)
  view = views.get_view(name, modality=SEQ)
  out = jax.jit(view)(jax.random.key(6), x)
  chex.assert_shape(out, x.shape)
  chex.assert_tree_all_finite(out)
  g = jax.grad(lambda x: jnp.sum(view(jax.random.key(6), x) ** 2))(x)
  chex.assert_tree_all_finite(g)
  # Deterministic views give the same output on both sides of a pair too.
  a, b = view.pair(jax.random.key(7), x, x)
  np.testing.assert_allclose(a, b)


def test_what_each_view_does():
  x = _series(n=6, length=64, channels=3, seed=2)
  get = lambda name, **kw: views.get_view(name, modality=SEQ, **kw)
  # Crop-resize of the whole series is the series; of a ramp, a steeper ramp.
  np.testing.assert_allclose(get("crop_resize", crop_ratio=1.0)(jax.random.key(0), x), x, atol=1e-5)
  ramp = jnp.broadcast_to(jnp.arange(64.0)[None, :, None], (1, 64, 1))
  zoomed = get("crop_resize", crop_ratio=0.5)(jax.random.key(1), ramp)
  np.testing.assert_allclose(jnp.diff(zoomed[0, :, 0]), 31 / 63, rtol=1e-4)
  # Masks zero exactly what they say, every channel of a time step together.
  kept = get("time_mask", ratio=0.25)(jax.random.key(2), jnp.ones_like(x))
  assert (kept.sum(axis=1) == 48).all() and (kept == kept[..., :1]).all()
  patches = get("patch_mask", ratio=0.5, patch_size=8)(jax.random.key(3), jnp.ones_like(x))
  assert (patches.sum(axis=1) == 32).all()
  assert (patches[:, ::8] == patches[:, 7::8]).all()  # whole patches
  with pytest.raises(ValueError, match="not divisible into patches of 5 steps"):
    get("patch_mask", patch_size=5).sample(jax.random.key(0), x.shape)
  channels = get("channel_mask", ratio=1.0)(jax.random.key(4), jnp.ones_like(x))
  assert (channels.sum(axis=(1, 2)) == 64).all()  # at least one channel always kept
  hole = get("inpaint", mask_ratio=0.25).sample(jax.random.key(5), x.shape)["hole"]
  assert (hole.sum(axis=(1, 2)) == 16).all()
  # The filters tile the spectrum, and the low-pass keeps a slow sine whole.
  tiles = get("low_pass", cutoff=0.2)(None, x) + get("band_pass", band=(0.2, 0.6))(None, x) \
      + get("high_pass", cutoff=0.6)(None, x)
  np.testing.assert_allclose(tiles, x, atol=1e-5)
  slow = jnp.sin(2 * jnp.pi * 3 * jnp.arange(64) / 64)[None, :, None]
  np.testing.assert_allclose(get("low_pass", cutoff=0.125)(None, slow), slow, atol=1e-5)
  np.testing.assert_allclose(get("high_pass", cutoff=0.125)(None, slow), 0.0, atol=1e-5)
  band = get("random_band", width=0.25).sample(jax.random.key(6), x.shape)
  assert band.shape == (6, 33) and len({tuple(np.asarray(b)) for b in band}) > 1
  gains = get("amplitude_offset").sample(jax.random.key(7), x.shape)["gain"]
  assert float(gains.min()) >= 0.5 and float(gains.max()) <= 2.0
  with pytest.raises(ValueError, match=r"crop_ratio must lie in \(0, 1\]"):
    get("crop_resize", crop_ratio=0.0)


# --- the datasets ---------------------------------------------------------------


def test_synthetic_series_are_deterministic_labelled_and_normalised():
  info = data.dataset_info("synthetic_series")
  assert (info.modality, info.image_size, info.channels, info.num_classes) == (SEQ, 128, 3, 4)
  source = data.get_source("synthetic_series", "train", num_records=64)
  again = data.get_source("synthetic_series", "train", num_records=64)
  np.testing.assert_array_equal(source[5]["image"], again[5]["image"])
  assert not np.array_equal(source[5]["image"], data.get_source("synthetic_series", "test")[5]["image"])
  assert {int(source[i]["label"]) for i in range(64)} == {0, 1, 2, 3}
  assert data.get_source("synthetic_series", "train", image_size=64)[0]["image"].shape == (64, 3)
  loader = data.create_train_loader("synthetic_series", batch_size=256, seed=0, stop_step=1,
                                    **ONE_SHARD)
  batch = next(iter(loader))
  chex.assert_shape(batch["image"], (256, 128, 3))
  assert batch["image"].dtype == np.float32 and batch["label"].dtype == np.int32
  # Normalised per channel with the training split's statistics.
  np.testing.assert_allclose(batch["image"].mean(axis=(0, 1)), 0.0, atol=0.1)
  np.testing.assert_allclose(batch["image"].std(axis=(0, 1)), 1.0, atol=0.1)
  # ... the same statistics for the test split.
  evals = next(iter(data.create_eval_loader("synthetic_series", "test", batch_size=8,
                                            **ONE_SHARD)))
  test_raw = data.get_source("synthetic_series", "test")[0]["image"]
  stats = data.series.channel_stats("synthetic_series", 128)
  np.testing.assert_allclose(evals["image"][0], (test_raw - np.asarray(stats.mean, np.float32))
                             / np.asarray(stats.std, np.float32), rtol=1e-5, atol=1e-6)


def _write_ts(path, series, labels, classes=("a", "b")):
  lines = ["# a tiny problem", "@problemName Tiny", "@univariate false", "@equalLength true",
           f"@classLabel true {' '.join(classes)}", "@data"]
  for s, y in zip(series, labels):
    lines.append(":".join(",".join(f"{v:.4f}" for v in s[:, c]) for c in range(s.shape[1]))
                 + f":{classes[y]}")
  path.write_text("\n".join(lines) + "\n")


def test_ts_files_fit_length_and_basic_motions(tmp_path):
  rng = np.random.default_rng(0)
  series = rng.normal(size=(5, 100, 6)).astype(np.float32)
  _write_ts(tmp_path / "BasicMotions_TRAIN.ts", series, [0, 1, 0, 1, 1])
  _write_ts(tmp_path / "BasicMotions_TEST.ts", series[:3], [1, 0, 1])
  x, y, classes = data.series.read_ts(str(tmp_path / "BasicMotions_TRAIN.ts"))
  np.testing.assert_allclose(x, series, atol=1e-4)
  assert y.tolist() == [0, 1, 0, 1, 1] and classes == ("a", "b")
  # 100 steps → 96: the centre, exact; → 64: resampled linearly, ends kept.
  crop = data.series.FitLength(96).map({"image": series[0]})["image"]
  np.testing.assert_array_equal(crop, series[0, 2:98])
  resampled = data.series.FitLength(64).map({"image": series[0]})["image"]
  np.testing.assert_allclose(resampled[[0, -1]], series[0, [0, -1]], atol=1e-6)
  batch = next(iter(data.create_eval_loader("uea_basic_motions", "test", batch_size=3,
                                            data_dir=str(tmp_path), **ONE_SHARD)))
  chex.assert_shape(batch["image"], (3, 96, 6))
  assert batch["label"].tolist() == [1, 0, 1]
  truncated = tmp_path / "bad"
  truncated.mkdir()
  (truncated / "BasicMotions_TRAIN.ts").write_text("@classLabel true a b\n@data\n1,2,x:a\n")
  with pytest.raises(data.CorruptDataError, match="truncated or corrupt"):
    data.series.read_ts(str(truncated / "BasicMotions_TRAIN.ts"))


@pytest.mark.skipif(data.series.sktime_data_dir() is None, reason="sktime not installed")
def test_basic_motions_from_the_files_sktime_ships():
  info = data.dataset_info("uea_basic_motions")
  assert (info.image_size, info.channels, info.num_classes, info.num_train) == (96, 6, 4, 40)
  train_source = data.get_source("uea_basic_motions", "train")
  assert len(train_source) == 40 and train_source[0]["image"].shape == (100, 6)
  batch = next(iter(data.create_eval_loader("uea_basic_motions", "train", batch_size=40, **ONE_SHARD)))
  np.testing.assert_allclose(batch["image"].mean(axis=(0, 1)), 0.0, atol=1e-4)
  np.testing.assert_allclose(batch["image"].std(axis=(0, 1)), 1.0, atol=1e-3)
  assert sorted(np.bincount(batch["label"]).tolist()) == [10, 10, 10, 10]


def test_spectral_metrics_add_up_to_the_squared_error():
  a, b = _series(length=64, seed=3), _series(length=64, seed=4)
  energies = metrics.band_energies(a - b)
  np.testing.assert_allclose(energies.sum(axis=1) / (64 * 3), metrics.per_image_mse(a, b), rtol=1e-5)
  slow = jnp.sin(2 * jnp.pi * 2 * jnp.arange(64) / 64)[None, :, None]
  assert float(metrics.band_energies(slow)[0, 0]) > 0.999 * float(jnp.sum(slow ** 2))


# --- objectives, configs, the program -----------------------------------------


@pytest.mark.parametrize("name,views_", [("self_teaching", "crop_resize,random_band,time_mask"),
                                         ("mse", ""), ("masked_self_teaching", "")])
def test_objectives_run_unchanged_on_series(name, views_):
  model = _model()
  variables = models.init_variables(model, jax.random.key(0))
  config = helpers.objective_config(name=name, views=views_, sigreg_slices=8)
  config.view_args = base_config.get_base_config(SEQ).objective.view_args
  objective = objectives.create_objective(config, model)
  x = _series()
  (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(
      variables["params"], variables["batch_stats"], x, jax.random.key(1))
  assert np.isfinite(float(loss))
  chex.assert_tree_all_finite(grads)
  if name == "self_teaching":
    assert {"agree/crop_resize", "agree/random_band", "agree/time_mask"} <= set(aux["parts"])


def test_configs_and_their_errors():
  config = helpers.load_config("timeseries")
  assert config.modality == SEQ and "time_mask" in config.objective.view_args
  assert "sobel" not in config.objective.view_args
  assert helpers.load_config("timeseries", "mse").objective.name == "mse"
  assert helpers.load_config("timeseries", "filter_stack").objective.plain_weight == 1.0
  # An image view in a sequence config, a length the model cannot halve three
  # times, data of the other kind: one line each, before anything compiles.
  bad = helpers.load_config("timeseries", "pixel_mask")
  with pytest.raises(ValueError, match="objective.views: Unknown sequence view 'pixel_mask'"):
    train.Trainer(train.resolve(bad))
  short = helpers.load_config("timeseries")
  short.image_size = 100
  with pytest.raises(ValueError, match="image_size=100 is not valid for series"):
    train.Trainer(train.resolve(short))
  mixed = helpers.load_config("timeseries")
  mixed.dataset = "shapes"
  with pytest.raises(ValueError, match="dataset='shapes' is not valid for modality='sequence': it "
                                       "holds image data; the sequence datasets are"):
    train.resolve(mixed)
  # A saved sequence config comes back as one (its own views' arguments).
  saved = base_config.from_saved({"modality": SEQ, "dataset": "synthetic_series"})
  assert "random_band" in saved.objective.view_args


def test_a_tiny_run_trains_evaluates_and_draws(tmp_path):
  config = helpers.load_config("timeseries", "crop_resize")
  config.objective.views = "crop_resize,random_band"
  config.update_from_flattened_dict({
      "model.hidden": 8, "image_size": 32, "objective.sigreg_slices": 8, "batch_size": 8,
      "eval_batch_size": 16, "eval_batches": 1, "num_train_steps": 4, "log_every_steps": 2,
      "eval_every_steps": 4, "checkpoint_every_steps": 100, "progress_bar": False})
  result = train.train_and_evaluate(config, str(tmp_path))
  assert result["step"] == 4
  for key in ("mse", "mae", "loss", "spectral_error_b0", "spectral_power_b3"):
    assert np.isfinite(result[key]), key
  assert "psnr" not in result and "band_energy_b0" not in result
  picture = tmp_path / "eval_grid_00000004.png"
  assert picture.exists() and os.path.getsize(picture) > 1000
  image = outputs.series_grid([np.zeros((2, 32, 3)), np.ones((2, 32, 3))])
  assert image.ndim == 3 and image.shape[-1] == 3 and 0 <= image.min() <= image.max() <= 1
  # `evaluate --compare` draws image grids: a series run is refused, naming its own pictures.
  from leae_jax import evaluate
  with pytest.raises(ValueError, match="--compare draws image grids, but .* trained on sequence"):
    evaluate.compare_workdirs([str(tmp_path)], str(tmp_path / "compare.png"))


def test_experiment_plans_resumes_and_reports_from_stored_results(tmp_path):
  from leae_jax.experiments import timeseries as experiment

  jobs = experiment.plan(["mse", "channel_mask"], ["mse", experiment.BEST], [0, 1, 2])
  assert jobs[0] == experiment.Job(experiment.DATASETS["synthetic"], experiment.variant("mse"), 0)
  # The comparison's runs on both datasets and seeds, seed 0's synthetic mse only once.
  assert len(jobs) == len(set(jobs)) == 2 + 2 * 3 * 2 - 1 - (experiment.BEST == "channel_mask")
  out = str(tmp_path / "results")
  rng = np.random.default_rng(0)
  for job in jobs:
    path = experiment.result_path(out, job.dataset.name, job.variant.name, job.seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    row = dict(dataset=job.dataset.name, variant=job.variant.name, seed=job.seed,
               mse=0.3 + 0.1 * (job.variant.name != "mse") + 0.01 * rng.normal(),
               mae=0.4, probe_accuracy=0.5, total_wall_s=60.0,
               **{f"spectral_error_b{i}": 0.2 * i for i in range(4)},
               **{f"spectral_power_b{i}": 1.0 - 0.2 * i for i in range(4)})
    with open(path, "w") as f:
      import json
      json.dump(row, f)
  assert experiment.run(out, jobs, workdir_root=str(tmp_path / "w"), log=lambda _: None,
                        train_fn=lambda *a: pytest.fail("a stored result was recomputed")) == 0
  report = open(experiment.write_report(out, command="test")).read()
  assert "## 1. Choosing the views" in report and "UEA BasicMotions" in report
  assert "| self-teaching's error exceeds the MSE baseline's | `mse` | consistent" in report
  assert os.path.exists(os.path.join(out, "spectral_error.png"))
