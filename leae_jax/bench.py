"""Throughput benchmark: `python -m leae_jax.bench --config=configs/cifar.py [--steps=N]`.

Prints one JSON line:

* `compile_s`: lowering + XLA compilation of the train step;
* `step_ms`, `images_per_s`: steady state, over `--steps` steps dispatched
  back to back (one device sync at the end, as in training), on batches
  already on the device;
* `peak_memory_bytes`: the device allocator's peak where it reports one (GPU,
  TPU), else XLA's buffer assignment for the step (arguments + outputs +
  temporaries − donated aliases); `peak_memory_source` says which;
* `flops_per_step` (XLA's cost analysis of the compiled step), `flops_per_s`
  and `mfu` against the device's peak for the compute dtype (`null` when the
  peak is unknown, e.g. on CPU);
* `input_images_per_s`: the grain input pipeline alone, same config and
  workers (`--noinput` skips it; `--nostep` measures only it); `bound`:
  `input` if it is slower than the step, else `compute`.

When the config's dataset is not prepared (CIFAR-10, CelebA offline), the
pipeline is measured on TFDS mock records of the same shapes
(`input_source: tfds_mock`): it exercises the same grain code, but not the
real image decoding.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from absl import flags
import jax
import ml_collections
import numpy as np
from ml_collections import config_flags

from leae_jax import cli
from leae_jax import data
from leae_jax import models
from leae_jax import train

# Dense peak FLOP/s by device kind and compute dtype (vendor data sheets; GPU
# float32 numbers are the non-tensor-core peaks, as XLA's default f32 convs
# may use TF32 the MFU of a float32 run can exceed what these suggest).
PEAK_FLOPS: dict[str, dict[str, float]] = {
    "H100 SXM": {"bfloat16": 989e12, "float32": 67e12},
    "H100 PCIe": {"bfloat16": 756e12, "float32": 51e12},
    "H100": {"bfloat16": 989e12, "float32": 67e12},
    "H200": {"bfloat16": 989e12, "float32": 67e12},
    "A100": {"bfloat16": 312e12, "float32": 19.5e12},
    "L4": {"bfloat16": 121e12, "float32": 30e12},
    "A10G": {"bfloat16": 70e12, "float32": 31e12},
    "V100": {"bfloat16": 125e12, "float32": 15.7e12},
    "TPU v4": {"bfloat16": 275e12},
    "TPU v5 lite": {"bfloat16": 197e12},
    "TPU v5e": {"bfloat16": 197e12},
    "TPU v5p": {"bfloat16": 459e12},
    "TPU v5": {"bfloat16": 459e12},
    "TPU v6 lite": {"bfloat16": 918e12},
    "TPU v6e": {"bfloat16": 918e12},
}


def peak_flops(device_kind: str, dtype: str) -> float | None:
  """Peak dense FLOP/s of one device of `device_kind` for `dtype`, if known."""
  kind = device_kind.lower()
  # Longest name first, so "H100 PCIe" wins over "H100".
  for name in sorted(PEAK_FLOPS, key=len, reverse=True):
    if name.lower() in kind:
      return PEAK_FLOPS[name].get(dtype)
  return None


def _cost_flops(compiled: Any) -> float | None:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax: one dict per program
    cost = cost[0] if cost else None
  if not cost or "flops" not in cost:
    return None
  return float(cost["flops"])


def _peak_memory(compiled: Any) -> tuple[int | None, str]:
  stats = jax.local_devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return int(stats["peak_bytes_in_use"]), "allocator"
  analysis = compiled.memory_analysis()
  if analysis is None:
    return None, "unknown"
  total = (analysis.argument_size_in_bytes + analysis.output_size_in_bytes
           + analysis.temp_size_in_bytes - analysis.alias_size_in_bytes)
  return int(total), "xla_buffer_assignment"


def measure_train_step(config: ml_collections.ConfigDict, *, steps: int = 20,
                       warmup: int = 2, seed: int = 0) -> dict[str, Any]:
  """Compile time, steady-state step time, FLOPs and memory of the train step."""
  trainer = train.Trainer(config)
  state = trainer.init_state()
  rng = np.random.default_rng(seed)
  local = config.batch_size // jax.process_count()
  shape = (local, *trainer.model.input_shape)
  # A few distinct batches already on the device: the step, not the transfer.
  # uint8 where the run's batches are (prepared records), as training feeds them.
  draw = ((lambda: rng.integers(0, 256, size=shape, dtype=np.uint8)) if trainer.uint8_images
          else (lambda: rng.uniform(size=shape).astype(np.float32)))
  batches = [trainer.global_batch(draw()) for _ in range(4)]
  t0 = time.perf_counter()
  compiled = trainer.train_step.lower(state, batches[0]).compile()
  compile_s = time.perf_counter() - t0
  metrics = None
  for i in range(warmup):
    state, metrics = compiled(state, batches[i % len(batches)])
  jax.block_until_ready((state, metrics))
  t0 = time.perf_counter()
  for i in range(steps):
    state, metrics = compiled(state, batches[i % len(batches)])
  jax.block_until_ready((state, metrics))
  seconds = time.perf_counter() - t0
  flops = _cost_flops(compiled)
  memory, memory_source = _peak_memory(compiled)
  step_s = seconds / max(steps, 1)
  device = jax.devices()[0]
  dtype = str(config.model.dtype)
  peak = peak_flops(device.device_kind, dtype)
  flops_per_s = flops / step_s if flops is not None else None
  return {
      "compile_s": round(compile_s, 3),
      "step_ms": round(step_s * 1e3, 3),
      "images_per_s": round(config.batch_size / step_s, 2),
      "peak_memory_bytes": memory,
      "peak_memory_source": memory_source,
      "flops_per_step": flops,
      "flops_per_s": flops_per_s,
      # FLOPs are of the whole (global) step; peak is per device.
      "mfu": (round(flops_per_s / (peak * jax.device_count()), 4)
              if flops_per_s is not None and peak else None),
      "params": models.count_params(state.params),
      "loss_finite": bool(np.isfinite(float(jax.device_get(metrics["loss"])))),
  }


def measure_input(config: ml_collections.ConfigDict, *, batches: int = 20,
                  warmup: int = 2) -> dict[str, Any]:
  """Images/s of the grain training pipeline alone (this process's share)."""
  source = "tfds"
  if config.prepared_dir is not None:
    source = "prepared"
  elif config.dataset == "shapes":
    source = "generated"
  elif config.dataset == "fashion_mnist" and config.idx_dir:
    source = "idx"
  options = dict(data.config_options(config), download=False)
  if data.image_folder.reads_image_folder(data.dataset_info(config.dataset),
                                          data.SourceOptions(**options)):
    source = "image_folder"
  open_source = lambda: data.get_source(config.dataset, "train", **options)
  context: contextlib.AbstractContextManager = contextlib.nullcontext()
  try:
    records = open_source()
  except data.DatasetUnavailableError as err:
    if config.prepared_dir is not None:
      raise  # says what is wrong with the prepared copy
    try:  # mock records need tensorflow_datasets only, not TensorFlow
      import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise err from None  # already says what to install

    source = "tfds_mock"
    context = tfds.testing.mock_data(num_examples=4096, policy=tfds.testing.MockPolicy.USE_CODE)
    records = None
  with context:
    # The loader training reads (train.Trainer.train_loader), this process's rows.
    loader = data.create_train_loader(
        config.dataset, batch_size=config.batch_size, seed=config.seed,
        epoch_end=config.epoch_end, image_size=config.image_size,
        worker_count=config.num_workers, uint8_images=data.uint8_batches(config),
        source=records if records is not None else open_source())
    rate = loader_images_per_s(loader, batches=batches, warmup=warmup)
  return {"input_images_per_s": round(rate, 2), "input_source": source,
          "num_workers": int(config.num_workers)}


def loader_images_per_s(loader: Any, *, batches: int, warmup: int) -> float:
  """Images/s of a training loader over `batches` batches, after `warmup` (which start
  the workers and open the files)."""
  iterator = iter(loader)
  for _ in range(warmup):
    next(iterator)
  t0 = time.perf_counter()
  images = sum(len(next(iterator)["image"]) for _ in range(batches))
  seconds = time.perf_counter() - t0
  if hasattr(iterator, "close"):
    iterator.close()
  return images / seconds


def run(config: ml_collections.ConfigDict, *, steps: int = 20, input_batches: int = 20,
        measure_pipeline: bool = True, measure_step: bool = True) -> dict[str, Any]:
  """Resolves `config` and returns every benchmark field (see the module docstring).

  Without `measure_step` only the input pipeline is measured (and `bound` is null).
  """
  config = train.resolve(config)
  result: dict[str, Any] = {
      "dataset": config.dataset, "batch_size": int(config.batch_size),
      "image_size": int(config.image_size), "dtype": str(config.model.dtype),
      "device": jax.devices()[0].device_kind, "platform": jax.devices()[0].platform,
      "num_devices": jax.device_count(), "steps": steps,
  }
  if not (measure_step or measure_pipeline):
    raise ValueError("Nothing to measure: enable the step, the input pipeline or both.")
  if measure_step:
    result.update(measure_train_step(config, steps=steps))
  if measure_pipeline:
    result.update(measure_input(config, batches=input_batches))
  else:
    result.update(input_images_per_s=None, input_source=None)
  result["bound"] = None
  if measure_step and measure_pipeline:
    # Per process: each process feeds its own share of the global batch.
    per_process_need = result["images_per_s"] / jax.process_count()
    result["bound"] = "input" if result["input_images_per_s"] < per_process_need else "compute"
  return result


def main(argv):
  del argv  # cli.run rejects positional arguments
  for name in ("steps", "input_batches"):
    if FLAGS[name].value < 1:
      raise cli.UserError(f"--{name}={FLAGS[name].value} is not valid: it must be a positive "
                          "integer.")
  try:  # every check that needs no compilation
    config = train.resolve(FLAGS.config)
  except ValueError as err:
    raise cli.UserError(err) from err
  if not (FLAGS.step or FLAGS.input):
    raise cli.UserError("--nostep --noinput measures nothing: keep at least one.")
  print(json.dumps(run(config, steps=FLAGS.steps, input_batches=FLAGS.input_batches,
                       measure_pipeline=FLAGS.input, measure_step=FLAGS.step)), flush=True)


if __name__ == "__main__":
  FLAGS = flags.FLAGS
  config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/cifar.py.",
                                  lock_config=True)
  flags.DEFINE_integer("steps", 20, "Timed train steps (after 2 warm-up steps).")
  flags.DEFINE_integer("input_batches", 20, "Timed input-pipeline batches.")
  flags.DEFINE_bool("input", True, "Measure the input pipeline.")
  flags.DEFINE_bool("step", True, "Measure the train step.")
  flags.mark_flags_as_required(["config"])
  cli.run(main, user_errors=(data.DatasetUnavailableError,))
