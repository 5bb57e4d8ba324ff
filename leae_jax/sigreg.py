"""SIGReg: sketched isotropic Gaussian regularisation of latent codes.

Random one-dimensional projections of the codes are tested against a standard
normal with the Epps–Pulley statistic (a weighted L2 distance between the
empirical and the Gaussian characteristic function). Averaging over many random
directions makes the statistic small only when the codes look like an isotropic
Gaussian, which rules out the constant-code collapse.

All means over samples are plain `jnp.mean`s over the leading axis, so under
`jax.jit` with a batch sharded over devices they are global-batch means and the
result equals the single-device one.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


#: The published SIGReg settings: the one home of these numbers (the base
#: config and `objectives.SigregSpec` read them from here).
NUM_SLICES = 256
NUM_KNOTS = 17
T_MAX = 3.0

def _knots_and_weights(num_knots: int, t_max: float) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Integration knots t_j, Gaussian CF φ(t_j), and quadrature weights w_j."""
  if num_knots < 2:
    raise ValueError(f"num_knots must be at least 2, got {num_knots}.")
  if t_max <= 0:
    raise ValueError(f"t_max must be positive, got {t_max}.")
  t = jnp.linspace(0.0, t_max, num_knots, dtype=jnp.float32)
  phi = jnp.exp(-0.5 * t * t)
  delta = t_max / (num_knots - 1)
  # Trapezoid rule on [0, t_max], doubled because the integrand is symmetric in
  # t: 2Δ at interior knots, Δ at both ends.
  trapezoid = jnp.full((num_knots,), 2.0 * delta, jnp.float32)
  trapezoid = trapezoid.at[0].set(delta).at[-1].set(delta)
  return t, phi, trapezoid * phi


def epps_pulley(projections: jax.Array, *, num_knots: int = NUM_KNOTS, t_max: float = T_MAX) -> jax.Array:
  """Epps–Pulley normality statistic of each column of `projections`.

  Args:
    projections: `(N, K)` samples; each column is one set of N scalar samples.
    num_knots: number of integration knots on `[0, t_max]`.
    t_max: upper end of the integration range.

  Returns:
    `(K,)` float32 statistics `N · Σ_j w_j [(mean cos(t_j p) − φ(t_j))² +
    (mean sin(t_j p))²]`. About 1 for standard-normal samples, far larger for
    shifted, rescaled or collapsed ones.
  """
  if projections.ndim != 2:
    raise ValueError(f"epps_pulley expects (N, K) projections, got shape {projections.shape}.")
  _knots_and_weights(num_knots, t_max)  # validates the arguments
  return _epps_pulley(projections.astype(jnp.float32), num_knots, float(t_max))


# The knots are equally spaced, t_j = j·Δ, so cos(t_j p) and sin(t_j p) are the
# real and imaginary parts of (e^{iΔp})^j: one cos/sin per sample, then angle
# addition, knot by knot, in a scan. Evaluating cos/sin at all N·K·J points
# (and again in the backward pass) dominated SIGReg's cost on CPU; this is the
# same function (differences ~1e-7 relative) at about half the cost, forward
# and backward. The backward pass is written out so that it reuses the same
# recurrence instead of storing J intermediates.


def _unit_phasor(p: jax.Array, num_knots: int, t_max: float) -> tuple[jax.Array, jax.Array]:
  theta = p * (t_max / (num_knots - 1))
  return jnp.cos(theta), jnp.sin(theta)


def _characteristic_means(p: jax.Array, num_knots: int, t_max: float) -> tuple[jax.Array, jax.Array]:
  """`(K, J)` means over samples of cos(t_j p) and sin(t_j p)."""
  c1, s1 = _unit_phasor(p, num_knots, t_max)

  def knot(carry, _):
    c, s = carry
    return (c * c1 - s * s1, s * c1 + c * s1), (jnp.mean(c, axis=0), jnp.mean(s, axis=0))

  start = (jnp.ones_like(p), jnp.zeros_like(p))
  _, (cos_mean, sin_mean) = jax.lax.scan(knot, start, None, length=num_knots)
  return cos_mean.T, sin_mean.T


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _epps_pulley(p: jax.Array, num_knots: int, t_max: float) -> jax.Array:
  return _epps_pulley_fwd(p, num_knots, t_max)[0]


def _epps_pulley_fwd(p, num_knots, t_max):
  _, phi, weights = _knots_and_weights(num_knots, t_max)
  cos_mean, sin_mean = _characteristic_means(p, num_knots, t_max)
  err = (cos_mean - phi) ** 2 + sin_mean**2  # (K, J)
  return p.shape[0] * (err @ weights), (p, cos_mean, sin_mean)


def _epps_pulley_bwd(num_knots, t_max, residuals, g):
  # ∂/∂p_nk of N Σ_j w_j[(C_kj − φ_j)² + S_kj²] with C, S the sample means:
  # 2 Σ_j w_j t_j [S_kj cos(t_j p_nk) − (C_kj − φ_j) sin(t_j p_nk)].
  p, cos_mean, sin_mean = residuals
  t, phi, weights = _knots_and_weights(num_knots, t_max)
  scale = 2.0 * g[:, None] * weights * t  # (K, J)
  a, b = scale * sin_mean, -scale * (cos_mean - phi)
  c1, s1 = _unit_phasor(p, num_knots, t_max)

  def knot(carry, ab):
    c, s, grad = carry
    aj, bj = ab
    return (c * c1 - s * s1, s * c1 + c * s1, grad + aj * c + bj * s), None

  start = (jnp.ones_like(p), jnp.zeros_like(p), jnp.zeros_like(p))
  (_, _, grad), _ = jax.lax.scan(knot, start, (a.T, b.T))
  return (grad,)


_epps_pulley.defvjp(_epps_pulley_fwd, _epps_pulley_bwd)


def epps_pulley_reference(projections: jax.Array, *, num_knots: int = NUM_KNOTS,
                          t_max: float = T_MAX) -> jax.Array:
  """`epps_pulley` evaluated literally, cos/sin at every knot (for tests)."""
  p = projections.astype(jnp.float32)
  t, phi, weights = _knots_and_weights(num_knots, t_max)
  tp = p[:, :, None] * t  # (N, K, J)
  err = (jnp.mean(jnp.cos(tp), axis=0) - phi) ** 2 + jnp.mean(jnp.sin(tp), axis=0) ** 2
  return p.shape[0] * (err @ weights)


#: The projections onto the directions run in full float32, as PyTorch's matmul
#: (TF32 off by default); XLA's default lets Ampere/Hopper GPUs use TF32 (10-bit
#: mantissas). CPUs compute float32 in full either way.
PROJECTION_PRECISION = jax.lax.Precision.HIGHEST


def random_directions(key: jax.Array, dim: int, num_slices: int) -> jax.Array:
  """`(dim, num_slices)` Gaussian directions, each column of unit length."""
  a = jax.random.normal(key, (dim, num_slices), jnp.float32)
  return a / jnp.linalg.norm(a, axis=0, keepdims=True)


def sigreg(
    latents: jax.Array,
    key: jax.Array,
    *,
    num_slices: int = NUM_SLICES,
    num_knots: int = NUM_KNOTS,
    t_max: float = T_MAX,
) -> jax.Array:
  """Sliced Epps–Pulley statistic of a batch of codes (scalar, float32).

  Args:
    latents: `(N, D)` pooled codes (one sample set), or `(N, H, W, D)` spatial
      codes, treated as `H·W` sample sets of N samples each, or `(N, L, D)`
      codes of series, `L` sample sets; the statistic is averaged over
      positions.
    key: PRNG key for the random directions. Every position (and every device
      or host given the same key) uses the same directions.
    num_slices: number of random directions K.
    num_knots: integration knots of the Epps–Pulley statistic.
    t_max: integration range of the Epps–Pulley statistic.

  Returns:
    The mean over directions (and positions) of the per-direction statistic.
  """
  z = latents.astype(jnp.float32)
  if z.ndim == 3:  # a series' code: its L positions as an L x 1 map
    z = z[:, :, None, :]
  if z.ndim == 2:
    a = random_directions(key, z.shape[-1], num_slices)
    return jnp.mean(epps_pulley(jnp.matmul(z, a, precision=PROJECTION_PRECISION),
                                num_knots=num_knots, t_max=t_max))
  if z.ndim == 4:
    n, h, w, d = z.shape
    a = random_directions(key, d, num_slices)
    proj = jnp.einsum("nhwd,dk->hwnk", z, a, precision=PROJECTION_PRECISION
                      ).reshape(h * w, n, num_slices)
    per_position = jax.vmap(lambda p: epps_pulley(p, num_knots=num_knots, t_max=t_max))(proj)
    return jnp.mean(per_position)
  raise ValueError(
      f"sigreg expects latents of shape (N, L, D), (N, D) or (N, H, W, D), got {latents.shape}."
  )
