"""Tests for leae_jax.objectives."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from leae_jax import models
from leae_jax import objectives
from leae_jax import views

import helpers

SIZE = 16


@pytest.fixture(scope="module")
def setup():
  model = models.Autoencoder(hidden=8, latent_channels=4, image_size=SIZE, image_channels=3)
  variables = models.init_variables(model, jax.random.key(0))
  images = jax.random.uniform(jax.random.key(1), (8, SIZE, SIZE, 3))
  return model, variables["params"], variables["batch_stats"], images


def _config(**kw):
  return helpers.objective_config(**kw)


def _crop_kwargs():
  return dict(views=[(views.get_view("crop_resize", crop_ratio=(0.3, 0.7)), 1.0)],
              sigreg=objectives.SigregSpec(weight=0.03, num_slices=16))


def test_step_frozen_and_live_judges_differ_only_in_the_encoder_gradient(setup):
  model, params, stats, x = setup
  key = jax.random.key(2)
  grads = {}
  for judge in ("step_frozen", "live"):
    obj = objectives.create_objective(_config(name="self_teaching", views="crop_resize",
                                              judge=judge, sigreg_slices=16), model)
    (loss, _), grads[judge] = jax.jit(jax.value_and_grad(obj, has_aux=True))(params, stats, x, key)
    grads[judge + "_loss"] = loss
  # Same value and decoder gradient up to float rounding (the two programs differ).
  np.testing.assert_allclose(grads["step_frozen_loss"], grads["live_loss"], rtol=1e-6)
  helpers.assert_trees_close(grads["step_frozen"]["decoder"], grads["live"]["decoder"], rtol=1e-5)
  diff = jax.tree_util.tree_map(lambda a, b: jnp.abs(a - b).max(),
                                grads["step_frozen"]["encoder"], grads["live"]["encoder"])
  assert max(jax.tree_util.tree_leaves(diff)) > 1e-4


def test_step_frozen_judge_parameters_receive_exactly_zero_gradient(setup):
  # Split the encoder's two roles: f(θ_code, θ_judge). The step-frozen encoder
  # gradient must be exactly ∂f/∂θ_code (nothing through the judge's params),
  # and the live one ∂f/∂θ_code + ∂f/∂θ_judge.
  model, params, stats, x = setup
  key = jax.random.key(3)
  kw = _crop_kwargs()

  def f(p, judge_params):
    return objectives.self_teaching_loss(model, p, stats, x, key, judge_params=judge_params, **kw)[0]

  d_code, d_judge = jax.jit(jax.grad(f, argnums=(0, 1)))(params, params["encoder"])
  frozen = jax.jit(jax.grad(lambda p: f(p, objectives.judge_params_for("step_frozen", p))))(params)
  live = jax.jit(jax.grad(lambda p: f(p, objectives.judge_params_for("live", p))))(params)
  helpers.assert_trees_close(frozen["encoder"], d_code["encoder"], rtol=1e-5, atol_frac=1e-6)
  chex.assert_trees_all_close(live["encoder"],
                              jax.tree_util.tree_map(jnp.add, d_code["encoder"], d_judge),
                              atol=1e-6)
  # The judge path is a real, non-zero gradient that step-freezing removes.
  assert max(float(jnp.abs(g).max()) for g in jax.tree_util.tree_leaves(d_judge)) > 1e-4
  zero = jax.grad(lambda jp: f(params, objectives.judge_params_for("step_frozen", {"encoder": jp})))(
      params["encoder"])
  assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree_util.tree_leaves(zero))


@pytest.mark.parametrize("judge", ["step_frozen", "live_stop_target"])
def test_library_loss_value_and_gradients_match_the_hand_derivation(setup, judge):
  # Through the library's own loss (create_objective), gradients with respect to
  # the params AND the input images equal helpers.hand_self_teaching, where the
  # target J(c(x)) is detached for every judge but the published `live` one.
  # For step_frozen (and ema) a target that carried gradient would show only
  # in d/d images (the judge's params are detached anyway); for
  # live_stop_target in d/d encoder too. (The `live` and `ema` judges through
  # train_step: train_test; `live` at the loss level: fidelity_test.)
  model, params, stats, x = setup
  key = jax.random.key(4)
  obj = objectives.create_objective(_config(
      name="self_teaching", views="crop_resize", judge=judge, sigreg_on="code", sigreg_weight=0.1,
      sigreg_slices=16, view_args={"crop_resize": {"crop_ratio": 0.5}}), model)
  hand = functools.partial(helpers.hand_self_teaching, model, judge=judge, crop_ratio=0.5,
                           sigreg_weight=0.1, num_slices=16, sigreg_on="code")
  got_loss, got = jax.jit(jax.value_and_grad(lambda p, im: obj(p, stats, im, key)[0],
                                             argnums=(0, 1)))(params, x)
  want_loss, want = jax.jit(jax.value_and_grad(lambda p, im: hand(p, stats, im, key),
                                               argnums=(0, 1)))(params, x)
  np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5)
  helpers.assert_trees_close(got, want, rtol=2e-3, atol_frac=1e-4, name=judge)
  # (Not vacuous: tests/mutants.py removes the target's stop_gradient, and gives
  # the step-frozen judge's params gradient; this test fails on each.)


def test_ema_judge_moves_toward_the_encoder_at_the_configured_rate(setup):
  _, params, _, _ = setup
  ema = jax.tree_util.tree_map(lambda p: p + 1.0, params["encoder"])
  new = objectives.update_ema(ema, params["encoder"], decay=0.9)
  gap_before = jax.tree_util.tree_map(jnp.subtract, ema, params["encoder"])
  gap_after = jax.tree_util.tree_map(jnp.subtract, new, params["encoder"])
  chex.assert_trees_all_close(gap_after, jax.tree_util.tree_map(lambda g: 0.9 * g, gap_before),
                              atol=1e-6)
  np.testing.assert_allclose(jax.tree_util.tree_leaves(gap_after)[0], 0.9, rtol=1e-5)


def test_ema_objective_judges_with_the_ema_params_and_gives_them_no_gradient(setup):
  model, params, stats, x = setup
  obj = objectives.create_objective(_config(name="self_teaching", views="crop_resize", judge="ema",
                                            ema_decay=0.99, sigreg_slices=16), model)
  assert obj.uses_ema and obj.ema_decay == 0.99
  key = jax.random.key(5)
  ema = objectives.init_ema(params)
  same, _ = obj(params, stats, x, key, ema)
  frozen = objectives.create_objective(_config(name="self_teaching", views="crop_resize",
                                               sigreg_slices=16), model)
  np.testing.assert_allclose(same, frozen(params, stats, x, key)[0], rtol=1e-6)
  shifted = jax.tree_util.tree_map(lambda p: p * 1.5, ema)
  assert abs(float(obj(params, stats, x, key, shifted)[0]) - float(same)) > 1e-4
  g = jax.grad(lambda e: obj(params, stats, x, key, e)[0])(ema)
  assert all(float(jnp.abs(l).max()) == 0.0 for l in jax.tree_util.tree_leaves(g))
  with pytest.raises(ValueError, match="needs the EMA judge params"):
    obj(params, stats, x, key)


@pytest.mark.parametrize("name,masked_updates_norm", [
    ("self_teaching", True), ("masked_self_teaching", True), ("masked_self_teaching", False)])
def test_running_statistics_move_only_from_the_encoded_inputs(setup, name, masked_updates_norm):
  # Views and reconstructions never move the statistics. The published masked
  # objective moves them twice per step: towards the clean batch, then the masked one.
  model, params, stats, x = setup
  key = jax.random.key(6)
  obj = objectives.create_objective(_config(name=name, views="crop_resize,pixel_mask",
                                            plain_weight=1.0, sigreg_slices=16,
                                            masked_updates_norm=masked_updates_norm), model)
  _, aux = obj(params, stats, x, key)
  _, want = models.encode(model, params["encoder"], stats, x, train=True)
  if name == "masked_self_teaching" and masked_updates_norm:
    hole = views.get_view("inpaint", mask_ratio=0.35)
    masked = hole.transform(hole.sample(jax.random.split(key, 3)[0], x.shape), x)
    _, want = models.encode(model, params["encoder"], want, masked, train=True)
  chex.assert_trees_all_close(aux["batch_stats"], want, rtol=1e-6)
  # ...and the batches did move them (so the check is not vacuous).
  moved = jax.tree_util.tree_map(lambda a, b: float(jnp.abs(a - b).max()), aux["batch_stats"], stats)
  assert max(jax.tree_util.tree_leaves(moved)) > 1e-4


def test_judge_normalises_with_the_judged_batch_statistics(setup):
  model, params, stats, x = setup
  judge = objectives.make_judge(model, params["encoder"], stats)
  for batch in (x, 0.3 * x + 0.6, jnp.flip(x, axis=1)):
    z = judge(batch)
    np.testing.assert_allclose(z.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)


def test_masked_objective_with_no_mask_has_zero_consistency(setup):
  model, params, stats, x = setup
  obj = objectives.create_objective(_config(name="masked_self_teaching", mask_ratio=0.0,
                                            sigreg_slices=16), model)
  _, aux = obj(params, stats, x, jax.random.key(7))
  parts = aux["parts"]
  assert float(parts["consistency"]) < 1e-10
  np.testing.assert_allclose(parts["clean_crop"], parts["masked_crop"], rtol=1e-6)
  np.testing.assert_allclose(parts["latent_agreement"], 2 * parts["clean_crop"] / 3, rtol=1e-5)


def test_masked_objective_parts_and_gradients(setup):
  model, params, stats, x = setup
  obj = objectives.create_objective(_config(name="masked_self_teaching", sigreg_slices=16,
                                            view_args={"crop_resize": {"crop_ratio": 0.5}}), model)
  (loss, aux), g = jax.jit(jax.value_and_grad(obj, has_aux=True))(params, stats, x, jax.random.key(8))
  parts = aux["parts"]
  np.testing.assert_allclose(
      parts["latent_agreement"],
      (parts["consistency"] + parts["clean_crop"] + parts["masked_crop"]) / 3, rtol=1e-6)
  np.testing.assert_allclose(loss, parts["latent_agreement"] + 0.03 * parts["sigreg"], rtol=1e-6)
  assert float(parts["consistency"]) > 0
  chex.assert_tree_all_finite(g)
  hole = aux["images"]["hole"]
  np.testing.assert_allclose(hole.mean(), round(np.sqrt(0.35 * SIZE**2)) ** 2 / SIZE**2, rtol=1e-6)


def test_masked_objective_value_and_gradients_match_the_hand_derivation(setup):
  # Through the library's masked loss: both branches of the consistency term
  # carry gradient, the crop target is detached, one crop box for all three
  # crops, separate SIGReg directions (helpers.hand_masked_self_teaching).
  model, params, stats, x = setup
  key = jax.random.key(11)
  obj = objectives.create_objective(_config(
      name="masked_self_teaching", mask_ratio=0.35, sigreg_weight=0.1, sigreg_slices=16,
      view_args={"crop_resize": {"crop_ratio": 0.5}}), model)
  hand = functools.partial(helpers.hand_masked_self_teaching, model, judge="step_frozen",
                           crop_ratio=0.5, mask_ratio=0.35, sigreg_weight=0.1, num_slices=16)
  got_loss, got = jax.jit(jax.value_and_grad(lambda p, im: obj(p, stats, im, key)[0],
                                             argnums=(0, 1)))(params, x)
  want_loss, want = jax.jit(jax.value_and_grad(lambda p, im: hand(p, stats, im, key),
                                               argnums=(0, 1)))(params, x)
  np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5)
  helpers.assert_trees_close(got, want, rtol=2e-3, atol_frac=1e-4)


def test_baselines_compute_pixel_errors(setup):
  model, params, stats, x = setup
  # sigreg_weight 0, as the `mse` variant sets: a plain autoencoder.
  mse = objectives.create_objective(_config(name="mse", sigreg_weight=0.0), model)
  loss, aux = mse(params, stats, x, jax.random.key(9))
  np.testing.assert_allclose(loss, jnp.mean((aux["images"]["reconstruction"] - x) ** 2), rtol=1e-6)
  assert mse.judge is None and float(aux["parts"]["sigreg"]) > 0
  masked = objectives.create_objective(_config(name="masked_mse", mask_ratio=0.35,
                                               sigreg_weight=0.0), model)
  loss, aux = masked(params, stats, x, jax.random.key(9))
  hole = aux["images"]["hole"]
  err = (aux["images"]["reconstruction"] - x) ** 2
  np.testing.assert_allclose(aux["parts"]["hole_mse"], (err * hole).sum() / (hole.sum() * 3), rtol=1e-5)
  # The masked baseline's encoder saw the masked batch, so its statistics come from it.
  _, masked_stats = models.encode(model, params["encoder"], stats, aux["images"]["masked_input"])
  chex.assert_trees_all_close(aux["batch_stats"], masked_stats, rtol=1e-6)


def test_view_weights_and_plain_term_combine_as_documented(setup):
  model, params, stats, x = setup
  obj = objectives.create_objective(_config(
      name="self_teaching", views="blur,sobel", view_weights="3,1", plain_weight=0.5,
      sigreg_weight=0.1, sigreg_slices=16), model)
  loss, aux = obj(params, stats, x, jax.random.key(10))
  p = aux["parts"]
  # The published detail-stack form: (weighted view mean + p·plain) / (1 + p).
  want = (0.75 * p["agree/blur"] + 0.25 * p["agree/sobel"] + 0.5 * p["agree/plain"]) / 1.5
  np.testing.assert_allclose(p["latent_agreement"], want, rtol=1e-6)
  np.testing.assert_allclose(loss, want + 0.1 * p["sigreg"], rtol=1e-6)


def test_bad_objective_configs_give_clear_errors(setup):
  model = setup[0]
  with pytest.raises(ValueError, match="Unknown objective.name 'vae'; valid: self_teaching, masked_self_teaching, mse"):
    objectives.create_objective(_config(name="vae"), model)
  with pytest.raises(ValueError, match="Unknown objective.judge 'frozen'; valid: step_frozen, live, live_stop_target, ema"):
    objectives.create_objective(_config(name="self_teaching", views="crop_resize", judge="frozen"), model)
  with pytest.raises(ValueError, match="objective.views: Unknown view 'crop'; valid views: .*crop_resize"):
    objectives.create_objective(_config(name="self_teaching", views="crop"), model)
  with pytest.raises(ValueError, match="view_weights has 1 entries"):
    objectives.create_objective(_config(name="self_teaching", views="blur,sobel", view_weights="1"), model)
  with pytest.raises(ValueError, match="needs objective.views or a positive objective.plain_weight"):
    objectives.create_objective(_config(name="self_teaching", views=""), model)


def _blobs(key, n, size):
  """Smooth coloured discs on shaded backgrounds: structure a decoder can learn fast."""
  k1, k2, k3, k4 = jax.random.split(key, 4)
  yy, xx = jnp.meshgrid(jnp.linspace(0, 1, size), jnp.linspace(0, 1, size), indexing="ij")
  centre = jax.random.uniform(k1, (n, 1, 1, 2), minval=0.25, maxval=0.75)
  radius = jax.random.uniform(k2, (n, 1, 1), minval=0.15, maxval=0.3)
  colour = jax.random.uniform(k3, (n, 1, 1, 3))
  background = jax.random.uniform(k4, (n, 1, 1, 3)) * 0.5
  dist = jnp.sqrt((yy - centre[..., 0]) ** 2 + (xx - centre[..., 1]) ** 2)
  disc = jax.nn.sigmoid((radius - dist) * 40)[..., None]
  return background * (0.5 + 0.5 * yy[None, ..., None]) * (1 - disc) + colour * disc


def test_eighty_steps_of_self_teaching_reconstruct_without_any_pixel_loss():
  n = 32
  x = _blobs(jax.random.key(0), n, SIZE)
  model = models.Autoencoder(hidden=16, latent_channels=8, image_size=SIZE, image_channels=3)
  variables = models.init_variables(model, jax.random.key(1))
  obj = objectives.create_objective(_config(
      name="self_teaching", views="crop_resize", judge="step_frozen", sigreg_weight=0.03,
      sigreg_slices=64, view_args={"crop_resize": {"crop_ratio": (0.25, 0.75)}}), model)
  tx = optax.adam(1e-3)
  params, stats = variables["params"], variables["batch_stats"]
  opt_state = tx.init(params)

  @jax.jit
  def step(params, stats, opt_state, key):
    (_, aux), g = jax.value_and_grad(obj, has_aux=True)(params, stats, x, key)
    updates, opt_state = tx.update(g, opt_state, params)
    return optax.apply_updates(params, updates), aux["batch_stats"], opt_state, aux["parts"]

  @jax.jit
  def pixel_errors(params, stats):
    recon = models.decode(model, params["decoder"],
                              models.encode(model, params["encoder"], stats, x)[0])
    return jnp.mean((recon[:, None] - x[None]) ** 2, axis=(2, 3, 4))  # [recon i, input j]

  before = pixel_errors(params, stats)
  agreement = []
  for i in range(80):
    params, stats, opt_state, parts = step(params, stats, opt_state, jax.random.fold_in(jax.random.key(2), i))
    agreement.append(float(parts["latent_agreement"]))
  after = pixel_errors(params, stats)
  mse_before, mse_after = float(jnp.trace(before)) / n, float(jnp.trace(after)) / n
  print(f"pixel MSE {mse_before:.4f} -> {mse_after:.4f}; "
        f"latent agreement {np.mean(agreement[:5]):.4f} -> {np.mean(agreement[-5:]):.4f}")
  assert np.mean(agreement[-5:]) < 0.5 * np.mean(agreement[:5])
  assert mse_after < 0.6 * mse_before
  # Reconstructions are specific to their input, not a dataset average: each is
  # much closer to its own input than to the others, and usually nearest to it.
  mse_to_others = (float(after.sum()) - mse_after * n) / (n * (n - 1))
  assert mse_after < 0.75 * mse_to_others
  assert float(jnp.mean(jnp.argmin(after, axis=1) == jnp.arange(n))) > 0.2
