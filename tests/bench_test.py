"""Tests for leae_jax.bench: the JSON line of the CLI, and the peak-FLOPs table."""

import json
import os
import subprocess
import sys

import pytest

from leae_jax import bench

from main_test import ROOT, TINY

FIELDS = ("compile_s", "step_ms", "images_per_s", "peak_memory_bytes", "flops_per_step",
          "flops_per_s", "mfu", "input_images_per_s", "bound")


def test_bench_cli_emits_every_field_for_a_tiny_model():
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
             JAX_THREEFRY_PARTITIONABLE="0")
  proc = subprocess.run(
      [sys.executable, "-m", "leae_jax.bench", "--config=configs/shapes.py", *TINY,
       "--steps=2", "--input_batches=2"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  for field in FIELDS:
    assert field in result, field
  assert result["compile_s"] > 0 and result["step_ms"] > 0
  assert result["images_per_s"] == pytest.approx(16 / result["step_ms"] * 1e3, rel=1e-2)
  assert result["flops_per_step"] > 1e6  # XLA's count for 16 images through the tiny model
  assert result["flops_per_s"] == pytest.approx(result["flops_per_step"] / result["step_ms"] * 1e3,
                                                rel=1e-2)
  assert result["peak_memory_bytes"] > 0
  assert result["mfu"] is None  # CPU: no peak in the table
  assert result["input_images_per_s"] > 0 and result["input_source"] == "generated"
  assert result["bound"] in ("input", "compute")
  assert result["loss_finite"]


def test_peak_flops_table_matches_device_kinds():
  assert bench.peak_flops("NVIDIA H100 80GB HBM3", "bfloat16") == 989e12
  assert bench.peak_flops("NVIDIA H100 PCIe", "bfloat16") == 756e12
  assert bench.peak_flops("NVIDIA A100-SXM4-40GB", "float32") == 19.5e12
  assert bench.peak_flops("TPU v4", "bfloat16") == 275e12
  assert bench.peak_flops("TPU v4", "float32") is None
  assert bench.peak_flops("cpu", "float32") is None
