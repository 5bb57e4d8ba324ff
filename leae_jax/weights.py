"""Parameter files: Flax msgpack trees written atomically and read back checked.

One home for what the shipped Fréchet feature nets (`frechet`) and the
pretrained models (`pretrained`) both do with their weights: write the bytes
so that a crash never leaves half a file, record their sha256 beside them, and
on reading refuse — with one line naming the file — bytes that do not match
the recorded digest or a tree that is not the expected one.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Callable

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any


def write_atomic(path: str, payload: bytes) -> None:
  """Writes `payload` to `path` through a temporary file and a rename (never half a file)."""
  tmp = f"{path}.tmp.{os.getpid()}"
  try:
    with open(tmp, "wb") as f:
      f.write(payload)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def to_bytes(tree: PyTree) -> bytes:
  """`tree` (on any device) as Flax msgpack bytes."""
  return flax.serialization.to_bytes(jax.device_get(tree))


def sha256(payload: bytes) -> str:
  return hashlib.sha256(payload).hexdigest()


def read_checked(path: str, digest: str, template: PyTree, *, what: str, recorded_in: str,
                 check: Callable[[PyTree], None] | None = None) -> PyTree:
  """The tree stored at `path`, as jax arrays, if its bytes have sha256 `digest` and its
  structure, shapes and dtypes are `template`'s (e.g. a `jax.eval_shape`).

  Raises ValueError with one line naming `path` and `what` it should hold;
  `recorded_in` names the file that recorded the digest. `check` may raise
  ValueError for further conditions on the restored tree.
  """
  try:
    with open(path, "rb") as f:
      payload = f.read()
  except OSError as err:
    raise ValueError(f"{path}: cannot read the {what} ({err.strerror or err}).") from None
  if sha256(payload) != digest:
    raise ValueError(f"{path}: damaged {what} (sha256 differs from the one in {recorded_in}).")
  try:
    restored = flax.serialization.msgpack_restore(payload)
    if check is not None:
      check(restored)
    if jax.tree.structure(restored) != jax.tree.structure(template):
      raise ValueError("its parameter tree is not the expected one")
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(template)):
      if np.shape(got) != want.shape or np.asarray(got).dtype != want.dtype:
        raise ValueError(f"a parameter of shape {np.shape(got)} where {want.shape} is expected")
    return jax.tree.map(jnp.asarray, restored)
  except Exception as err:  # pylint: disable=broad-except  (msgpack raises many types)
    raise ValueError(f"{path}: damaged {what} ({type(err).__name__}: {err}).") from None
