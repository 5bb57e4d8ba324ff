"""Tests for leae_jax.train (in-process, tiny models)."""

import functools
import json
import os

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax._src import array as array_lib  # the host-read hook spied on below

from leae_jax import base_config
from leae_jax import data
from leae_jax import models
from leae_jax import objectives
from leae_jax import outputs
from leae_jax import train

import helpers


def _tiny_shapes_config(**overrides):
  return train.resolve(helpers.tiny_config(**{
      "objective.views": "pixel_mask", "eval_batches": 2, "num_train_steps": 4, "log_every_steps": 2,
      "eval_every_steps": 4, **overrides}))


def test_learning_rate_schedule_warms_up_then_decays():
  config = _tiny_shapes_config(num_train_steps=100, warmup_steps=10, lr_schedule="warmup_cosine")
  _, schedule = train.create_optimizer(config)
  assert float(schedule(0)) == 0.0
  np.testing.assert_allclose(schedule(10), 1e-3, rtol=1e-6)
  np.testing.assert_allclose(schedule(100), 1e-5, rtol=1e-4)
  assert float(schedule(5)) < float(schedule(10)) and float(schedule(50)) < float(schedule(10))


def test_train_step_updates_params_stats_and_step(monkeypatch):
  # The step is traced once, at start-up (the shape check), and reused by the
  # first step; an evaluating Trainer never traces it.
  traced = []
  step_fn = train.train_step
  monkeypatch.setattr(train, "train_step", lambda *a, **k: traced.append(1) or step_fn(*a, **k))
  config = _tiny_shapes_config()
  train.Trainer(config, trains=False)
  assert traced == []
  trainer = train.Trainer(config)
  assert traced == [1]
  state = trainer.init_state()
  before = jax.device_get(state)
  images = trainer.global_batch(np.random.default_rng(0).uniform(size=(8, 32, 32, 1)).astype(np.float32))
  state, m = trainer.train_step(state, images)
  state, m = trainer.train_step(state, images)
  assert traced == [1]
  assert int(state.step) == 2
  assert {"loss", "latent_agreement", "sigreg", "agree/pixel_mask", "grad_norm", "learning_rate"} <= set(m)
  chex.assert_tree_all_finite(m)
  moved = jax.tree_util.tree_map(lambda a, b: float(jnp.abs(a - b).max()), state.params, before.params)
  assert min(jax.tree_util.tree_leaves(moved)) > 0  # every parameter was trained
  assert state.ema_params is None
  stats_moved = jax.tree_util.tree_map(lambda a, b: float(jnp.abs(a - b).max()),
                                       state.batch_stats, before.batch_stats)
  assert max(jax.tree_util.tree_leaves(stats_moved)) > 0


def test_ema_judge_follows_the_encoder_over_several_steps_leaf_by_leaf():
  # Three AdamW steps at a constant learning rate (so every step moves the
  # encoder), decay 0.8: the EMA must be 0.8·previous EMA + 0.2·the encoder
  # *after* the step, for every leaf, replayed here from the observed params.
  config = _tiny_shapes_config(**{"objective.judge": "ema", "objective.ema_decay": 0.8})
  trainer = train.Trainer(config)
  state = trainer.init_state()
  chex.assert_trees_all_equal(state.ema_params, state.params["encoder"])
  expected = jax.device_get(state.ema_params)
  initial = jax.device_get(state.params["encoder"])
  rng = np.random.default_rng(0)
  for _ in range(3):
    before = jax.device_get(state.params["encoder"])
    images = trainer.global_batch(rng.uniform(size=(8, 32, 32, 1)).astype(np.float32))
    state, _ = trainer.train_step(state, images)
    encoder = jax.device_get(state.params["encoder"])
    # The encoder really moved at this step (learning rate > 0 from step 0).
    moved = jax.tree_util.tree_map(lambda a, b: float(np.abs(a - b).max()), encoder, before)
    assert min(jax.tree_util.tree_leaves(moved)) > 0
    expected = jax.tree_util.tree_map(lambda e, p: 0.8 * e + 0.2 * p, expected, encoder)
    helpers.assert_trees_close(jax.device_get(state.ema_params), expected, rtol=1e-6,
                               atol_frac=1e-6)
  # ...and the EMA is neither the initial encoder nor the current one.
  for ema, init, enc in zip(*map(jax.tree_util.tree_leaves, (expected, initial, encoder))):
    if np.abs(enc - init).max() > 1e-6:
      assert np.abs(ema - init).max() > 1e-7 and np.abs(ema - enc).max() > 1e-7


def _record_gradients():
  """An 'optimizer' that leaves params alone and stores the gradient as its state."""
  return optax.GradientTransformation(
      lambda params: jax.tree_util.tree_map(jnp.zeros_like, params),
      lambda grads, state, params=None: (jax.tree_util.tree_map(jnp.zeros_like, grads), grads))


@pytest.mark.parametrize("variant", ["live", "ema"])
def test_train_step_of_each_judge_variant_uses_the_published_gradient(variant):
  # The config variants as a user selects them (`configs/cifar.py:live`, `:ema`),
  # through train_step: its gradient, loss, statistics and EMA updates equal the
  # hand derivation (helpers.hand_self_teaching), not merely finite numbers.
  # (objectives_test checks the other judges at the loss level.)
  config = helpers.tiny_config(**{"objective.views": "crop_resize", "objective.sigreg_weight": 0.1})
  config.objective.view_args = ml_collections.ConfigDict({"crop_resize": {"crop_ratio": 0.5}})
  config = base_config.apply_variants(config, variant)
  model = models.create_model(config.model, image_size=16, image_channels=1)
  objective = objectives.create_objective(config.objective, model)
  variables = models.init_variables(model, jax.random.key(0))
  params, stats = variables["params"], variables["batch_stats"]
  ema = (jax.tree_util.tree_map(lambda p: 0.9 * p + 0.01, params["encoder"])
         if variant == "ema" else None)
  state = train.TrainState(step=jnp.asarray(3, jnp.int32), params=params, batch_stats=stats,
                           opt_state=jax.tree_util.tree_map(jnp.zeros_like, params),
                           ema_params=ema, rng=jax.random.key_data(jax.random.key(1)))
  images = jax.random.uniform(jax.random.key(2), (8, 16, 16, 1))
  new_state, m = jax.jit(functools.partial(
      train.train_step, objective=objective, optimizer=_record_gradients(),
      schedule=optax.constant_schedule(0.0)))(state, images)
  sigreg_on = {"live": "views"}.get(variant, "code")  # the published live runs
  hand = lambda p: helpers.hand_self_teaching(
      model, p, stats, images, train.step_key(state), judge=variant, crop_ratio=0.5,
      sigreg_weight=0.1, num_slices=16, sigreg_on=sigreg_on, ema=ema)

  @jax.jit
  def expected(p):
    loss, grads = jax.value_and_grad(hand)(p)
    # Statistics move from the clean batch only (one encoder pass in training mode).
    _, updates = model.apply({"params": p, "batch_stats": stats}, images, train=True,
                             method=model.encode, mutable=["batch_stats"])
    return loss, grads, updates["batch_stats"]

  want_loss, want_grads, want_stats = expected(params)
  np.testing.assert_allclose(m["loss"], want_loss, rtol=1e-5)
  helpers.assert_trees_close(new_state.opt_state, want_grads, rtol=2e-3, atol_frac=1e-4, name=variant)
  helpers.assert_trees_close(new_state.batch_stats, want_stats, rtol=1e-6, atol_frac=1e-7)
  assert int(new_state.step) == 4
  if variant == "ema":  # params did not move: the EMA takes 0.1 % of the encoder
    assert objective.ema_decay == 0.999
    helpers.assert_trees_close(
        new_state.ema_params,
        jax.tree_util.tree_map(lambda e, p: 0.999 * e + 0.001 * p, ema, params["encoder"]),
        rtol=1e-6, atol_frac=1e-7)


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


def test_evaluate_counts_every_test_image_once_with_padding(monkeypatch):
  # 40 test images in batches of 16: 16 + 16 + 8 (padded with 8 repeats of the
  # last image, weighted 0). The means must be over exactly those 40 images:
  # recomputed here in NumPy from one unpadded pass of model.apply in
  # inference mode (running statistics), PSNR = −10·log10(MSE) per image.
  config = _tiny_shapes_config(eval_batches=-1)
  trainer = train.Trainer(config)
  original = data.create_eval_loader
  monkeypatch.setattr(data, "create_eval_loader",
                      lambda *args, **kwargs: original(*args, **{"num_records": 40, **kwargs}))
  state = trainer.init_state()
  results, shown, _, _ = trainer.evaluate(state)
  assert results["num_images"] == 40
  assert {"mse", "psnr", "ssim", "loss", "latent_agreement", "sigreg"} <= set(results)
  (everything,) = list(data.iterate_once("shapes", "test", batch_size=40, image_size=32,
                                         num_records=40))
  x = everything["image"]
  assert everything["valid"].all()
  recon = trainer.model.apply({"params": state.params, "batch_stats": state.batch_stats},
                              jnp.asarray(x), train=False)
  mse = np.mean((np.asarray(recon, np.float64) - x.astype(np.float64)) ** 2, axis=(1, 2, 3))
  np.testing.assert_allclose(results["mse"], mse.mean(), rtol=1e-5)
  np.testing.assert_allclose(results["psnr"], np.mean(-10 * np.log10(mse)), rtol=1e-5)
  # Mean PSNR is not the PSNR of the mean MSE (Jensen): the two must not be confused.
  assert abs(np.mean(-10 * np.log10(mse)) + 10 * np.log10(mse.mean())) > 1e-4
  assert shown["images"].shape == (8, 32, 32, 1)
  np.testing.assert_array_equal(shown["images"], x[:8])


def test_train_loader_starts_at_the_batch_of_the_step():
  # Resuming at step s must read global batch s of the run's one record order:
  # compare with a loader read from the start (no start_index).
  config = _tiny_shapes_config()
  trainer = train.Trainer(config)
  reference = iter(data.create_loader("shapes", "train", batch_size=8, seed=config.seed,
                                      image_size=32, shuffle=True, num_epochs=None))
  batches = [next(reference)["image"] for _ in range(4)]
  assert not np.array_equal(batches[2], batches[3])
  for step in (0, 3):
    np.testing.assert_array_equal(next(iter(trainer.train_loader(step)))["image"], batches[step])


def test_masked_runs_report_psnr_inside_the_hole():
  config = _tiny_shapes_config(**{"objective.name": "masked_self_teaching", "model.latent": "pooled",
                                  "model.pool_channels": 8, "eval_batches": 1})
  trainer = train.Trainer(config)
  results, shown, _, _ = trainer.evaluate(trainer.init_state())
  assert {"hole_psnr", "masked_psnr", "consistency", "clean_crop", "masked_crop"} <= set(results)
  assert set(shown) == {"images", "reconstruction", "masked_input", "masked_reconstruction"}


def test_loss_curves_put_numbered_bands_in_one_panel_and_keep_train_and_eval_apart(tmp_path):
  records = [{"step": 1, "train/loss": 2.0, "train/images_per_s": 900.0, "train/epoch": 0.1},
             {"step": 2, "train/loss": 1.5, "eval/loss": 30.0, "eval/num_images": 2000,
              "eval/spectral_power_b0": 1e-5, "eval/spectral_power_b1": 2e-4, "eval/psnr": 9.5}]
  panels = outputs.curve_panels(records)
  assert panels == {
      "train/loss": {"train/loss": [(1, 2.0), (2, 1.5)]},
      "eval/loss": {"eval/loss": [(2, 30.0)]},  # evaluation losses are not training losses
      "eval/spectral_power": {"b0": [(2, 1e-5)], "b1": [(2, 2e-4)]},
      "eval/psnr": {"eval/psnr": [(2, 9.5)]},
  }
  assert outputs.plot_curves(records, str(tmp_path / "curves.png")) == str(tmp_path / "curves.png")
  assert os.path.getsize(tmp_path / "curves.png") > 1000
  assert outputs.plot_curves([{"step": 1, "note": "text"}], str(tmp_path / "none.png")) is None


def test_train_and_evaluate_writes_every_output(tmp_path, monkeypatch):
  # Also docs/training.md: metrics leave the device only every log_every_steps (and the
  # loss before a checkpoint is written). Every host read of a jax.Array —
  # explicit (jax.device_get) or implicit (float(), np.asarray, formatting) —
  # goes through ArrayImpl._value: spy on it for the arrays train_step returns.
  # (jax.transfer_guard does not see these reads on the CPU backend.)
  produced = {}  # id(array) -> (step that produced it, metric name, the array: kept alive)
  reads = []  # (steps completed at the read, step of the metric, metric name)
  done = [0]

  class SpyTrainer(train.Trainer):

    def __init__(self, *args, **kwargs):
      super().__init__(*args, **kwargs)
      step_fn = self.train_step

      def spied(state, images):
        state, metrics = step_fn(state, images)
        for name, value in metrics.items():
          produced[id(value)] = (done[0], name, value)
        done[0] += 1
        return state, metrics

      self.train_step = spied

  value = array_lib.ArrayImpl._value  # pylint: disable=protected-access

  def spy_value(self):
    if id(self) in produced:
      reads.append((done[0], *produced[id(self)][:2]))
    return value.fget(self)

  monkeypatch.setattr(train, "Trainer", SpyTrainer)
  monkeypatch.setattr(array_lib.ArrayImpl, "_value", property(spy_value))
  # 10 steps, logged every 5, evaluated at 10; milestone saves at 2, 4, 6, 8
  # (so steps 1, 3, 7 and 9 end with nothing to read: a per-step read shows).
  config = _tiny_shapes_config(num_train_steps=10, log_every_steps=5, eval_every_steps=10)
  result = train.train_and_evaluate(config, str(tmp_path))
  assert result["step"] == 10 and np.isfinite(result["psnr"])
  files = os.listdir(tmp_path)
  assert {"config.json", "metrics.jsonl", "loss_curves.png", "eval_grid_00000010.png"} <= set(files)
  assert any(f.startswith("events.out.tfevents") for f in files)
  records = outputs.read_metrics(str(tmp_path))
  train_steps = [r["step"] for r in records if "train/loss" in r]
  assert train_steps == [5, 10]
  assert all(np.isfinite(v) for r in records for k, v in r.items() if isinstance(v, float))
  assert json.load(open(tmp_path / "config.json"))["num_train_steps"] == 10

  names = {name for _, name, _ in produced.values()}
  assert done[0] == 10 and {"loss", "sigreg", "grad_norm", "agree/pixel_mask"} <= names
  # Every metric of steps 0-4 is read once the fifth step is done, of steps 5-9 after the tenth...
  assert {r for r in reads if r[2] != "loss"} == {
      (5 if s < 5 else 10, s, n) for s in range(10) for n in names if n != "loss"}
  # ...and the loss, also before the milestone saves at steps 2, 4, 6 and 8,
  # of the steps since the last log.
  assert {(d, s) for d, s, n in reads if n == "loss"} == {
      (d, s) for d in (2, 4, 5, 6, 8, 10) for s in range(5 * ((d - 1) // 5), d)}
