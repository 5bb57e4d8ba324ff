"""Tests for leae_jax.sigreg."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from leae_jax import sigreg as sigreg_lib


def _reference_epps_pulley(p: np.ndarray, num_knots: int = 17, t_max: float = 3.0) -> np.ndarray:
  """Independent float64 NumPy transcription of the formula in docs/method.md §3."""
  n = p.shape[0]
  t = np.linspace(0.0, t_max, num_knots)
  phi = np.exp(-t**2 / 2)
  delta = t_max / (num_knots - 1)
  w = np.array([delta if j in (0, num_knots - 1) else 2 * delta for j in range(num_knots)]) * phi
  stats = []
  for col in p.T:
    err = [(np.mean(np.cos(tj * col)) - phij) ** 2 + np.mean(np.sin(tj * col)) ** 2
           for tj, phij in zip(t, phi)]
    stats.append(n * np.dot(w, err))
  return np.array(stats)


def _trapezoid_weights(num_knots: int = 17, t_max: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
  """Knots and weights w_j = φ(t_j)·(Δ at both ends, 2Δ inside), written out by hand."""
  t = np.linspace(0.0, t_max, num_knots)
  delta = t_max / (num_knots - 1)
  w = np.array([delta if j in (0, num_knots - 1) else 2 * delta for j in range(num_knots)])
  return t, w * np.exp(-t**2 / 2)


def _expected_normal_value(num_knots: int = 17, t_max: float = 3.0) -> float:
  """E[EP] for N(0,1) samples, exactly for any N: N·E[err(t)] = 1 − exp(−t²) at every knot.

  (Var cos(tZ) + Var sin(tZ) = 1 − φ(t)², φ(t)² = exp(−t²).) The statistic's
  quadrature is part of its definition, so the expectation uses the same
  trapezoid weights; the continuous integral differs by 2e-4.
  """
  t, w = _trapezoid_weights(num_knots, t_max)
  return float(np.sum(w * (1 - np.exp(-t**2))))


def _continuous_normal_value(t_max: float = 3.0) -> float:
  """∫_{-t_max}^{t_max} φ(t)(1 − exp(−t²)) dt in closed form."""
  a = np.sqrt(np.pi / 2) * special.erf(t_max / np.sqrt(2))
  b = np.sqrt(np.pi / 6) * special.erf(t_max * np.sqrt(3 / 2))
  return 2 * (a - b)


def test_epps_pulley_matches_reference_formula():
  p = np.random.default_rng(0).normal(size=(50, 6)) * [1, 2, 0.5, 1, 1, 3] + [0, 0, 0, 1, -2, 0]
  got = sigreg_lib.epps_pulley(jnp.asarray(p, jnp.float32))
  chex.assert_shape(got, (6,))
  np.testing.assert_allclose(got, _reference_epps_pulley(p), rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize("num_knots,t_max", [(9, 2.0), (3, 1.0), (2, 0.5)])
def test_epps_pulley_other_knots_match_reference(num_knots, t_max):
  # Few knots and a short range make the end weights (Δ, not 2Δ) a large share
  # of the statistic, so a wrong quadrature cannot hide in the tolerance.
  p = np.random.default_rng(1).normal(size=(40, 3)) * [1.0, 2.0, 0.5] + [0.0, 0.5, -1.0]
  got = sigreg_lib.epps_pulley(jnp.asarray(p, jnp.float32), num_knots=num_knots, t_max=t_max)
  np.testing.assert_allclose(got, _reference_epps_pulley(p, num_knots, t_max), rtol=2e-4, atol=1e-6)


def test_epps_pulley_of_one_sample_at_zero_is_the_weighted_gap_to_the_gaussian():
  # N = 1, p = 0: every empirical cos mean is 1 and sin mean 0, so the
  # statistic is Σ_j w_j (1 − φ_j)², a sum that can be written down.
  t, w = _trapezoid_weights(5, 2.0)
  want = np.sum(w * (1 - np.exp(-t**2 / 2)) ** 2)
  got = sigreg_lib.epps_pulley(jnp.zeros((1, 1)), num_knots=5, t_max=2.0)
  np.testing.assert_allclose(got, [want], rtol=1e-5)
  # N copies of that sample: the means are unchanged, the statistic scales with N.
  np.testing.assert_allclose(sigreg_lib.epps_pulley(jnp.zeros((7, 1)), num_knots=5, t_max=2.0),
                             [7 * want], rtol=1e-5)


def test_standard_normal_gives_about_one_per_slice():
  z = jax.random.normal(jax.random.key(0), (2048, 2000))
  stats = np.asarray(sigreg_lib.epps_pulley(z), np.float64)
  # The mean over 2000 columns matches the exact expectation (1.0525) within
  # three standard errors (~0.06, estimated from the columns themselves). This
  # is a sanity check of scale: the quadrature's end weights move the
  # expectation by only 0.002; the NumPy reference tests pin them.
  expected = _expected_normal_value()
  assert abs(expected - _continuous_normal_value()) < 1e-3
  standard_error = stats.std(ddof=1) / np.sqrt(stats.size)
  assert abs(stats.mean() - expected) < 3 * standard_error, (stats.mean(), expected, standard_error)
  assert float(jnp.median(stats)) < 1.5
  assert float(jnp.percentile(stats, 99)) < 6.0


@pytest.mark.parametrize("name,transform", [
    ("shifted", lambda z: z + 1.0),
    ("scaled", lambda z: 3.0 * z),
    ("shrunk", lambda z: 0.2 * z),
    ("collapsed", lambda z: 0.0 * z + 0.5 + 1e-3 * z),
    ("rank_one", lambda z: jnp.repeat(z[:, :1], z.shape[1], axis=1)),
])
def test_non_gaussian_codes_give_far_larger_values(name, transform):
  z = jax.random.normal(jax.random.key(1), (1024, 32))
  key = jax.random.key(2)
  normal = float(sigreg_lib.sigreg(z, key))
  bad = float(sigreg_lib.sigreg(transform(z), key))
  assert 0.7 < normal < 1.5
  assert bad > 10 * normal, (name, bad, normal)


def test_spatial_latents_average_per_position_statistics():
  z = jax.random.normal(jax.random.key(3), (64, 3, 2, 8)) * jnp.arange(1, 7).reshape(1, 3, 2, 1)
  key = jax.random.key(4)
  spatial = sigreg_lib.sigreg(z, key, num_slices=32)
  per_position = [sigreg_lib.sigreg(z[:, i, j], key, num_slices=32) for i in range(3) for j in range(2)]
  np.testing.assert_allclose(spatial, np.mean(per_position), rtol=1e-5)
  # The positions really differ, so the equality above is not trivial.
  assert np.ptp(per_position) > 1.0


def test_invariant_to_permuting_samples():
  z = jax.random.normal(jax.random.key(5), (128, 16)) + 0.3
  perm = jax.random.permutation(jax.random.key(6), 128)
  key = jax.random.key(7)
  np.testing.assert_allclose(sigreg_lib.sigreg(z, key), sigreg_lib.sigreg(z[perm], key), rtol=1e-5)


def test_directions_are_unit_and_key_dependent():
  a = sigreg_lib.random_directions(jax.random.key(0), 16, 8)
  np.testing.assert_allclose(jnp.linalg.norm(a, axis=0), 1.0, rtol=1e-6)
  b = sigreg_lib.random_directions(jax.random.key(1), 16, 8)
  assert not np.allclose(a, b)


def test_jit_and_grad_lower_the_statistic():
  z = jax.random.normal(jax.random.key(8), (256, 8)) * 2.0 + 1.0
  key = jax.random.key(9)
  loss = jax.jit(lambda z: sigreg_lib.sigreg(z, key, num_slices=64))
  grad = jax.jit(jax.grad(lambda z: sigreg_lib.sigreg(z, key, num_slices=64)))
  before = float(loss(z))
  g = grad(z)
  chex.assert_tree_all_finite(g)
  assert float(jnp.abs(g).max()) > 0
  for _ in range(100):
    z = z - 2.0 * grad(z)
  assert float(loss(z)) < 0.2 * before


def test_low_precision_input_is_computed_in_float32():
  z = jax.random.normal(jax.random.key(10), (128, 8))
  key = jax.random.key(11)
  out = sigreg_lib.sigreg(z.astype(jnp.bfloat16), key)
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(out, sigreg_lib.sigreg(z.astype(jnp.bfloat16).astype(jnp.float32), key))


def test_bad_shapes_raise_clear_errors():
  with pytest.raises(ValueError, match=r"\(N, D\) or \(N, H, W, D\)"):
    sigreg_lib.sigreg(jnp.zeros((4, 2, 3, 1, 1)), jax.random.key(0))  # (N, L, D) is a series' code
  with pytest.raises(ValueError, match=r"\(N, K\)"):
    sigreg_lib.epps_pulley(jnp.zeros((4,)))


@pytest.mark.parametrize("num_knots, t_max", [(17, 3.0), (5, 1.5)])
def test_fast_epps_pulley_value_and_gradient_equal_the_literal_formula(num_knots, t_max):
  # The angle-addition recurrence and its hand-written backward pass compute
  # the same function as cos/sin at every knot.
  p = jnp.asarray(np.random.default_rng(3).normal(size=(64, 12)) * 1.5 + 0.3, jnp.float32)
  weights = jnp.linspace(0.5, 2.0, 12)

  def total(fn):
    return lambda q: jnp.sum(weights * fn(q, num_knots=num_knots, t_max=t_max))

  fast, slow = total(sigreg_lib.epps_pulley), total(sigreg_lib.epps_pulley_reference)
  np.testing.assert_allclose(fast(p), slow(p), rtol=1e-5)
  g_fast, g_slow = jax.grad(fast)(p), jax.grad(slow)(p)
  np.testing.assert_allclose(g_fast, g_slow, rtol=1e-4, atol=1e-5 * float(jnp.abs(g_slow).max()))
  # Both share the library's knots and weights; the float64 NumPy reference
  # does not: its value, and its central differences for the gradient.
  q = np.asarray(p, np.float64)
  w = np.asarray(weights, np.float64)
  reference = lambda x: float(np.dot(w, _reference_epps_pulley(x, num_knots, t_max)))
  np.testing.assert_allclose(fast(p), reference(q), rtol=2e-5)
  h = 1e-5
  numeric = np.zeros_like(q)
  for n in range(0, q.shape[0], 7):  # every 7th sample, every column
    for k in range(q.shape[1]):
      up, down = q.copy(), q.copy()
      up[n, k] += h
      down[n, k] -= h
      numeric[n, k] = (reference(up) - reference(down)) / (2 * h)
  rows = np.arange(0, q.shape[0], 7)
  np.testing.assert_allclose(np.asarray(g_fast)[rows], numeric[rows], rtol=1e-3,
                             atol=1e-4 * np.abs(numeric).max())
  # Under vmap (SIGReg maps it over latent positions) too.
  batched = jax.vmap(jax.grad(fast))(jnp.stack([p, 2 * p]))
  np.testing.assert_allclose(batched[0], g_fast, rtol=1e-5, atol=1e-7)
