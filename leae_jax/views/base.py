"""The view type and its registry: what every transformation ("view") is, by modality.

A `View` is a pair of pure functions:

* `sample(key, shape) -> params`: draws the per-sample randomness for a batch
  (crop boxes, masks...), once per step;
* `transform(params, x) -> x`: applies it, batched, jit-able.

Because the randomness is sampled separately, the *same* crop box or mask is
applied to the real input and to its reconstruction (`View.pair`). Views are
registered by name in one namespace per modality (`register(name,
modality=...)`) and built with `get_view(name, modality=..., **args)`; a
notebook can add its own. The helpers at the end are shared by the image
views (`views.image`) and the sequence views (`views.sequence`).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp

Params = Any
Shape = tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class View:
  """A named transformation with its randomness split from its application."""

  name: str
  sample: Callable[[jax.Array, Shape], Params]
  transform: Callable[[Params, jax.Array], jax.Array]

  def __call__(self, key: jax.Array, images: jax.Array) -> jax.Array:
    """Samples fresh randomness from `key` and transforms `images`."""
    return self.transform(self.sample(key, images.shape), images)

  def pair(self, key: jax.Array, a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Applies one draw of the randomness identically to `a` and `b`."""
    if a.shape != b.shape:
      raise ValueError(f"View {self.name!r}: paired batches differ in shape, {a.shape} vs {b.shape}.")
    params = self.sample(key, a.shape)
    return self.transform(params, a), self.transform(params, b)


def _no_randomness(key: jax.Array, shape: Shape) -> None:
  del key, shape
  return None


def deterministic(name: str, fn: Callable[[jax.Array], jax.Array]) -> View:
  """Wraps a key-free image function as a `View`."""
  return View(name, _no_randomness, lambda params, images: fn(images))


# ---------------------------------------------------------------------------
# Registry.

#: The kinds of data views apply to. Each has its own namespace of view names
#: (`register(..., modality=...)`): `image` views take `(N, H, W, C)` batches in
#: [0, 1]; `sequence` views (`views.sequence`) take `(N, L, C)` batches of
#: normalised series. One name may mean the analogous view in each namespace
#: (`crop_resize`, `patch_mask`, ...), so the config variants apply to both.
MODALITIES = ("image", "sequence")

_REGISTRY: dict[str, dict[str, Callable[..., View]]] = {m: {} for m in MODALITIES}


def _namespace(modality: str) -> dict[str, Callable[..., View]]:
  if modality not in _REGISTRY:
    raise ValueError(f"Unknown modality {modality!r}; valid: {', '.join(MODALITIES)}.")
  return _REGISTRY[modality]


def register(name: str, *, modality: str = "image") -> Callable[[Callable[..., View]], Callable[..., View]]:
  """Decorator registering a view factory `(**kwargs) -> View` under `name` for `modality`."""
  namespace = _namespace(modality)

  def wrap(factory: Callable[..., View]) -> Callable[..., View]:
    namespace[name] = factory
    return factory

  return wrap


def names(modality: str = "image") -> list[str]:
  """Registered view names of `modality`."""
  return sorted(_namespace(modality))


def default_args(modality: str = "image") -> dict[str, dict[str, Any]]:
  """Every registered view's keyword arguments and their defaults, by view name.

  The base config's `objective.view_args` starts from this (for the config's
  modality), so each view's arguments can be overridden from the command line
  in every config.
  """
  return {name: {k: p.default for k, p in inspect.signature(factory).parameters.items()
                 if p.default is not inspect.Parameter.empty}
          for name, factory in sorted(_namespace(modality).items())}


def get_view(name: str, *, modality: str = "image", **kwargs: Any) -> View:
  """Builds the registered view `name` of `modality` with keyword arguments `kwargs`."""
  namespace = _namespace(modality)
  if name not in namespace:
    kind = "" if modality == "image" else f" {modality}"  # image messages as they always were
    raise ValueError(f"Unknown{kind} view {name!r}; valid{kind} views: {', '.join(names(modality))}.")
  factory = namespace[name]
  accepted = inspect.signature(factory).parameters
  unknown = sorted(set(kwargs) - set(accepted))
  if unknown:
    raise ValueError(
        f"View {name!r} got unknown argument(s) {', '.join(unknown)}; "
        f"it accepts: {', '.join(accepted) or 'none'}."
    )
  return factory(**kwargs)


# ---------------------------------------------------------------------------
# Helpers shared by the image and sequence views.


def exact_count_mask(key: jax.Array, shape: Shape, count: int) -> jax.Array:
  """Boolean mask of `shape = (N, ...)` with exactly `count` True per sample."""
  n = shape[0]
  size = math.prod(shape[1:])
  if count <= 0:
    return jnp.zeros(shape, bool)
  if count >= size:
    return jnp.ones(shape, bool)
  noise = jax.random.uniform(key, (n, size))
  # The count-th smallest noise value is the threshold (ties have probability 0).
  threshold = jnp.sort(noise, axis=-1)[:, count - 1 : count]
  return (noise <= threshold).reshape(shape)


def check_ratio(name: str, ratio: float) -> None:
  if not 0.0 <= ratio <= 1.0:
    raise ValueError(f"{name} must lie in [0, 1], got {ratio}.")


def interpolation_matrix(start: jax.Array, side: jax.Array, size: int, in_size: int) -> jax.Array:
  """`(N, size, in_size)` bilinear resampling matrices for 1-D windows.

  Output index i samples input coordinate `start + i·(side−1)/(size−1)` (the
  grid `linspace(0, side−1, size)` inside the window), with the neighbour
  clamped at the edge. Applying one matrix per axis resizes a crop with two
  small matmuls instead of a gather.
  """
  # Split i·(side−1)/(size−1) into integer and fractional parts with integer
  # arithmetic: float division (which XLA turns into a reciprocal multiply) can
  # land a hair below an integer and pick the wrong neighbour.
  denom = max(size - 1, 1)
  numer = jnp.arange(size, dtype=jnp.int32)[None, :] * (side[:, None].astype(jnp.int32) - 1)
  frac = (numer % denom).astype(jnp.float32) / denom
  lo = jnp.clip(start[:, None].astype(jnp.int32) + numer // denom, 0, in_size - 1)
  hi = jnp.clip(lo + 1, 0, in_size - 1)
  return ((1.0 - frac)[..., None] * jax.nn.one_hot(lo, in_size)
          + frac[..., None] * jax.nn.one_hot(hi, in_size))
