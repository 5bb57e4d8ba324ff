"""Roofline table per config from XLA's static analyses: no step is run, no clock is read.

  PYTHONPATH=. python benchmarks/roofline.py [--configs SPEC ...] [--mfu 0.4] \\
      [--out /tmp/roofline.md] [--out /tmp/roofline.json]

For each config spec (`base_config.load` syntax; a suffix `@bfloat16` sets
`model.dtype`), at the config's own batch size, this builds the real jitted
train step (`train.Trainer(config).train_step`, with its shardings and its
donated state), lowers it on abstract arguments (`jax.eval_shape` of the
initial state, a `ShapeDtypeStruct` batch) and compiles it for this machine's
CPU. From the compiled step it reads:

* FLOPs and bytes accessed per step: `compiled.cost_analysis()`, i.e. after
  XLA's optimisation passes (fusion above all: a fused elementwise chain reads
  its inputs and writes its output once). `lowered.cost_analysis()` (the
  unoptimised HLO, every op reading and writing memory) is kept in the JSON as
  `lowered_bytes` / `lowered_flops` for comparison; the FLOPs agree within
  0.2 % for float32 (1.6 % for bf16, whose CPU compilation adds converts),
  the unfused bytes are 2–3× higher (for a step over several devices the
  lowered numbers are of the whole program, the compiled ones per device).
  Both are the CPU compilation: a GPU or
  TPU compiler fuses differently (usually more), so the bytes are an estimate
  of HBM traffic, not a measurement of it. XLA:CPU runs bf16 convolutions
  in float32, so a bf16 step's compiled bytes understate what bf16 saves on
  an accelerator (benchmarks/README.md, "Roofline");
* peak memory: `leae_jax.bench._peak_memory`, the same function as the
  benchmark's `xla_buffer_assignment` peak: arguments + outputs + temporaries
  − aliased (the donated state is reused for the new state, so it is counted
  once).

Arithmetic intensity = FLOPs / bytes. Predicted step time on one device of
each kind in `DEVICES` = max(FLOPs / (peak · MFU), bytes / bandwidth): the
bound is `compute` when the first term is larger, `memory` otherwise (the
bandwidth term assumes the full HBM bandwidth, the compute term `--mfu` of the
dense bf16 peak). Images/s = batch / step time.

With `--fsdp_spec` (default: the 36 M masked model, `celeba_masked:latent=512`)
it also compiles that step over simulated CPU devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=N` in a subprocess) for
each `--fsdp_meshes` entry (`DATAxFSDP`) at `--fsdp_batch`, and reports the
per-device memory analysis: arguments (the state shard plus this device's
slice of the batch), outputs, temporaries, aliased, and their peak.

`--out` may be given several times: a path ending in `.json` gets the raw
numbers, any other path the markdown tables (also printed to stdout).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any, Sequence

import jax

from leae_jax import base_config
from leae_jax import bench
from leae_jax import models
from leae_jax.models import layers
from leae_jax import train

# One device of each kind: dense bf16 peak (bench.PEAK_FLOPS, vendor data
# sheets) and HBM bandwidth (H100 SXM5 80 GB: 3.35 TB/s; TPU v4: 1.2 TB/s).
DEVICES: dict[str, dict[str, float]] = {
    "H100 SXM": {"peak_flops": bench.PEAK_FLOPS["H100 SXM"]["bfloat16"], "bandwidth": 3.35e12},
    "TPU v4": {"peak_flops": bench.PEAK_FLOPS["TPU v4"]["bfloat16"], "bandwidth": 1.2e12},
}

DEFAULT_CONFIGS = ("shapes", "fashion_mnist", "cifar", "cifar:mse", "cifar@bfloat16", "celeba",
                   "celeba_masked", "celeba_masked:latent=512",
                   "celeba_masked:latent=512@bfloat16")
DEFAULT_FSDP_SPEC = "celeba_masked:latent=512"
DEFAULT_FSDP_MESHES = ("8x1", "2x4", "1x8")


def predict(flops: float, bytes_accessed: float, peak_flops: float, bandwidth: float,
            mfu: float) -> dict[str, Any]:
  """Roofline step time: max(FLOPs / (peak · MFU), bytes / bandwidth), and which bound applies.

  Returns `seconds`, `compute_s`, `memory_s` and `bound` (`compute` or `memory`;
  a tie counts as compute).
  """
  if not 0 < mfu <= 1:
    raise ValueError(f"mfu must be in (0, 1], got {mfu}.")
  if peak_flops <= 0 or bandwidth <= 0:
    raise ValueError("peak_flops and bandwidth must be positive.")
  compute_s = flops / (peak_flops * mfu)
  memory_s = bytes_accessed / bandwidth
  bound = "compute" if compute_s >= memory_s else "memory"
  return {"seconds": max(compute_s, memory_s), "compute_s": compute_s, "memory_s": memory_s,
          "bound": bound}


def ridge_point(peak_flops: float, bandwidth: float, mfu: float) -> float:
  """Arithmetic intensity (FLOP/byte) above which a step is compute-bound at this MFU."""
  return peak_flops * mfu / bandwidth


def parse_spec(entry: str) -> tuple[str, str | None]:
  """`'cifar:mse@bfloat16'` → `('cifar:mse', 'bfloat16')`; no suffix → the config's dtype."""
  spec, _, dtype = entry.partition("@")
  return spec, (dtype or None)


def build_config(entry: str, *, batch_size: int | None = None,
                 mesh: tuple[int, int] | None = None):
  """The resolved config of `entry` (num_train_steps set, so no dataset size is needed)."""
  spec, dtype = parse_spec(entry)
  config = base_config.load(spec)
  config.num_train_steps = 10
  if dtype:
    config.model.dtype = dtype
  if batch_size:
    config.batch_size = batch_size
  if mesh:
    config.mesh.data, config.mesh.fsdp = mesh
  return train.resolve(config)


def _cost(analysis: Any) -> dict[str, float]:
  if isinstance(analysis, (list, tuple)):  # older jax: one dict per program
    analysis = analysis[0] if analysis else {}
  analysis = analysis or {}
  return {"flops": float(analysis.get("flops", float("nan"))),
          "bytes": float(analysis.get("bytes accessed", float("nan"))),
          "transcendentals": float(analysis.get("transcendentals", float("nan")))}


def analyse(entry: str, *, batch_size: int | None = None,
            mesh: tuple[int, int] | None = None) -> dict[str, Any]:
  """Lowers and compiles the train step of `entry`; its static costs and memory (per device)."""
  config = build_config(entry, batch_size=batch_size, mesh=mesh)
  trainer = train.Trainer(config)
  state, images = trainer.abstract_step_args()
  lowered = trainer.train_step.lower(state, images)
  lowered_cost = _cost(lowered.cost_analysis())
  compiled = lowered.compile()
  cost = _cost(compiled.cost_analysis())
  peak, source = bench._peak_memory(compiled)  # pylint: disable=protected-access
  if source != "xla_buffer_assignment":
    raise RuntimeError(f"Expected XLA's buffer assignment for the peak, got {source!r}.")
  memory = compiled.memory_analysis()
  return {
      "spec": entry, "dtype": str(config.model.dtype), "batch_size": int(config.batch_size),
      "image_size": int(config.image_size), "params": models.count_params(state.params),
      "mesh": dict(trainer.mesh.shape), "devices": int(trainer.mesh.size),
      "flops": cost["flops"], "bytes": cost["bytes"],
      "transcendentals": cost["transcendentals"],
      "lowered_flops": lowered_cost["flops"], "lowered_bytes": lowered_cost["bytes"],
      "peak_memory_bytes": peak,
      "argument_bytes": int(memory.argument_size_in_bytes),
      "output_bytes": int(memory.output_size_in_bytes),
      "temp_bytes": int(memory.temp_size_in_bytes),
      "alias_bytes": int(memory.alias_size_in_bytes),
  }


def add_predictions(row: dict[str, Any], mfu: float) -> dict[str, Any]:
  """`row` with intensity and, per device kind, predicted ms/step, images/s and bound."""
  row = dict(row, intensity=row["flops"] / row["bytes"])
  for name, device in DEVICES.items():
    p = predict(row["flops"], row["bytes"], device["peak_flops"], device["bandwidth"], mfu)
    row[name] = {"ms_per_step": p["seconds"] * 1e3, "images_per_s": row["batch_size"] / p["seconds"],
                 "bound": p["bound"], "compute_ms": p["compute_s"] * 1e3,
                 "memory_ms": p["memory_s"] * 1e3}
  return row


def _parse_mesh(text: str) -> tuple[int, int]:
  data, _, fsdp = text.lower().partition("x")
  try:
    return int(data), int(fsdp)
  except ValueError:
    raise argparse.ArgumentTypeError(f"mesh {text!r} is not DATAxFSDP, e.g. 2x4.") from None


def fsdp_rows(spec: str, batch_size: int, meshes: Sequence[tuple[int, int]]) -> list[dict]:
  """Runs the mesh comparison in a subprocess with simulated CPU devices; its rows."""
  counts = {d * f for d, f in meshes}
  if len(counts) != 1:
    raise ValueError(f"Every mesh must span the same number of devices, got {sorted(counts)}.")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                      f" --xla_force_host_platform_device_count={counts.pop()}").strip()
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
  cmd = [sys.executable, os.path.abspath(__file__), "--fsdp_worker", "--fsdp_spec", spec,
         "--fsdp_batch", str(batch_size), "--fsdp_meshes", *[f"{d}x{f}" for d, f in meshes]]
  proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
  if proc.returncode:
    raise RuntimeError(f"fsdp worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def _gb(x: float) -> str:
  return f"{x / 1e9:.2f}"


def _mb(x: float) -> str:
  return f"{x / 2**20:,.0f}"


def _count(n: int) -> str:
  return f"{n / 1e6:.2f} M"


def markdown(rows: list[dict], fsdp: list[dict] | None, mfu: float) -> str:
  """The tables of the README section."""
  names = list(DEVICES)
  head = ("| config | dtype | params | batch | GFLOP/step | GB/step | FLOP/byte | "
          + " | ".join(f"{n}: ms/step (bound) | {n}: images/s" for n in names)
          + " | peak memory (MiB) |")
  lines = [head, "|" + "---|" * (head.count("|") - 1)]
  for r in rows:
    cells = [f"`{parse_spec(r['spec'])[0]}`", r["dtype"], _count(r["params"]), str(r["batch_size"]),
             f"{r['flops'] / 1e9:,.1f}", _gb(r["bytes"]), f"{r['intensity']:.1f}"]
    for n in names:
      cells += [f"{r[n]['ms_per_step']:.3g} ({r[n]['bound']})", f"{r[n]['images_per_s']:,.0f}"]
    cells.append(_mb(r["peak_memory_bytes"]))
    lines.append("| " + " | ".join(cells) + " |")
  ridges = ", ".join(f"{n} {ridge_point(d['peak_flops'], d['bandwidth'], mfu):.0f} FLOP/byte"
                     f" ({d['peak_flops'] / 1e12:g} TFLOP/s bf16 × {mfu:g}, "
                     f"{d['bandwidth'] / 1e12:g} TB/s)" for n, d in DEVICES.items())
  lines += ["", f"Ridge points at MFU {mfu:g}: {ridges}."]
  if fsdp:
    lines += ["", "| mesh (data × fsdp) | batch per device | arguments (MiB) | outputs (MiB) | "
              "temporaries (MiB) | aliased (MiB) | peak per device (MiB) | GFLOP per device |",
              "|---|---|---|---|---|---|---|---|"]
    for r in fsdp:
      m = r["mesh"]
      lines.append(f"| {m['data']} × {m['fsdp']} | {r['batch_size'] // r['devices']} | "
                   f"{_mb(r['argument_bytes'])} | {_mb(r['output_bytes'])} | "
                   f"{_mb(r['temp_bytes'])} | {_mb(r['alias_bytes'])} | "
                   f"{_mb(r['peak_memory_bytes'])} | {r['flops'] / 1e9:,.1f} |")
  return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS),
                      help="Config specs (base_config.load syntax), optional @DTYPE suffix.")
  parser.add_argument("--mfu", type=float, default=0.4, help="Fraction of the bf16 peak reached.")
  parser.add_argument("--out", action="append", default=[],
                      help="Output path: .json gets the raw numbers, anything else markdown.")
  parser.add_argument("--fsdp_spec", default=DEFAULT_FSDP_SPEC,
                      help="Config of the fsdp memory comparison ('' skips it).")
  parser.add_argument("--fsdp_batch", type=int, default=128)
  parser.add_argument("--fsdp_meshes", nargs="+", type=_parse_mesh,
                      default=[_parse_mesh(m) for m in DEFAULT_FSDP_MESHES])
  parser.add_argument("--fsdp_worker", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if not 0 < args.mfu <= 1:
    parser.error(f"--mfu={args.mfu} must be in (0, 1].")
  # Static analysis of the CPU compilation (never an accelerator), and of the
  # optimised step: the test suite's JAX_DISABLE_MOST_OPTIMIZATIONS would skip
  # the fusion passes and inflate the bytes accessed.
  jax.config.update("jax_platforms", "cpu")
  jax.config.update("jax_disable_most_optimizations", False)
  # The accelerators' step: `layers.conv2d` sums kernel gradients over batch
  # chunks on CPU only; GPU and TPU lower XLA's one-piece gradient, so analyse that.
  layers.KERNEL_GRAD_CHUNK = 0

  if args.fsdp_worker:
    rows = []
    for mesh in args.fsdp_meshes:
      rows.append(analyse(args.fsdp_spec, batch_size=args.fsdp_batch, mesh=mesh))
      print(f"fsdp {mesh}: done", file=sys.stderr, flush=True)
    print(json.dumps(rows), flush=True)
    return

  if jax.device_count() != 1:
    parser.error(f"The table is of one device; this process sees {jax.device_count()} "
                 "(unset --xla_force_host_platform_device_count).")
  rows = []
  for entry in args.configs:
    rows.append(add_predictions(analyse(entry), args.mfu))
    print(f"{entry}: done", file=sys.stderr, flush=True)
  fsdp = (fsdp_rows(args.fsdp_spec, args.fsdp_batch, args.fsdp_meshes)
          if args.fsdp_spec else None)
  text = markdown(rows, fsdp, args.mfu)
  result = {"mfu": args.mfu, "devices": DEVICES, "jax": jax.__version__, "rows": rows,
            "fsdp": fsdp, "fsdp_spec": args.fsdp_spec or None}
  for path in args.out:
    with open(path, "w", encoding="utf-8") as f:
      if path.endswith(".json"):
        json.dump(result, f, indent=1)
        f.write("\n")
      else:
        f.write(text)
  print(text, flush=True)


if __name__ == "__main__":
  main()
