"""Device mesh and shardings: data parallelism plus optional FSDP-style state sharding.

The mesh has two axes, `('data', 'fsdp')`:

* the global batch is split over *both* axes (every device holds a different
  slice of the batch), so batch statistics, SIGReg and losses are computed by
  XLA over the global batch and equal the single-device numbers;
* parameters, optimizer moments and the EMA judge are split over `fsdp` along
  one dimension of each large enough tensor and replicated over `data`; XLA
  all-gathers them where a convolution needs them whole.

`mesh.fsdp=1` (the default) is plain data parallelism with replicated state.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import ml_collections
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

PyTree = Any
AXES = ("data", "fsdp")
BATCH_AXES = AXES  # the batch dimension is split over every device


def mesh_shape(config: ml_collections.ConfigDict | None, num_devices: int) -> tuple[int, int]:
  """`(data, fsdp)` sizes from a `mesh` config (`data=-1`: all remaining devices).

  Raises ValueError with the device count when the shape cannot fit.
  """
  config = config or ml_collections.ConfigDict()
  data = int(config.get("data", -1))
  fsdp = int(config.get("fsdp", 1))
  if fsdp < 1:
    raise ValueError(f"mesh.fsdp must be >= 1, got {fsdp}.")
  if data == -1:
    if num_devices % fsdp:
      raise ValueError(f"mesh.fsdp={fsdp} does not divide the {num_devices} devices; "
                       f"use a divisor of {num_devices}.")
    data = num_devices // fsdp
  if data < 1 or data * fsdp != num_devices:
    raise ValueError(f"Mesh shape data={data} x fsdp={fsdp} = {data * fsdp} devices does not match "
                     f"the {num_devices} devices available; set mesh.data=-1 or make the product "
                     f"{num_devices}.")
  return data, fsdp


def create_mesh(config: ml_collections.ConfigDict | None = None,
                devices: Sequence[jax.Device] | None = None) -> Mesh:
  """The `('data', 'fsdp')` mesh over `devices` (default: every device of every process)."""
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(config, len(devices))
  if len(devices) == jax.device_count():
    # make_mesh orders devices for the physical topology (TPU ICI, NVLink) and
    # keeps each process's devices together, which make_array_from_process_local_data needs.
    # Auto axes: XLA's partitioner places the intermediate values (pjit model).
    return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto,) * 2, devices=devices)
  return Mesh(np.asarray(devices).reshape(shape), AXES, axis_types=(AxisType.Auto,) * 2)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over all devices."""
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def fsdp_spec(shape: Sequence[int], fsdp: int, min_size: int) -> P:
  """PartitionSpec splitting the largest dimension divisible by `fsdp`, or replicated.

  Tensors with fewer than `min_size` elements stay replicated: gathering them
  costs more than the memory they would save.
  """
  if fsdp == 1 or int(np.prod(shape, dtype=np.int64)) < max(min_size, 1) or not shape:
    return P()
  candidates = [i for i, d in enumerate(shape) if d % fsdp == 0]
  if not candidates:
    return P()
  axis = max(candidates, key=lambda i: (shape[i], -i))
  spec: list[str | None] = [None] * len(shape)
  spec[axis] = "fsdp"
  return P(*spec)


def state_sharding(abstract_state: PyTree, mesh: Mesh, min_size: int) -> PyTree:
  """NamedShardings for every leaf of a (shape-only) state pytree.

  The same rule is applied to parameters and to optimizer moments of the same
  shape, so each moment lives on the device that holds its parameter slice.
  """
  fsdp = mesh.shape["fsdp"]
  return jax.tree_util.tree_map(
      lambda x: NamedSharding(mesh, fsdp_spec(tuple(x.shape), fsdp, min_size)), abstract_state)


def check_batch_size(name: str, size: int, mesh_shape: tuple[int, int], num_processes: int) -> None:
  """Raises ValueError unless `size` splits evenly over the batch shards and processes."""
  shards = int(np.prod(mesh_shape))
  if size % shards:
    raise ValueError(f"{name}={size} is not divisible by the {shards} data shards "
                     f"(mesh data={mesh_shape[0]} x fsdp={mesh_shape[1]}); "
                     f"use a multiple of {shards}.")
  if size % num_processes:
    raise ValueError(f"{name}={size} is not divisible by the {num_processes} processes.")


def check_batch(name: str, size: int, mesh: Mesh) -> None:
  """`check_batch_size` for an existing mesh."""
  check_batch_size(name, size, (mesh.shape["data"], mesh.shape["fsdp"]), jax.process_count())
