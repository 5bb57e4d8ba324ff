"""Pins every behaviour of the published PyTorch implementation that `docs/fidelity.md` lists.

Expected values are derived independently of the code under test: by hand, in
NumPy re-implementations written from the reference's definitions, or through
the model's own `apply` rather than the loss functions being checked.
"""

import math

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from leae_jax import data
from leae_jax import models
from leae_jax.models import layers
from leae_jax.models import resample
from leae_jax import objectives
from leae_jax import sigreg as sigreg_lib
from leae_jax import train
from leae_jax import views

import helpers



# ---------------------------------------------------------------------------
# NumPy re-implementations of the reference's filters (leae/masking.py), NCHW
# semantics written out on NHWC arrays: zero-padded 'same' convolutions,
# channel-mean grey, per-image maxima.


def _np_box(x, k):
  """Depthwise k×k mean with zero padding k//2, always divided by k²."""
  n, h, w, c = x.shape
  r = k // 2
  p = np.zeros((n, h + 2 * r, w + 2 * r, c))
  p[:, r:r + h, r:r + w] = x
  out = np.zeros((n, h, w, c))
  for dy in range(k):
    for dx in range(k):
      out += p[:, dy:dy + h, dx:dx + w]
  return out / (k * k)


def _np_conv3(g, kernel):
  """3×3 cross-correlation (PyTorch conv2d) of (N, H, W) maps, zero padding 1."""
  n, h, w = g.shape
  p = np.zeros((n, h + 2, w + 2))
  p[:, 1:-1, 1:-1] = g
  return sum(kernel[i][j] * p[:, i:i + h, j:j + w] for i in range(3) for j in range(3))


def _np_filters(x):
  x = x.astype(np.float64)
  c = x.shape[-1]
  grey = x.mean(-1)
  out = {"blur": np.clip(_np_box(x, 11), 0, 1)}
  sat = grey[..., None] + 1.8 * (x - grey[..., None])
  mean = sat.mean(axis=(1, 2), keepdims=True)
  out["saturation_contrast"] = np.clip(mean + 1.4 * (sat - mean), 0, 1)
  kx = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]
  ky = [[-1, -2, -1], [0, 0, 0], [1, 2, 1]]
  mag = np.sqrt(_np_conv3(grey, kx) ** 2 + _np_conv3(grey, ky) ** 2 + 1e-6)
  mag = mag / np.maximum(mag.max(axis=(1, 2), keepdims=True), 1e-6)
  out["sobel"] = np.clip(np.repeat(mag[..., None], c, -1), 0, 1)
  hp = np.abs(x - _np_box(x, 5))
  out["high_pass"] = np.clip(hp / np.maximum(hp.max(axis=(1, 2), keepdims=True), 1e-6), 0, 1)
  centred = grey[..., None] - _np_box(grey[..., None], 5)
  norm = centred / np.sqrt(_np_box(centred ** 2, 5) + 1e-4)
  norm = norm / np.maximum(np.abs(norm).max(axis=(1, 2), keepdims=True), 1e-6)
  out["local_contrast"] = np.clip(np.repeat(0.5 * (norm + 1.0), c, -1), 0, 1)
  return out


@pytest.mark.parametrize("channels", [1, 3])
def test_detail_filters_match_the_reference_definitions(channels):
  x = np.array(jax.random.uniform(jax.random.key(0), (2, 20, 20, channels)))
  x[0, :6, :6] = 0.0  # a flat patch, where the eps terms matter
  want = _np_filters(x)
  for name in views.DETAIL_STACK:
    got = views.get_view(name)(None, jnp.asarray(x))
    np.testing.assert_allclose(got, want[name], atol=2e-5, err_msg=name)


def test_detail_stack_agreement_is_normalised_by_one_plus_the_plain_weight():
  # (mean over the five detail views + w·plain) / (1 + w), w = 1: the judge
  # terms are computed here from the model directly, not from the loss's parts.
  model = models.Autoencoder(hidden=8, latent_channels=4, image_size=16, image_channels=3)
  variables = models.init_variables(model, jax.random.key(0))
  params, stats = variables["params"], variables["batch_stats"]
  x = jax.random.uniform(jax.random.key(1), (8, 16, 16, 3))
  config = helpers.objective_config(
      name="self_teaching", views=",".join(views.DETAIL_STACK), plain_weight=1.0,
      sigreg_weight=0.03, sigreg_slices=16)
  loss, aux = jax.jit(objectives.create_objective(config, model))(params, stats, x,
                                                                  jax.random.key(2))

  def judge(images):
    return model.apply({"params": params, "batch_stats": stats}, images, train=True,
                       method=model.encode, mutable=["batch_stats"])[0]

  @jax.jit
  def terms(x):
    recon = model.apply({"params": params}, judge(x), method=model.decode)
    mse = lambda a, b: jnp.mean((a - b) ** 2)
    detail = [mse(judge(views.get_view(n)(None, x)), judge(views.get_view(n)(None, recon)))
              for n in views.DETAIL_STACK]
    return jnp.mean(jnp.stack(detail)), mse(judge(x), judge(recon))

  detail, plain = terms(x)
  np.testing.assert_allclose(aux["parts"]["latent_agreement"], (detail + plain) / 2.0, rtol=1e-5)
  np.testing.assert_allclose(loss, (detail + plain) / 2.0 + 0.03 * aux["parts"]["sigreg"],
                             rtol=1e-5)


# ---------------------------------------------------------------------------
# Masks and crops.


def test_channel_mask_drops_channels_independently_with_the_ratio():
  # Dropped channels per RGB image ~ Binomial(3, 0.7): 2.7 % keep all three,
  # 34.3 % lose all three (the view is then black).
  x = jnp.ones((40_000, 1, 1, 3))
  out = np.asarray(views.get_view("channel_mask", ratio=0.7)(jax.random.key(0), x))
  dropped = (out == 0).sum(axis=(1, 2, 3))
  freq = np.bincount(dropped, minlength=4) / len(dropped)
  want = [math.comb(3, k) * 0.7**k * 0.3**(3 - k) for k in range(4)]
  np.testing.assert_allclose(freq, want, atol=0.01)
  # Channels are dropped independently of each other (no exact-count coupling).
  corr = np.corrcoef((out[:, 0, 0] == 0).T)
  assert np.abs(corr[np.triu_indices(3, 1)]).max() < 0.03


@pytest.mark.parametrize("size,ratio,side", [(32, 0.15, 4), (128, 0.15, 19), (32, 0.3, 9),
                                             (32, 0.05, 1), (32, 0.1, 3), (28, 0.5, 14)])
def test_crop_side_is_the_floor_of_ratio_times_side(size, ratio, side):
  params = views.get_view("crop_resize", crop_ratio=ratio).sample(jax.random.key(0), (64, size, size, 3))
  assert set(np.asarray(params["side"]).tolist()) == {side}
  corners = np.concatenate([np.asarray(params["top"]), np.asarray(params["left"])])
  assert corners.min() == 0 and corners.max() == size - side  # every position that fits


def _np_grid_sample_crop(img, top, left, side):
  """F.grid_sample(bilinear, border, align_corners=True) at top + linspace(0, side−1, H)."""
  h, w, _ = img.shape
  ys = top + np.linspace(0, side - 1, h)
  xs = left + np.linspace(0, side - 1, w)
  y0 = np.clip(np.floor(ys).astype(int), 0, h - 1)
  x0 = np.clip(np.floor(xs).astype(int), 0, w - 1)
  y1, x1 = np.clip(y0 + 1, 0, h - 1), np.clip(x0 + 1, 0, w - 1)
  fy, fx = (ys - np.floor(ys))[:, None, None], (xs - np.floor(xs))[None, :, None]
  img = img.astype(np.float64)
  return ((1 - fy) * ((1 - fx) * img[y0][:, x0] + fx * img[y0][:, x1])
          + fy * ((1 - fx) * img[y1][:, x0] + fx * img[y1][:, x1]))


def test_crop_resize_samples_like_grid_sample_with_aligned_corners():
  x = jax.random.uniform(jax.random.key(3), (6, 32, 32, 3))
  view = views.get_view("crop_resize", crop_ratio=0.3)
  params = view.sample(jax.random.key(4), x.shape)
  got = np.asarray(view.transform(params, x))
  for b in range(6):
    want = _np_grid_sample_crop(np.asarray(x[b]), int(params["top"][b]), int(params["left"][b]),
                                int(params["side"][b]))
    np.testing.assert_allclose(got[b], want, atol=1e-5)


@pytest.mark.parametrize("size,ratio,count", [(28, 0.7, 548), (32, 0.7, 716), (32, 0.3, 307)])
def test_pixel_mask_zeroes_the_floor_of_ratio_times_pixels(size, ratio, count):
  out = views.get_view("pixel_mask", ratio=ratio)(jax.random.key(0), jnp.ones((4, size, size, 3)))
  assert ((np.asarray(out) == 0).all(-1).sum(axis=(1, 2)) == count).all()


@pytest.mark.parametrize("ratio,side", [(0.35, 76), (0.5, 91)])
def test_inpaint_hole_side_is_round_sqrt_ratio_times_side(ratio, side):
  hole = views.get_view("inpaint", mask_ratio=ratio).sample(jax.random.key(0), (3, 128, 128, 3))["hole"]
  rows = np.asarray(hole).any(axis=2)[..., 0].sum(-1)
  cols = np.asarray(hole).any(axis=1)[..., 0].sum(-1)
  assert (rows == side).all() and (cols == side).all()


# ---------------------------------------------------------------------------
# Model.


def _shape_params(**kw):
  model = models.Autoencoder(**kw)
  return jax.eval_shape(lambda: models.init_variables(model, jax.random.key(0)))["params"]


POOLED = dict(hidden=128, latent_channels=128, image_size=128, image_channels=3, latent="pooled",
              pool_channels=128)


@pytest.mark.parametrize("pool,count", [
    # Shared trunk 2 731 651 (stem, two down and two up blocks, head, norm) plus:
    ("mlp", 11_153_155),  # Linear 32768→128 (4 194 432) + Linear 128→32768 (4 227 072)
    ("oneshot", 11_268_099),  # conv3x3 147 584 + conv16x16 4 194 432 + convT16x16 4 194 432
    ("progressive", 5_306_627),  # conv3x3 147 584 + 4 down blocks 1 180 672 + 4 up 1 246 720
])
def test_pooled_models_have_the_published_parameter_counts(pool, count):
  assert models.count_params(_shape_params(pool=pool, **POOLED)) == count


def _expand_and_first_up_block_input(pool):
  model = models.Autoencoder(hidden=4, latent_channels=6, image_size=32, image_channels=3,
                             latent="pooled", pool=pool, pool_channels=8)
  variables = models.init_variables(model, jax.random.key(0))
  z = 3.0 * jax.random.normal(jax.random.key(1), (5, 6))
  seen = {}

  def interceptor(next_fun, args, kwargs, context):
    if context.method_name == "__call__":
      if context.module.name == "expand":
        seen["expand"] = next_fun(*args, **kwargs)
        return seen["expand"]
      if context.module.name == "UpBlock_0":
        seen["up_input"] = args[0]
    return next_fun(*args, **kwargs)

  @jax.jit
  def run(variables, z):
    with nn.intercept_methods(interceptor):
      model.apply(variables, z, method=model.decode)
    return dict(seen)

  return variables, run(variables, z)


@pytest.mark.parametrize("pool", ["mlp", "oneshot"])
def test_pooled_expand_is_one_layer_then_silu(pool):
  # The decoder's first block receives exactly SiLU(expand(z)): nothing more.
  variables, seen = _expand_and_first_up_block_input(pool)
  expanded = seen["expand"].reshape(seen["up_input"].shape)
  assert float(jnp.min(expanded)) < -0.5  # SiLU visibly changes the negative values
  np.testing.assert_allclose(seen["up_input"], jax.nn.silu(expanded), atol=1e-6)
  assert set(variables["params"]["decoder"]) == {"expand", "UpBlock_0", "UpBlock_1", "to_image"}


def test_pytorch_initialisation_matches_kaiming_uniform_and_bias_bounds():
  # PyTorch: weights U(±1/√fan_in) (variance 1/(3 fan_in)), biases U(±1/√fan_in),
  # fan_in = in·k·k; for ConvTranspose2d fan_in = out·k·k (its weight is (in, out, k, k)).
  model = models.Autoencoder(hidden=16, latent_channels=8, image_size=32, image_channels=3)
  params = jax.device_get(models.init_variables(model, jax.random.key(0))["params"])
  leaves = jax.tree_util.tree_leaves_with_path(params)
  kernels = {jax.tree_util.keystr(p[:-1]): v for p, v in leaves if p[-1].key == "kernel"}
  biases = {jax.tree_util.keystr(p[:-1]): v for p, v in leaves if p[-1].key == "bias"}
  assert len(kernels) == 12  # stem, 2 × 2 down, 2 × 3 up, head
  for name, k in kernels.items():
    fan_in = int(np.prod(k.shape[:-1]))
    bound = 1.0 / math.sqrt(fan_in)
    assert np.abs(k).max() <= bound * (1 + 1e-6), name
    if k.size >= 2000:  # enough samples for the variance to be tight
      np.testing.assert_allclose(np.var(k), bound**2 / 3, rtol=0.1, err_msg=name)
    b = biases[name]
    assert np.abs(b).max() <= bound * (1 + 1e-6), name
    if b.size >= 64:
      assert np.abs(b).max() > 0.7 * bound, name  # spread over the bound, not zero
  norm = params["encoder"]["code_norm"]
  np.testing.assert_array_equal(norm["scale"], 1.0)
  np.testing.assert_array_equal(norm["bias"], 0.0)
  # The transposed convolution of the oneshot expand.
  pooled = models.Autoencoder(hidden=4, latent_channels=16, image_size=32, image_channels=3,
                              latent="pooled", pool="oneshot", pool_channels=32)
  expand = jax.device_get(models.init_variables(pooled, jax.random.key(1))["params"]["decoder"]["expand"])
  fan_in = 32 * 4 * 4  # out channels × kernel area
  assert expand["kernel"].shape == (4, 4, 16, 32)
  bound = 1.0 / math.sqrt(fan_in)
  assert np.abs(expand["kernel"]).max() <= bound * (1 + 1e-6)
  assert np.abs(expand["kernel"]).max() > 0.9 * bound
  assert np.abs(expand["bias"]).max() <= bound * (1 + 1e-6)
  # The flax option keeps lecun-normal kernels and zero biases.
  flax_params = models.init_variables(
      models.Autoencoder(hidden=8, latent_channels=4, image_size=16, image_channels=3,
                         initializer="flax"), jax.random.key(0))["params"]
  assert all(np.abs(b).max() == 0.0
             for p, b in jax.tree_util.tree_leaves_with_path(jax.device_get(flax_params))
             if p[-1].key == "bias")


def test_code_norm_follows_pytorch_batch_norm():
  # Normalise with the biased batch variance; move the running variance towards
  # the unbiased one (n/(n−1)), momentum 0.1; evaluation uses the running stats.
  rng = np.random.default_rng(0)
  h = rng.normal(2.0, 3.0, size=(6, 2, 2, 5)).astype(np.float32)
  norm = layers.CodeNorm()
  variables = norm.init(jax.random.key(0), jnp.asarray(h))
  out, updates = norm.apply(variables, jnp.asarray(h), train=True, mutable=["batch_stats"])
  flat = h.reshape(-1, 5).astype(np.float64)
  mean, var = flat.mean(0), flat.var(0)
  np.testing.assert_allclose(out, ((h - mean) / np.sqrt(var + 1e-5)).astype(np.float32), atol=1e-5)
  stats = updates["batch_stats"]
  np.testing.assert_allclose(stats["mean"], 0.1 * mean, rtol=1e-5)
  np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * flat.var(0, ddof=1), rtol=1e-5)
  evaluated = norm.apply({"params": variables["params"], "batch_stats": stats}, jnp.asarray(h),
                         train=False)
  np.testing.assert_allclose(evaluated, (h - stats["mean"]) / np.sqrt(stats["var"] + 1e-5), atol=1e-5)
  # Flax's biased running variance stays available as an option.
  biased = layers.CodeNorm(running_variance="biased")
  _, upd = biased.apply(variables, jnp.asarray(h), train=True, mutable=["batch_stats"])
  np.testing.assert_allclose(upd["batch_stats"]["var"], 0.9 + 0.1 * var, rtol=1e-5)


def _equations(jaxpr):
  """Every equation of a closed jaxpr, descending into sub-jaxprs (jit, custom_vjp...)."""
  for eqn in jaxpr.eqns:
    yield eqn
    for value in eqn.params.values():
      for sub in (value if isinstance(value, (list, tuple)) else [value]):
        inner = getattr(sub, "jaxpr", None)
        if inner is not None:
          yield from _equations(inner if hasattr(inner, "eqns") else sub)


def test_dense_layers_run_at_highest_precision_and_convolutions_at_default():
  # PyTorch runs Linear layers in full float32 (TF32 matmuls are off by
  # default) but lets cuDNN use TF32 for convolutions.
  model = models.Autoencoder(hidden=4, latent_channels=8, image_size=16, image_channels=3,
                             latent="pooled", pool="mlp", pool_channels=8)
  variables = models.init_variables(model, jax.random.key(0))
  closed = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(
      variables, jnp.zeros((2, 16, 16, 3)))
  eqns = list(_equations(closed.jaxpr))
  precision = lambda e: str(e.params.get("precision"))
  # The two dense layers: (2, 2·2·8) → (2, 8) and (2, 8) → (2, 32).
  dense = [e for e in eqns if e.primitive.name == "dot_general" and e.outvars[0].aval.ndim == 2
           and e.invars[0].aval.shape[0] == 2]
  convs = [e for e in eqns if e.primitive.name == "conv_general_dilated"]
  assert sorted(e.outvars[0].aval.shape for e in dense) == [(2, 8), (2, 32)]
  assert all("HIGHEST" in precision(e) for e in dense)
  assert len(convs) >= 10 and not any("HIGHEST" in precision(e) for e in convs)


def test_sigreg_projects_at_highest_precision():
  # PyTorch's `proj @ A` runs in full float32 (TF32 matmuls off by default);
  # XLA's default precision would let a GPU use TF32 for it.
  from leae_jax import sigreg
  for shape in ((8, 16), (8, 4, 4, 16)):
    closed = jax.make_jaxpr(lambda z: sigreg.sigreg(z, jax.random.key(0), num_slices=32))(
        jnp.ones(shape))
    dots = [e for e in _equations(closed.jaxpr) if e.primitive.name == "dot_general"
            and (16, 32) in [v.aval.shape for v in e.invars]]  # codes × directions
    assert dots and all("HIGHEST" in str(e.params.get("precision")) for e in dots), shape


def test_subpixel_taps_are_folded_in_float32_before_the_bfloat16_cast():
  # Kernel taps whose sums round differently in bfloat16: with a one-hot input
  # every output is one folded tap, which must be bf16(float32 sum).
  kernel = np.zeros((3, 3, 1, 1), np.float32)
  kernel[:, :, 0, 0] = [[1.0, 0.00390625, 0.00390625], [0.5, 0.5, 0.5], [1.0, 0.0078125, 0.001953125]]
  x = np.zeros((1, 3, 3, 1), np.float32)
  x[0, 1, 1, 0] = 1.0
  got = np.asarray(layers.upsample_conv3x3(jnp.asarray(x, jnp.bfloat16), jnp.asarray(kernel)),
                   np.float32)
  direct = jax.lax.conv_general_dilated(resample.upsample_nearest(jnp.asarray(x)), jnp.asarray(kernel),
                                        (1, 1), ((1, 1), (1, 1)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        precision=jax.lax.Precision.HIGHEST)
  want = np.asarray(jnp.asarray(direct, jnp.bfloat16), np.float32)
  np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------------------
# Optimiser.


def test_adamw_step_is_pytorchs_at_a_constant_rate():
  config = ml_collections.ConfigDict(dict(learning_rate=1e-3, lr_schedule="constant",
                                          weight_decay=0.01, grad_clip_norm=0.0,
                                          num_train_steps=100, warmup_steps=0))
  tx, schedule = train.create_optimizer(config)
  assert [float(schedule(s)) for s in (0, 1, 50, 99)] == [1e-3] * 4
  rng = np.random.default_rng(0)
  p = rng.normal(size=(7,)).astype(np.float64)
  params, state = jnp.asarray(p, jnp.float32), None
  state = tx.init(params)
  m = v = np.zeros_like(p)
  for t in range(1, 4):
    g = rng.normal(size=(7,))
    updates, state = tx.update(jnp.asarray(g, jnp.float32), state, params)
    params = optax.apply_updates(params, updates)
    # torch.optim.AdamW: decay first, then the bias-corrected Adam step.
    p = p * (1 - 1e-3 * 0.01)
    m = 0.9 * m + 0.1 * g
    v = 0.999 * v + 0.001 * g * g
    p = p - 1e-3 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
  np.testing.assert_allclose(params, p, rtol=1e-5)


# ---------------------------------------------------------------------------
# Objectives.


@pytest.fixture(scope="module")
def small():
  model = models.Autoencoder(hidden=8, latent_channels=4, image_size=16, image_channels=3)
  variables = models.init_variables(model, jax.random.key(0))
  x = jax.random.uniform(jax.random.key(1), (8, 16, 16, 3))
  return model, variables["params"], variables["batch_stats"], x


def _encode(model, params, stats, x):
  return model.apply({"params": params, "batch_stats": stats}, x, train=True, method=model.encode,
                     mutable=["batch_stats"])[0]


def _sigreg(z, key):
  return sigreg_lib.sigreg(z, key, num_slices=16)


def test_published_live_judge_backpropagates_through_both_sides_with_sigreg_on_the_view_codes(small):
  # Independent derivation with model.apply only: loss(θ) = MSE(E_θ(c(x)), E_θ(c(D(E(x)))))
  # + λ(SR(E_θ(c(x))) + SR(E_θ(c(x̂)))), every E_θ differentiable.
  model, params, stats, x = small
  key = jax.random.key(5)
  config = helpers.objective_config(name="self_teaching", views="crop_resize", judge="live",
                                    sigreg_on="views", sigreg_weight=0.1, sigreg_slices=16,
                                    view_args={"crop_resize": {"crop_ratio": 0.5}})
  objective = objectives.create_objective(config, model)
  k_sigreg, k_views = jax.random.split(key)
  crop = views.get_view("crop_resize", crop_ratio=0.5)
  box = crop.sample(jax.random.fold_in(k_views, 0), x.shape)

  def by_hand(p):
    recon = model.apply({"params": p}, _encode(model, p, stats, x), method=model.decode)
    a = _encode(model, p, stats, crop.transform(box, x))
    b = _encode(model, p, stats, crop.transform(box, recon))
    sig = _sigreg(a, jax.random.fold_in(k_sigreg, 0)) + _sigreg(b, jax.random.fold_in(k_sigreg, 1))
    return jnp.mean((a - b) ** 2) + 0.1 * sig

  want_loss, want_grads = jax.jit(jax.value_and_grad(by_hand))(params)
  (loss, _), grads = jax.jit(jax.value_and_grad(objective, has_aux=True))(params, stats, x, key)
  np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
  chex.assert_trees_all_close(grads, want_grads, rtol=1e-4, atol=1e-7)
  # (A detached target would drop the target's encoder gradient, which by_hand keeps.)


def test_masked_objective_draws_separate_directions_for_its_two_sigreg_terms(small):
  model, params, stats, x = small
  key = jax.random.key(6)
  config = helpers.objective_config(name="masked_self_teaching", sigreg_slices=16)
  _, aux = objectives.create_objective(config, model)(params, stats, x, key)
  hole = views.get_view("inpaint", mask_ratio=0.35)
  k_mask, _, k_sigreg = jax.random.split(key, 3)
  masked = hole.transform(hole.sample(k_mask, x.shape), x)
  z_c, z_m = _encode(model, params, stats, x), _encode(model, params, stats, masked)
  k1, k2 = jax.random.split(k_sigreg)
  np.testing.assert_allclose(aux["parts"]["sigreg"], 0.5 * (_sigreg(z_c, k1) + _sigreg(z_m, k2)),
                             rtol=1e-5)
  same_key = 0.5 * (_sigreg(z_c, k1) + _sigreg(z_m, k1))
  assert abs(float(aux["parts"]["sigreg"]) - float(same_key)) > 1e-4


def test_masked_consistency_backpropagates_into_both_branches(small):
  # The consistency term alone, differentiated: both the clean and the masked
  # reconstruction receive gradient (the published form has no detached side).
  model, params, stats, x = small
  judge = objectives.make_judge(model, jax.lax.stop_gradient(params["encoder"]), stats)
  recon_c = model.apply({"params": params}, _encode(model, params, stats, x), method=model.decode)
  recon_m = 0.5 * recon_c + 0.25
  f = lambda a, b: objectives._mse(judge(a), judge(b))  # pylint: disable=protected-access
  ga, gb = jax.grad(f, argnums=(0, 1))(recon_c, recon_m)
  assert float(jnp.abs(ga).max()) > 1e-6 and float(jnp.abs(gb).max()) > 1e-6


# ---------------------------------------------------------------------------
# Data.


def test_celeba_is_the_central_128_window_without_resizing():
  ops = data.preprocess_ops("celeb_a")
  assert [type(op).__name__ for op in ops] == ["ToImageLabel", "FitImage", "ToFloatImage"]
  # Its stored 218×178 images: the central window, nothing resized.
  assert ops[1].ops(218, 178) == [data.CenterCropWindow(128)]
  image = np.arange(218 * 178 * 3, dtype=np.int64).reshape(218, 178, 3) % 251
  out = ops[1].map({"image": image.astype(np.uint8), "label": np.int32(-1)})["image"]
  # torchvision CenterCrop(128) of a 178×218 (W×H) image: rows 45..172, columns 25..152.
  np.testing.assert_array_equal(out, image[45:173, 25:153].astype(np.uint8))


# ---------------------------------------------------------------------------
# The published-run configs.


@pytest.mark.parametrize("name,arg,expected", [
    ("cifar", None, dict(learning_rate=1e-4, batch_size=128, num_epochs=50, lr_schedule="constant",
                         weight_decay=0.01, sigreg_weight=0.03, judge="step_frozen", sigreg_on="code",
                         views="crop_resize", crop_ratio=0.3, hidden=64, latent_channels=32)),
    ("celeba", None, dict(learning_rate=1e-4, batch_size=128, num_epochs=50, lr_schedule="constant",
                          weight_decay=0.01, sigreg_weight=0.03, judge="step_frozen", crop_ratio=0.15,
                          hidden=128, latent_channels=32, image_size=128)),
    ("celeba_masked", None, dict(learning_rate=1e-3, batch_size=128, num_epochs=50,
                                  lr_schedule="constant", name="masked_self_teaching",
                                  mask_ratio=0.35, eval_mask_ratio=0.35, sigreg_weight=0.03,
                                  masked_updates_norm=True, crop_ratio=0.15, latent_channels=128,
                                  pool="mlp", latent="pooled")),
    ("celeba_masked", "latent=512,masked_mse", dict(learning_rate=1e-3, name="masked_mse", mask_ratio=0.5,
                                      eval_mask_ratio=0.35, sigreg_weight=0.0, latent_channels=512)),
    ("shapes", None, dict(learning_rate=1e-3, batch_size=64, num_epochs=10, weight_decay=0.0,
                          lr_schedule="constant", sigreg_weight=0.1, judge="live", sigreg_on="views",
                          views="pixel_mask", pixel_ratio=0.7, hidden=32, latent_channels=16,
                          arch="first", image_size=28, sigreg_flatten=True)),
    ("cifar", "detail_stack", dict(views=",".join(views.DETAIL_STACK), plain_weight=1.0)),
    ("cifar", "live", dict(judge="live", sigreg_on="views")),
    ("cifar", "ema", dict(judge="ema", ema_decay=0.999, sigreg_on="code")),
    ("cifar", "mse", dict(name="mse", sigreg_weight=0.0)),
    # The published CIFAR pixel baseline script (main_regular.py, b63a848 – c6c98bb).
    ("cifar", "mse_published", dict(name="mse", sigreg_weight=0.0, learning_rate=1e-3,
                                    weight_decay=0.0, batch_size=64, num_epochs=10,
                                    lr_schedule="constant", hidden=64, latent_channels=32)),
    ("cifar", "crop_resize,step_frozen,no_sigreg", dict(sigreg_weight=0.0, judge="step_frozen",
                                                        views="crop_resize")),
])
def test_published_configs_carry_the_published_settings(name, arg, expected):
  c = helpers.load_config(name, arg)
  flat = dict(learning_rate=c.learning_rate, batch_size=c.batch_size, num_epochs=c.num_epochs,
              lr_schedule=c.lr_schedule, weight_decay=c.weight_decay, image_size=c.image_size,
              grad_clip_norm=c.grad_clip_norm, init=c.model.init,
              **{k: c.model[k] for k in ("arch", "hidden", "latent_channels", "pool", "latent")},
              **{k: c.objective[k] for k in ("name", "views", "plain_weight", "sigreg_weight",
                                             "judge", "sigreg_on", "mask_ratio", "eval_mask_ratio",
                                             "masked_updates_norm", "ema_decay", "sigreg_flatten")})
  # A fixed ratio is stored as the range (r, r), which draws exactly r.
  low, high = c.objective.view_args.crop_resize.crop_ratio
  flat["crop_ratio"] = low if low == high else (low, high)
  flat["pixel_ratio"] = c.objective.view_args.get("pixel_mask", {}).get("ratio")
  assert flat["init"] == "pytorch" and flat["grad_clip_norm"] == 0.0
  for key, value in expected.items():
    assert flat[key] == value, (key, flat[key], value)


def test_toy_judge_encodes_move_the_running_statistics_in_call_order(small):
  # The published toy: E(x), E(m·x), E(m·x̂), all in training mode, each moving
  # the running statistics in turn.
  model, params, stats, x = small
  key = jax.random.key(9)
  config = helpers.objective_config(name="self_teaching", views="pixel_mask", judge="live",
                                    sigreg_on="views", judge_updates_norm=True, sigreg_slices=16)
  _, aux = objectives.create_objective(config, model)(params, stats, x, key)
  variables = {"params": params, "batch_stats": stats}

  def step(variables, images):
    _, upd = model.apply(variables, images, train=True, method=model.encode, mutable=["batch_stats"])
    return {"params": params, "batch_stats": upd["batch_stats"]}

  mask = views.get_view("pixel_mask", ratio=0.7)
  keep = mask.sample(jax.random.fold_in(jax.random.split(key)[1], 0), x.shape)
  variables = step(variables, x)
  recon = model.apply({"params": params}, _encode(model, params, stats, x), method=model.decode)
  for images in (mask.transform(keep, x), mask.transform(keep, recon)):
    variables = step(variables, images)
  chex.assert_trees_all_close(aux["batch_stats"], variables["batch_stats"], rtol=1e-5, atol=1e-7)
