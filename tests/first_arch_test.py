"""The reference's first architecture (`model.arch='first'`, the published toy run; fidelity row 24).

Expected values come from hand counts and NumPy re-implementations of the
PyTorch operations written from their definitions (`F.pixel_unshuffle`,
`F.pixel_shuffle`, `Tensor.repeat`, `ConvTranspose2d`, `BatchNorm1d`,
`F.interpolate(mode='bilinear', align_corners=False)`), never from the code
under test. The whole forward, loss and gradients against a PyTorch twin:
`benchmarks/pytorch_first_arch.py` (run by hand; torch is not a test dependency).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from leae_jax import train
from leae_jax import checkpoints
from leae_jax import evaluate
from leae_jax import metrics
from leae_jax import models
from leae_jax.models import first
from leae_jax.models import resample
from leae_jax import objectives
from leae_jax import sigreg as sigreg_lib
from leae_jax import views

import helpers



def _first(**kw):
  return models.Autoencoder(arch="first", **kw)


def _zeros_like_params(module, x):
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), x))["params"]
  return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def _torch_param_count(channels: int, hidden: int, latent: int, grid: int = 4) -> int:
  """The PyTorch module's `sum(p.numel())`, layer by layer (Conv2d and ConvTranspose2d: i·o·k² + o)."""
  layer = lambda cin, cout, k: cin * cout * k * k + cout
  h, c = hidden, latent
  encoder = (layer(channels, h, 4)                          # stem
             + layer(h, 2 * h, 3) + layer(2 * h, 2 * h, 3)  # down block 1
             + layer(2 * h, c, 3) + layer(c, c, 3)          # down block 2
             + 2 * c * grid * grid)                         # BatchNorm1d weight + bias
  decoder = (layer(c, 2 * h, 4) + layer(2 * h, 2 * h, 3)    # up block 1 (transposed, conv)
             + layer(2 * h, h, 4) + layer(h, h, 3)          # up block 2
             + layer(h, channels, 4))                       # head
  return encoder + decoder


# ---------------------------------------------------------------------------
# NumPy versions of the PyTorch operations, NCHW as PyTorch writes them.


def _np_pixel_unshuffle(x, r=2):
  n, c, h, w = x.shape
  out = np.zeros((n, c * r * r, h // r, w // r), x.dtype)
  for ch in range(c):
    for dy in range(r):
      for dx in range(r):
        out[:, ch * r * r + dy * r + dx] = x[:, ch, dy::r, dx::r]
  return out


def _np_pixel_shuffle(x, r=2):
  n, c, h, w = x.shape
  out = np.zeros((n, c // (r * r), h * r, w * r), x.dtype)
  for ch in range(c // (r * r)):
    for dy in range(r):
      for dx in range(r):
        out[:, ch, dy::r, dx::r] = x[:, ch * r * r + dy * r + dx]
  return out


def _np_conv_transpose(x, weight, bias, stride=2, padding=1):
  """ConvTranspose2d by its definition: each input pixel scatters `x · W[i, o]` at `stride·y − padding`."""
  n, cin, h, w = x.shape
  _, cout, k, _ = weight.shape
  full = np.zeros((n, cout, (h - 1) * stride + k, (w - 1) * stride + k))
  for y in range(h):
    for xx in range(w):
      full[:, :, y * stride:y * stride + k, xx * stride:xx * stride + k] += np.einsum(
          "ni,iokl->nokl", x[:, :, y, xx], weight)
  out_h, out_w = (h - 1) * stride - 2 * padding + k, (w - 1) * stride - 2 * padding + k
  return full[:, :, padding:padding + out_h, padding:padding + out_w] + bias[None, :, None, None]


def _np_bilinear(x, size):
  """`F.interpolate(x, (size, size), mode='bilinear', align_corners=False)`, no antialias, loops.

  Source coordinate `(in/out)·(i + 0.5) − 0.5`, clamped at 0, upper neighbour
  clamped to the edge; PyTorch evaluates it in float32 for float32 images, so
  this does too (in float64 the weights differ by up to ~3e-6 at 32 → 28).
  """
  n, c, h, w = x.shape
  out = np.zeros((n, c, size, size))
  f32 = np.float32

  def source(i, in_size):
    s = max(f32(f32(in_size) / f32(size)) * (f32(i) + f32(0.5)) - f32(0.5), f32(0.0))
    i0 = int(math.floor(s))
    i1 = min(i0 + 1, in_size - 1)
    return i0, i1, float(s) - i0

  for i in range(size):
    y0, y1, fy = source(i, h)
    for j in range(size):
      x0, x1, fx = source(j, w)
      out[:, :, i, j] = ((1 - fy) * ((1 - fx) * x[:, :, y0, x0] + fx * x[:, :, y0, x1])
                         + fy * ((1 - fx) * x[:, :, y1, x0] + fx * x[:, :, y1, x1]))
  return out


def _nchw(x):
  return np.asarray(x, np.float64).transpose(0, 3, 1, 2)


# ---------------------------------------------------------------------------


def test_parameter_count_is_the_hand_count_of_the_pytorch_module():
  assert _torch_param_count(1, 32, 16) == 163_969  # the published toy model
  for (channels, hidden, latent, size) in [(1, 32, 16, 28), (3, 8, 8, 32), (1, 4, 4, 14)]:
    model = _first(hidden=hidden, latent_channels=latent, image_size=size, image_channels=channels)
    variables = jax.eval_shape(lambda: models.init_variables(model, jax.random.key(0)))
    grid = first.first_arch_grid(size)
    assert models.count_params(variables["params"]) == _torch_param_count(channels, hidden, latent, grid)
    norm = variables["params"]["encoder"]["code_norm"]
    assert norm["scale"].shape == (latent * grid * grid,)  # one per flattened code element
    assert variables["batch_stats"]["encoder"]["code_norm"]["var"].shape == (latent * grid * grid,)


def test_shapes_at_28_px_and_the_code_grid():
  # 28 → 14 (stem) → 7 → 4 (odd side padded); decoder 4 → 8 → 16 → 32, resized to 28.
  assert [first.first_arch_grid(s) for s in (26, 28, 32, 14, 8)] == [4, 4, 4, 2, 1]
  model = _first(hidden=32, latent_channels=16, image_size=28, image_channels=1)
  assert model.latent_shape == (4, 4, 16)
  x = jax.ShapeDtypeStruct((3, 28, 28, 1), jnp.float32)
  variables = jax.eval_shape(lambda: models.init_variables(model, jax.random.key(0)))

  def run(v, x):
    out, inter = model.apply(v, x, train=True, mutable=["batch_stats", "intermediates"],
                             capture_intermediates=True)
    return out, inter["intermediates"]

  out, inter = jax.eval_shape(run, variables, x)
  assert out.shape == (3, 28, 28, 1) and out.dtype == jnp.float32
  enc, dec = inter["encoder"], inter["decoder"]
  assert enc["stem"]["__call__"][0].shape == (3, 14, 14, 32)
  assert enc["down_0"]["__call__"][0].shape == (3, 7, 7, 64)
  assert enc["down_1"]["__call__"][0].shape == (3, 4, 4, 16)
  assert enc["__call__"][0].shape == (3, 4, 4, 16)
  assert dec["up_0"]["__call__"][0].shape == (3, 8, 8, 64)
  assert dec["up_1"]["__call__"][0].shape == (3, 16, 16, 32)
  assert dec["to_image"]["__call__"][0].shape == (3, 32, 32, 1)
  # bfloat16 compute keeps float32 parameters, codes and images.
  bf16 = _first(hidden=32, latent_channels=16, image_size=28, image_channels=1, dtype=jnp.bfloat16)
  out, _ = jax.eval_shape(lambda v, x: bf16.apply(v, x, train=True, mutable=["batch_stats"]),
                          variables, x)
  codes = jax.eval_shape(lambda v, x: bf16.apply(v, x, train=False, method=bf16.encode), variables, x)
  assert (out.dtype, codes.dtype) == (jnp.float32, jnp.float32)


def test_down_block_skip_is_pixel_unshuffle_of_the_padded_input_then_group_means():
  # Zero convolutions: the block's output is SiLU(skip). Odd 7x7 input: padded at the bottom/right.
  x = np.random.default_rng(0).normal(size=(2, 7, 7, 6)).astype(np.float32)
  block = first.FirstDownBlock(3)
  out = np.asarray(block.apply({"params": _zeros_like_params(block, x)}, x))
  padded = np.pad(_nchw(x), ((0, 0), (0, 0), (0, 1), (0, 1)))
  un = _np_pixel_unshuffle(padded)  # (2, 24, 4, 4)
  skip = un.reshape(2, 3, 8, 4, 4).mean(axis=2)  # view(b, out, group, h, w).mean(2)
  expected = skip / (1 + np.exp(-skip))
  np.testing.assert_allclose(out, expected.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-6)


def test_up_block_skip_is_pixel_shuffle_then_channels_repeated_as_a_block():
  x = np.random.default_rng(1).normal(size=(2, 3, 3, 8)).astype(np.float32)
  block = first.FirstUpBlock(6)
  out = np.asarray(block.apply({"params": _zeros_like_params(block, x)}, x))
  shuffled = _np_pixel_shuffle(_nchw(x))  # (2, 2, 6, 6)
  skip = np.tile(shuffled, (1, 3, 1, 1))  # Tensor.repeat(1, 3, 1, 1): channels a, b, a, b, a, b
  expected = skip / (1 + np.exp(-skip))
  np.testing.assert_allclose(out, expected.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-6)


def test_transposed_convolution_is_pytorchs_conv_transpose2d_k4_s2_p1():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(2, 3, 5, 4)).astype(np.float32)  # NHWC, non-square
  weight = rng.normal(size=(4, 6, 4, 4)).astype(np.float32)  # PyTorch (in, out, kh, kw)
  bias = rng.normal(size=(6,)).astype(np.float32)
  layer = first.conv_transpose_layer(6, jnp.float32, initializer="pytorch", precision="highest")
  kernel = weight.transpose(2, 3, 1, 0)  # flax (kh, kw, out, in), unflipped
  assert jax.eval_shape(lambda: layer.init(jax.random.key(0), x))["params"]["kernel"].shape == kernel.shape
  out = np.asarray(layer.apply({"params": {"kernel": kernel, "bias": bias}}, x))
  expected = _np_conv_transpose(_nchw(x), weight.astype(np.float64), bias.astype(np.float64))
  assert out.shape == (2, 6, 10, 6)  # each side doubled
  np.testing.assert_allclose(out, expected.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)


def test_transposed_convolutions_initialise_with_pytorchs_fan_in_from_their_outputs():
  # U(±1/√fan_in) kernels and biases, fan_in = out·k² for ConvTranspose2d (PyTorch's
  # weight is (in, out, k, k)): the toy's first up block (16 → 64) and its head (32 → 1).
  layers = {cout: first.conv_transpose_layer(cout, jnp.float32, initializer="pytorch",
                                         precision="default") for cout in (64, 1)}
  inits = jax.jit(lambda key: {cout: layers[cout].init(jax.random.fold_in(key, cout),
                                                       jnp.zeros((1, 4, 4, cin)))["params"]
                               for cin, cout in ((16, 64), (32, 1))})(jax.random.key(0))
  for cout, params in inits.items():
    bound = 1 / math.sqrt(cout * 16)
    for name in ("kernel", "bias"):
      v = np.asarray(params[name])
      assert np.abs(v).max() <= bound * (1 + 1e-6), (cout, name)
      if v.size >= 32:
        assert np.abs(v).max() > 0.5 * bound, (cout, name)
      if v.size >= 1000:
        assert abs(v.std() / (bound / math.sqrt(3)) - 1) < 0.05, (cout, name)


def test_code_norm_is_batch_norm_1d_over_the_channel_major_flattened_code():
  # 14 → 7 → 4 → 2: a 2x2x4 code, 16 flattened elements, each with its own statistics.
  model = _first(hidden=4, latent_channels=4, image_size=14, image_channels=1)
  d = 16
  x = np.random.default_rng(3).uniform(size=(6, 14, 14, 1)).astype(np.float32)

  @jax.jit  # one compilation: init, a training-mode and an eval-mode encode
  def run(x):
    variables = model.init(jax.random.key(0), x, train=False, method=model.encode)
    params = {"encoder": dict(variables["params"]["encoder"], code_norm={
        "scale": jnp.linspace(0.5, 2.0, d), "bias": jnp.linspace(-1.0, 1.0, d)})}
    codes, state = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                               train=True, method=model.encode,
                               mutable=["batch_stats", "intermediates"], capture_intermediates=True)
    evaluated = model.apply({"params": params, "batch_stats": state["batch_stats"]}, x,
                            train=False, method=model.encode)
    return codes, state, evaluated

  codes, state, evaluated = run(x)
  pre = np.asarray(state["intermediates"]["encoder"]["down_1"]["__call__"][0], np.float64)
  flat = pre.transpose(0, 3, 1, 2).reshape(6, d)  # PyTorch z.flatten(1) of NCHW
  mean, var = flat.mean(0), flat.var(0)
  scale, bias = np.linspace(0.5, 2.0, d), np.linspace(-1.0, 1.0, d)
  normed = (flat - mean) / np.sqrt(var + 1e-5) * scale + bias
  expected = normed.reshape(6, 4, 2, 2).transpose(0, 2, 3, 1)
  np.testing.assert_allclose(np.asarray(codes), expected, rtol=1e-4, atol=1e-4)
  stats = state["batch_stats"]["encoder"]["code_norm"]
  np.testing.assert_allclose(stats["mean"], 0.1 * mean, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * flat.var(0, ddof=1), rtol=1e-5, atol=1e-7)
  # Evaluation mode normalises with the running statistics, element by element.
  run = (flat - 0.1 * mean) / np.sqrt(0.9 + 0.1 * flat.var(0, ddof=1) + 1e-5) * scale + bias
  np.testing.assert_allclose(np.asarray(evaluated), run.reshape(6, 4, 2, 2).transpose(0, 2, 3, 1),
                             rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("in_size,out_size", [(32, 28), (7, 5), (5, 9), (16, 14)])
def test_bilinear_resize_is_pytorchs_align_corners_false_without_antialias(in_size, out_size):
  x = np.random.default_rng(in_size).uniform(size=(2, in_size, in_size, 3)).astype(np.float32)
  out = np.asarray(resample.resize_bilinear(jnp.asarray(x), out_size))
  expected = _np_bilinear(_nchw(x), out_size).transpose(0, 2, 3, 1)
  np.testing.assert_allclose(out, expected, rtol=0, atol=2e-6)


def test_decoder_output_is_the_sigmoid_of_the_head_resized_to_the_image_side():
  model = _first(hidden=4, latent_channels=4, image_size=14, image_channels=1)
  z = np.random.default_rng(4).normal(size=(2, 2, 2, 4)).astype(np.float32)

  @jax.jit
  def run(z):
    variables = model.init(jax.random.key(1), z, method=model.decode)
    return model.apply(variables, z, method=model.decode, mutable=["intermediates"],
                       capture_intermediates=True)

  out, state = run(z)
  head = np.asarray(state["intermediates"]["decoder"]["to_image"]["__call__"][0], np.float64)
  assert head.shape == (2, 16, 16, 1) and out.shape == (2, 14, 14, 1)
  expected = _np_bilinear(_nchw(1 / (1 + np.exp(-head))), 14).transpose(0, 2, 3, 1)
  np.testing.assert_allclose(np.asarray(out), expected, rtol=0, atol=2e-6)


def test_sigreg_flatten_takes_whole_channel_major_codes():
  codes = jax.random.normal(jax.random.key(0), (32, 2, 2, 4))
  flat, by_hand, per_position = jax.jit(lambda codes, key: (
      objectives.SigregSpec(num_slices=8, flatten=True)(codes, key),
      sigreg_lib.sigreg(jnp.transpose(codes, (0, 3, 1, 2)).reshape(32, 16), key, num_slices=8),
      objectives.SigregSpec(num_slices=8)(codes, key)))(codes, jax.random.key(1))
  np.testing.assert_allclose(flat, by_hand, rtol=1e-6)
  assert abs(float(per_position) - float(flat)) > 1e-3
  config = helpers.objective_config(sigreg_flatten=True)
  assert objectives.sigreg_spec(config).flatten


def test_validation_names_the_constraints_of_the_first_architecture():
  cfg = lambda **kw: helpers.model_config(**dict(
      dict(arch="first", hidden=32, latent_channels=16, latent="spatial"), **kw))
  model = models.create_model(cfg(), image_size=28, image_channels=1)
  assert model.arch == "first" and model.latent_shape == (4, 4, 16)
  with pytest.raises(ValueError, match="spatial code only"):
    models.create_model(cfg(latent="pooled"), image_size=28, image_channels=1)
  with pytest.raises(ValueError, match="latent_channels divisible by 4"):
    models.create_model(cfg(latent_channels=6), image_size=28, image_channels=1)
  with pytest.raises(ValueError, match="image_size >= 8"):
    models.create_model(cfg(), image_size=6, image_channels=1)
  with pytest.raises(ValueError, match="Unknown model.arch 'second'"):
    models.create_model(cfg(arch="second"), image_size=28, image_channels=1)
  with pytest.raises(ValueError, match="divisible by 8"):  # the later architecture at 28 px
    models.create_model(cfg(arch="residual"), image_size=28, image_channels=1)


def test_shapes_config_is_the_toy_run_and_residual_arch_the_later_model():
  toy = train.resolve(helpers.load_config("shapes"))
  assert (toy.model.arch, toy.image_size, toy.image_channels) == ("first", 28, 1)
  assert toy.objective.sigreg_flatten
  later = train.resolve(helpers.load_config("shapes", "residual_arch"))
  assert (later.model.arch, later.image_size, later.objective.sigreg_flatten) == ("residual", 32, False)
  counts = []
  for c in (toy, later):
    model = models.create_model(c.model, image_size=c.image_size, image_channels=c.image_channels)
    counts.append(models.count_params(jax.eval_shape(
        lambda: models.init_variables(model, jax.random.key(0)))["params"]))
  assert counts == [163_969, 144_929]
  # Checkpoints tell the architectures apart; the default keeps its old fingerprint.
  assert checkpoints.structure_fingerprint(toy)["model"]["arch"] == "first"
  assert "arch" not in checkpoints.structure_fingerprint(later)["model"]


def test_views_metrics_and_pictures_work_at_28_px():
  x = np.random.default_rng(5).uniform(size=(4, 28, 28, 1)).astype(np.float32)
  keep, crop, ssim = jax.jit(lambda x: (
      views.get_view("pixel_mask", ratio=0.7).sample(jax.random.key(1), x.shape),
      views.get_view("crop_resize", crop_ratio=0.3)(jax.random.key(2), x),
      metrics.per_image_ssim(x, x * 0.9)))(x)
  assert np.all(np.sum(np.asarray(keep) == 0, axis=(1, 2, 3)) == int(0.7 * 28 * 28))
  assert crop.shape == x.shape and np.all(np.isfinite(np.asarray(ssim)))
  codes = np.random.default_rng(0).normal(size=(4, 4, 4, 16)).astype(np.float32)
  grid = evaluate.pca_picture(np.asarray(x), codes, codes)
  assert grid.shape[0] == 2 * 29 + 1
