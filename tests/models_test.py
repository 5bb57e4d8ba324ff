"""Tests for leae_jax.models."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from leae_jax import models
from leae_jax.models import layers
from leae_jax.models import resample

import helpers


def _shape_only_params(**kw):
  model = models.Autoencoder(**kw)
  return jax.eval_shape(lambda: models.init_variables(model, jax.random.key(0)))["params"]


# (hyper-parameters, published parameter count) — docs/method.md §6.
REFERENCE_MODELS = {
    "toy_shapes": (dict(hidden=32, latent_channels=16, image_size=32, image_channels=1), 0.145e6),
    "cifar_ae": (dict(hidden=64, latent_channels=32, image_size=32, image_channels=3), 0.580e6),
    "celeba_ae": (dict(hidden=128, latent_channels=32, image_size=128, image_channels=3), 2.13e6),
    "celeba_masked_128": (dict(hidden=128, latent_channels=128, image_size=128, image_channels=3,
                               latent="pooled", pool="mlp", pool_channels=128), 11.15e6),
    "celeba_masked_512": (dict(hidden=128, latent_channels=512, image_size=128, image_channels=3,
                               latent="pooled", pool="mlp", pool_channels=128), 36.32e6),
}


@pytest.mark.parametrize("name", sorted(REFERENCE_MODELS))
def test_parameter_counts_match_the_published_models(name):
  kw, published = REFERENCE_MODELS[name]
  params = _shape_only_params(**kw)
  count = models.count_params(params)
  assert abs(count - published) / published < 0.01, (name, count, published)


def test_exact_parameter_count_of_the_cifar_model():
  # Hand count: encoder 270 784 (stem 3 136, down blocks 221 440 + 46 144, norm 64),
  # decoder 309 507 (up blocks 188 800 + 118 976, output conv 1 731).
  params = _shape_only_params(**REFERENCE_MODELS["cifar_ae"][0])
  assert models.count_params(params["encoder"]) == 270_784
  assert models.count_params(params["decoder"]) == 309_507


def test_params_have_exactly_encoder_and_decoder_subtrees():
  model = models.Autoencoder(hidden=8, latent_channels=4, image_size=16, image_channels=3)
  variables = models.init_variables(model, jax.random.key(0))
  assert set(variables["params"]) == {"encoder", "decoder"}
  assert set(variables["batch_stats"]) == {"encoder"}


@pytest.mark.parametrize("latent,pool,size,channels,code_shape", [
    ("spatial", "mlp", 16, 3, (2, 2, 4)),
    ("spatial", "mlp", 24, 1, (3, 3, 4)),
    ("pooled", "mlp", 24, 3, (4,)),
    ("pooled", "oneshot", 16, 1, (4,)),
    ("pooled", "progressive", 32, 3, (4,)),
])
def test_encode_decode_shapes_and_ranges(latent, pool, size, channels, code_shape):
  model = models.Autoencoder(hidden=8, latent_channels=4, image_size=size, image_channels=channels,
                             latent=latent, pool=pool, pool_channels=8)
  variables = models.init_variables(model, jax.random.key(0))
  x = jax.random.uniform(jax.random.key(1), (5, size, size, channels))
  z, _ = model.apply(variables, x, train=True, method=model.encode, mutable=["batch_stats"])
  chex.assert_shape(z, (5, *code_shape))
  assert model.latent_shape == code_shape
  y = model.apply(variables, z, method=model.decode)
  chex.assert_shape(y, x.shape)
  assert y.dtype == jnp.float32
  assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_code_is_batch_normalised_in_training_and_uses_running_stats_in_eval():
  # Flax init: larger pre-norm activations, so eps barely changes the variance.
  model = models.Autoencoder(hidden=8, latent_channels=4, image_size=16, image_channels=3,
                             initializer="flax")
  variables = models.init_variables(model, jax.random.key(0))
  x = jax.random.uniform(jax.random.key(1), (32, 16, 16, 3))
  z, updates = model.apply(variables, x, train=True, method=model.encode, mutable=["batch_stats"])
  np.testing.assert_allclose(z.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
  # Variance is v/(v + eps) for pre-norm variance v: near 1, exactly 1 only as eps → 0.
  np.testing.assert_allclose(z.var(axis=(0, 1, 2)), 1.0, atol=0.15)
  stats = updates["batch_stats"]["encoder"]["code_norm"]
  assert not np.allclose(stats["mean"], 0.0)  # this batch moved the running mean
  z_eval = model.apply(variables, x, train=False, method=model.encode)
  assert not np.allclose(z_eval, z, atol=1e-2)  # eval uses the (initial) running stats


def test_bfloat16_compute_keeps_float32_params_and_outputs():
  kw = dict(hidden=8, latent_channels=4, image_size=16, image_channels=3)
  f32, bf16 = models.Autoencoder(**kw), models.Autoencoder(dtype=jnp.bfloat16, **kw)
  variables = models.init_variables(bf16, jax.random.key(0))
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(variables["params"]))
  x = jax.random.uniform(jax.random.key(1), (4, 16, 16, 3))
  y32 = f32.apply(variables, x, train=False)
  y16 = bf16.apply(variables, x, train=False)
  assert y16.dtype == jnp.float32
  assert float(jnp.abs(y16 - y32).max()) < 0.05
  # Compute really happens in bfloat16: the first conv's output is bf16.
  _, inter = bf16.apply(variables, x, train=False, capture_intermediates=True)
  first_conv = inter["intermediates"]["encoder"]["Conv_0"]["__call__"][0]
  assert first_conv.dtype == jnp.bfloat16


def test_bad_shapes_give_clear_errors():
  with pytest.raises(ValueError, match="divisible by 8"):
    models.init_variables(models.Autoencoder(image_size=20), jax.random.key(0))
  with pytest.raises(ValueError, match="power of two"):
    models.init_variables(models.Autoencoder(image_size=24, latent="pooled", pool="progressive"),
                          jax.random.key(0))
  with pytest.raises(ValueError, match="valid: mlp, oneshot, progressive"):
    models.init_variables(models.Autoencoder(latent="pooled", pool="attention"), jax.random.key(0))
  with pytest.raises(ValueError, match="valid: spatial, pooled"):
    models.init_variables(models.Autoencoder(latent="global"), jax.random.key(0))
  model = models.Autoencoder(hidden=8, latent_channels=4, image_size=16, image_channels=3)
  variables = models.init_variables(model, jax.random.key(0))
  with pytest.raises(ValueError, match=r"expects images of shape \(N, 16, 16, 3\)"):
    model.apply(variables, jnp.zeros((2, 32, 32, 3)), train=False)


def test_create_model_from_config():
  config = helpers.model_config(hidden=8, latent_channels=4, latent="spatial", dtype="bfloat16")
  model = models.create_model(config, image_size=16, image_channels=1)
  assert model.dtype == jnp.bfloat16 and model.image_channels == 1
  config.dtype = "float16"
  with pytest.raises(ValueError, match="valid: float32, bfloat16"):
    models.create_model(config, image_size=16, image_channels=1)
  config.dtype = "float32"
  with pytest.raises(ValueError, match="divisible by 8"):
    models.create_model(config, image_size=28, image_channels=1)


def test_space_to_depth_and_upsample_layouts():
  x = jnp.arange(2 * 4 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 4, 3)
  s2d = resample.space_to_depth(x)
  chex.assert_shape(s2d, (2, 2, 2, 12))
  # Channel order (c, dy, dx): channel c*4 + dy*2 + dx holds x[2i+dy, 2j+dx, c].
  np.testing.assert_array_equal(s2d[0, 1, 0, 2 * 4 + 1 * 2 + 1], x[0, 3, 1, 2])
  up = resample.upsample_nearest(x)
  np.testing.assert_array_equal(up[:, ::2, ::2], x)
  np.testing.assert_array_equal(up[:, 1::2, 1::2], x)
  np.testing.assert_allclose(resample.match_channels(s2d, 6)[..., 0], s2d[..., :2].mean(-1))
  chex.assert_shape(resample.match_channels(x, 6), (2, 4, 4, 6))
  with pytest.raises(ValueError, match="one must divide the other"):
    resample.match_channels(x, 5)


@pytest.mark.parametrize("side, cin, cout", [(4, 8, 16), (8, 16, 3), (1, 4, 4)])
def test_subpixel_upsample_conv_equals_conv_of_upsampled_input(side, cin, cout):
  # conv3x3(upsample ×2) computed as four folded 2x2 convs: same values and
  # the same gradients for the input and the 3x3 kernel.
  rng = np.random.default_rng(side)
  x = jnp.asarray(rng.normal(size=(2, side, side, cin)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(3, 3, cin, cout)) * 0.2, jnp.float32)

  def reference(x, kernel):
    return jax.lax.conv_general_dilated(resample.upsample_nearest(x), kernel, (1, 1), ((1, 1), (1, 1)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        precision=jax.lax.Precision.HIGHEST)

  np.testing.assert_allclose(layers.upsample_conv3x3(x, kernel), reference(x, kernel),
                             rtol=1e-5, atol=1e-5)
  loss = lambda f: lambda x, k: jnp.sum(jnp.sin(f(x, k)))
  got = jax.grad(loss(layers.upsample_conv3x3), argnums=(0, 1))(x, kernel)
  want = jax.grad(loss(reference), argnums=(0, 1))(x, kernel)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


def test_upsample_conv_module_keeps_the_nn_conv_parameters():
  module = layers.UpsampleConv(5, initializer="flax")
  params = module.init(jax.random.key(0), jnp.zeros((1, 4, 4, 3)))["params"]
  conv_params = nn.Conv(5, (3, 3)).init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))["params"]
  assert jax.tree_util.tree_map(jnp.shape, params) == jax.tree_util.tree_map(jnp.shape, conv_params)
  # Same initialisers, same key: identical initial values.
  np.testing.assert_array_equal(params["kernel"], conv_params["kernel"])


def test_conv_module_is_nn_conv_with_the_same_parameters_and_values():
  # Written out so that its kernel gradient can be chunked (`conv2d`); it must
  # stay nn.Conv's 2-D case: same parameter tree, initial values and outputs.
  kw = dict(strides=(2, 2), padding=((1, 1), (1, 1)),
            kernel_init=layers.initializers("pytorch", 27)[0],
            bias_init=layers.initializers("pytorch", 27)[1])
  x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 8, 8, 3)), jnp.float32)
  ours, theirs = layers.Conv(6, (3, 3), **kw), nn.Conv(6, (3, 3), **kw)
  params = ours.init(jax.random.key(1), x)
  chex.assert_trees_all_equal(params, theirs.init(jax.random.key(1), x))
  np.testing.assert_allclose(ours.apply(params, x), theirs.apply(params, x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("batch, side, stride, kernel", [(16, 16, 1, 3), (16, 32, 2, 4), (24, 16, 2, 3)])
def test_chunked_kernel_gradient_is_the_whole_batch_gradient(batch, side, stride, kernel):
  rng = np.random.default_rng(side)
  x = jnp.asarray(rng.normal(size=(batch, side, side, 5)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(kernel, kernel, 5, 7)) * 0.2, jnp.float32)
  pad = ((1, 1), (1, 1))
  out_positions = (side // stride) ** 2
  # These shapes are cut into several chunks (the point of the test).
  assert layers.kernel_grad_chunks(batch, out_positions, layers.KERNEL_GRAD_CHUNK) > 1
  loss = lambda f: lambda x, k: jnp.sum(jnp.sin(f(x, k)))
  ours = lambda x, k: layers.conv2d(x, k, (stride, stride), pad)
  xla = lambda x, k: jax.lax.conv_general_dilated(x, k, (stride, stride), pad,
                                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  got = jax.jit(jax.grad(loss(ours), argnums=(0, 1)))(x, k)
  want = jax.jit(jax.grad(loss(xla), argnums=(0, 1)))(x, k)
  np.testing.assert_array_equal(got[0], want[0])  # the input gradient is XLA's own
  np.testing.assert_allclose(got[1], want[1], rtol=2e-5, atol=2e-5 * float(jnp.abs(want[1]).max()))


def test_kernel_gradient_chunks_divide_the_rows_and_only_cpu_lowers_them():
  assert layers.kernel_grad_chunks(128, 256, 1024) == 32  # 16×16 maps: 4 images a chunk
  assert layers.kernel_grad_chunks(128, 16, 1024) == 2
  assert layers.kernel_grad_chunks(12, 256, 1024) == 3  # a divisor of the rows
  assert layers.kernel_grad_chunks(128, 256, 0) == 1
  assert layers.kernel_grad_chunks(128, 64 * 64, 1024) == layers.MAX_KERNEL_GRAD_CHUNKS
  grad = jax.jit(jax.grad(lambda x, k: jnp.sum(layers.conv2d(x, k, (1, 1), ((1, 1), (1, 1)))),
                          argnums=1))
  args = (jax.ShapeDtypeStruct((16, 16, 16, 4), jnp.float32),
          jax.ShapeDtypeStruct((3, 3, 4, 4), jnp.float32))
  convs = {p: jax.export.export(grad, platforms=[p])(*args).mlir_module().count("convolution")
           for p in ("cpu", "cuda", "tpu")}
  # GPU and TPU get XLA's one kernel-gradient convolution; the CPU the 4 chunks'.
  assert convs["cuda"] == convs["tpu"] == 1 and convs["cpu"] == 4, convs
