"""Tests for leae_jax.train (in-process, tiny models)."""

import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from leae_jax import base_config
from leae_jax import outputs
from leae_jax import train

import helpers


def _tiny_shapes_config(**overrides):
  return base_config.resolve(helpers.tiny_config(**{
      "objective.views": "pixel_mask", "eval_batches": 2, "num_train_steps": 4, "log_every_steps": 2,
      "eval_every_steps": 4, **overrides}))


def test_learning_rate_schedule_warms_up_then_decays():
  config = _tiny_shapes_config(num_train_steps=100, warmup_steps=10)
  _, schedule = train.create_optimizer(config)
  assert float(schedule(0)) == 0.0
  np.testing.assert_allclose(schedule(10), 1e-3, rtol=1e-6)
  np.testing.assert_allclose(schedule(100), 1e-5, rtol=1e-4)
  assert float(schedule(5)) < float(schedule(10)) and float(schedule(50)) < float(schedule(10))


def test_train_step_updates_params_stats_and_step():
  config = _tiny_shapes_config()
  trainer = train.Trainer(config)
  state = trainer.init_state()
  before = jax.device_get(state)
  images = trainer.global_batch(np.random.default_rng(0).uniform(size=(8, 32, 32, 1)).astype(np.float32))
  state, m = trainer.train_step(state, images)
  state, m = trainer.train_step(state, images)
  assert int(state.step) == 2
  assert {"loss", "latent_agreement", "sigreg", "agree/pixel_mask", "grad_norm", "learning_rate"} <= set(m)
  chex.assert_tree_all_finite(m)
  moved = jax.tree_util.tree_map(lambda a, b: float(jnp.abs(a - b).max()), state.params, before.params)
  assert min(jax.tree_util.tree_leaves(moved)) > 0  # every parameter was trained
  assert state.ema_params is None
  stats_moved = jax.tree_util.tree_map(lambda a, b: float(jnp.abs(a - b).max()),
                                       state.batch_stats, before.batch_stats)
  assert max(jax.tree_util.tree_leaves(stats_moved)) > 0


def test_ema_judge_is_carried_and_updated_in_the_state():
  config = _tiny_shapes_config(**{"objective.judge": "ema", "objective.ema_decay": 0.5})
  trainer = train.Trainer(config)
  state = trainer.init_state()
  chex.assert_trees_all_equal(state.ema_params, state.params["encoder"])
  images = trainer.global_batch(np.random.default_rng(0).uniform(size=(8, 32, 32, 1)).astype(np.float32))
  state, _ = trainer.train_step(state, images)
  leaf = lambda t: jax.tree_util.tree_leaves(t)[0]
  init = jax.tree_util.tree_leaves(trainer.init_state().params["encoder"])[0]
  # One update with decay 0.5: ema = 0.5·init + 0.5·new encoder.
  np.testing.assert_allclose(leaf(state.ema_params), 0.5 * init + 0.5 * leaf(state.params["encoder"]),
                             rtol=1e-5, atol=1e-7)


def test_step_keys_depend_only_on_seed_and_step():
  config = _tiny_shapes_config()
  a = train.Trainer(config).init_state()
  b = train.Trainer(config).init_state()
  np.testing.assert_array_equal(jax.random.key_data(train.step_key(a)), jax.random.key_data(train.step_key(b)))
  c = a.replace(step=a.step + 1)
  assert not np.array_equal(jax.random.key_data(train.step_key(a)), jax.random.key_data(train.step_key(c)))


def test_non_finite_loss_names_the_step_and_parts():
  buffer = [dict(loss=jnp.float32(1.0), sigreg=jnp.float32(2.0)),
            dict(loss=jnp.float32(np.nan), sigreg=jnp.float32(np.inf))]
  with pytest.raises(train.NonFiniteLossError, match=r"step 11: loss=nan, sigreg=inf"):
    train._summarise(buffer, first_step=10)
  assert train._summarise(buffer[:1], 0) == {"loss": 1.0, "sigreg": 2.0}


def test_evaluate_counts_every_test_image_once_with_padding():
  # 40 test images in batches of 16: 16 + 16 + 8 (padded), all counted once.
  config = _tiny_shapes_config(eval_batches=-1)
  trainer = train.Trainer(config)
  import leae_jax.data as data_lib
  original = data_lib.iterate_once

  def small(*args, **kwargs):
    return original(*args, num_records=40, **kwargs)

  data_lib.iterate_once = small
  try:
    results, shown, _, _ = trainer.evaluate(trainer.init_state())
  finally:
    data_lib.iterate_once = original
  assert results["num_images"] == 40
  assert {"mse", "psnr", "loss", "latent_agreement", "sigreg"} <= set(results)
  np.testing.assert_allclose(results["psnr"], -10 * np.log10(results["mse"]), rtol=0.2)
  assert shown["images"].shape == (8, 32, 32, 1)


def test_masked_runs_report_psnr_inside_the_hole():
  config = _tiny_shapes_config(**{"objective.name": "masked_self_teaching", "model.latent": "pooled",
                                  "model.pool_channels": 8, "eval_batches": 1})
  trainer = train.Trainer(config)
  results, shown, _, _ = trainer.evaluate(trainer.init_state())
  assert {"hole_psnr", "masked_psnr", "consistency", "clean_crop", "masked_crop"} <= set(results)
  assert set(shown) == {"images", "reconstruction", "masked_input", "masked_reconstruction"}


def test_train_and_evaluate_writes_every_output(tmp_path):
  config = _tiny_shapes_config()
  result = train.train_and_evaluate(config, str(tmp_path))
  assert result["step"] == 4 and np.isfinite(result["psnr"])
  files = os.listdir(tmp_path)
  assert {"config.json", "metrics.jsonl", "loss_curves.png", "eval_grid_00000004.png"} <= set(files)
  assert any(f.startswith("events.out.tfevents") for f in files)
  records = outputs.read_metrics(str(tmp_path))
  train_steps = [r["step"] for r in records if "train/loss" in r]
  assert train_steps == [2, 4]
  assert all(np.isfinite(v) for r in records for k, v in r.items() if isinstance(v, float))
  assert json.load(open(tmp_path / "config.json"))["num_train_steps"] == 4
