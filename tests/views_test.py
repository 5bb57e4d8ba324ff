"""Tests for leae_jax.views."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from leae_jax import views

RANDOM_VIEWS = ("crop_resize", "pixel_mask", "patch_mask", "channel_mask", "inpaint")


def _images(channels: int, n: int = 4, size: int = 16, seed: int = 0) -> jax.Array:
  return jax.random.uniform(jax.random.key(seed), (n, size, size, channels))


def _reference_crop_resize(images: np.ndarray, top, left, side) -> np.ndarray:
  """Straightforward gather-based bilinear crop-resize, one image at a time."""
  n, h, w, _ = images.shape
  out = np.zeros_like(images, dtype=np.float64)
  for b in range(n):
    ys = top[b] + np.linspace(0, side[b] - 1, h)
    xs = left[b] + np.linspace(0, side[b] - 1, w)
    for i, y in enumerate(ys):
      y0 = int(np.floor(y)); fy = y - y0; y1 = min(y0 + 1, h - 1)
      for j, x in enumerate(xs):
        x0 = int(np.floor(x)); fx = x - x0; x1 = min(x0 + 1, w - 1)
        img = images[b].astype(np.float64)
        out[b, i, j] = ((1 - fy) * ((1 - fx) * img[y0, x0] + fx * img[y0, x1])
                        + fy * ((1 - fx) * img[y1, x0] + fx * img[y1, x1]))
  return out


def test_registry_lists_every_view():
  assert set(views.names()) >= {
      "identity", "crop_resize", "pixel_mask", "patch_mask", "channel_mask", "blur",
      "saturation_contrast", "sobel", "high_pass", "local_contrast", "inpaint"}


def test_unknown_view_and_argument_errors_list_the_valid_ones():
  with pytest.raises(ValueError, match="valid views: .*crop_resize.*pixel_mask"):
    views.get_view("rotate")
  with pytest.raises(ValueError, match="accepts: crop_ratio"):
    views.get_view("crop_resize", ratio=0.3)
  with pytest.raises(ValueError, match=r"crop_ratio must lie in \(0, 1\]"):
    views.get_view("crop_resize", crop_ratio=1.5)
  with pytest.raises(ValueError, match="must lie in"):
    views.get_view("pixel_mask", ratio=1.2)


def test_crop_resize_full_box_is_identity():
  x = _images(3)
  view = views.get_view("crop_resize", crop_ratio=1.0)
  np.testing.assert_allclose(view(jax.random.key(0), x), x, atol=1e-6)


def test_crop_resize_matches_gather_reference():
  x = _images(3, n=6, size=16)
  view = views.get_view("crop_resize", crop_ratio=(0.1, 0.9))
  params = view.sample(jax.random.key(1), x.shape)
  got = jax.jit(view.transform)(params, x)
  want = _reference_crop_resize(np.asarray(x), *(np.asarray(params[k]) for k in ("top", "left", "side")))
  np.testing.assert_allclose(got, want, atol=1e-5)
  # The boxes really vary, so the comparison covers several scales.
  assert len(set(np.asarray(params["side"]).tolist())) > 1


def test_crop_resize_box_is_inside_the_image_with_the_requested_side():
  view = views.get_view("crop_resize", crop_ratio=0.25)
  params = view.sample(jax.random.key(2), (64, 32, 32, 3))
  side, top, left = (np.asarray(params[k]) for k in ("side", "top", "left"))
  assert (side == 8).all()
  assert (top >= 0).all() and (top + side <= 32).all()
  assert (left >= 0).all() and (left + side <= 32).all()
  assert len(set(top.tolist())) > 5  # positions are random


def test_crop_resize_of_a_ramp_zooms_it():
  ramp = jnp.broadcast_to(jnp.arange(16, dtype=jnp.float32)[None, :, None, None] / 15, (1, 16, 16, 1))
  params = dict(top=jnp.array([4]), left=jnp.array([0]), side=jnp.array([8]))
  out = views.get_view("crop_resize").transform(params, ramp)
  np.testing.assert_allclose(out[0, :, 0, 0], np.linspace(4, 11, 16) / 15, atol=1e-6)


def test_pixel_mask_drops_exactly_the_ratio():
  x = jnp.ones((5, 16, 16, 3))
  out = views.get_view("pixel_mask", ratio=0.7)(jax.random.key(0), x)
  dropped = np.asarray((out == 0).all(axis=-1).sum(axis=(1, 2)))
  assert (dropped == int(0.7 * 256)).all()  # floor, as published
  # All channels of a pixel are dropped together.
  assert ((out == 0).any(axis=-1) == (out == 0).all(axis=-1)).all()


def test_patch_mask_drops_whole_patches_at_the_ratio():
  x = jnp.ones((3, 16, 16, 1))
  out = np.asarray(views.get_view("patch_mask", ratio=0.7, patch_size=4)(jax.random.key(1), x))
  patches = out.reshape(3, 4, 4, 4, 4).transpose(0, 1, 3, 2, 4).reshape(3, 16, 16)
  assert ((patches == 0).all(-1) | (patches == 1).all(-1)).all()  # patch-constant
  assert ((patches == 0).all(-1).sum(-1) == int(0.7 * 16)).all()


def test_patch_mask_rejects_indivisible_images():
  with pytest.raises(ValueError, match="not divisible"):
    views.get_view("patch_mask", patch_size=5)(jax.random.key(0), jnp.ones((1, 16, 16, 1)))


def test_channel_mask_option_keeps_exactly_one_channel():
  # `at_least_one` (ours, not the published default): exactly round(0.7·3) = 2 dropped.
  x = jnp.ones((50, 4, 4, 3))
  out = np.asarray(views.get_view("channel_mask", ratio=0.7, at_least_one=True)(jax.random.key(2), x))
  dropped = (out == 0).all(axis=(1, 2))
  assert (dropped.sum(-1) == 2).all()
  assert dropped.any(axis=0).all()  # every channel gets dropped somewhere
  grey = jnp.ones((4, 4, 4, 1))
  np.testing.assert_array_equal(
      views.get_view("channel_mask", ratio=0.7, at_least_one=True)(jax.random.key(0), grey), grey)


def test_inpaint_fills_one_square_with_the_channel_mean():
  x = _images(3, n=4, size=20)
  view = views.get_view("inpaint", mask_ratio=0.35)
  params = view.sample(jax.random.key(3), x.shape)
  hole = np.asarray(params["hole"][..., 0])
  side = round(np.sqrt(0.35 * 400))
  assert (hole.sum(axis=(1, 2)) == side * side).all()
  rows, cols = hole.any(2), hole.any(1)
  assert (rows.sum(1) == side).all() and (cols.sum(1) == side).all()  # one square
  out = np.asarray(view.transform(params, x))
  mean = np.asarray(x).mean(axis=(1, 2))
  for b in range(4):
    np.testing.assert_allclose(out[b][hole[b] == 1], np.broadcast_to(mean[b], (side * side, 3)), rtol=1e-6)
    np.testing.assert_array_equal(out[b][hole[b] == 0], np.asarray(x)[b][hole[b] == 0])


@pytest.mark.parametrize("name", RANDOM_VIEWS)
def test_pair_applies_the_same_randomness_to_both_images(name):
  # Every random view is homogeneous in the image (t(c·x) = c·t(x)) for a fixed
  # draw, so t(0.5·x) == 0.5·t(x) exactly when both get the same box/mask.
  x = _images(3, n=4, size=16, seed=1)
  view = views.get_view(name)
  a, b = view.pair(jax.random.key(4), x, 0.5 * x)
  np.testing.assert_allclose(b, 0.5 * a, atol=1e-6)
  # ...and a different key gives a different draw, so the check can fail.
  other = view(jax.random.key(5), x)
  assert not np.allclose(other, a)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", sorted(set(views.names())))
def test_shapes_and_value_ranges(name, channels):
  x = _images(channels, n=3, size=16)
  view = views.get_view(name)
  out = jax.jit(view)(jax.random.key(6), x)
  chex.assert_shape(out, x.shape)
  chex.assert_tree_all_finite(out)
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
  # Gradients flow through the view into the (reconstructed) image.
  g = jax.grad(lambda x: jnp.sum(view(jax.random.key(6), x) ** 2))(x)
  chex.assert_tree_all_finite(g)


def test_detail_filters_on_known_images():
  # Away from the (zero-padded) border a flat image has no detail.
  flat = jnp.full((1, 24, 24, 1), 0.4)
  inner = (slice(None), slice(6, 18), slice(6, 18))
  np.testing.assert_allclose(views.get_view("blur")(None, flat)[inner], 0.4, atol=1e-6)
  np.testing.assert_allclose(views.get_view("high_pass")(None, flat)[inner], 0.0, atol=1e-6)
  step = jnp.broadcast_to((jnp.arange(16) >= 8).astype(jnp.float32)[None, None, :, None], (1, 16, 16, 1))
  edges = views.get_view("sobel")(None, step)[0, 8, :, 0]
  # Normalised by the image's strongest edge (a zero-padded corner of the bright
  # half), so the step reads high but below 1; flat regions read ~0.
  np.testing.assert_allclose(edges[7], edges[8], rtol=1e-6)
  assert 0.5 < float(edges[7]) <= 1.0 and float(edges[3]) < 1e-2
  # Saturation: a grey image stays grey; a colour moves away from its grey level.
  grey = jnp.full((1, 4, 4, 3), 0.5)
  np.testing.assert_allclose(views.get_view("saturation_contrast")(None, grey), grey, atol=1e-6)
  colour = jnp.broadcast_to(jnp.array([0.6, 0.4, 0.4]), (1, 4, 4, 3))
  sat = views.get_view("saturation_contrast", contrast=1.0)(None, colour)
  assert float(sat[0, 0, 0, 0] - sat[0, 0, 0, 1]) > 0.2 * 1.8 - 1e-6


def test_custom_view_can_be_registered():
  @views.register("test_invert")
  def invert():
    return views.deterministic("test_invert", lambda x: 1.0 - x)

  x = _images(1)
  np.testing.assert_allclose(views.get_view("test_invert")(None, x), 1.0 - x)
