"""Tests for benchmarks/roofline.py's arithmetic (no compilation): the roofline prediction."""

import importlib.util
import os

import pytest

_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "benchmarks",
                     "roofline.py")
_SPEC = importlib.util.spec_from_file_location("roofline", _PATH)
roofline = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(roofline)


def test_compute_bound_step_takes_flops_over_peak_times_mfu():
  # 1e12 FLOP at 40 % of 1e15 FLOP/s = 2.5 ms; 1e9 bytes at 1e12 B/s = 1 ms.
  p = roofline.predict(1e12, 1e9, peak_flops=1e15, bandwidth=1e12, mfu=0.4)
  assert p["bound"] == "compute"
  assert p["seconds"] == pytest.approx(2.5e-3)
  assert p["compute_s"] == pytest.approx(2.5e-3) and p["memory_s"] == pytest.approx(1e-3)


def test_memory_bound_step_takes_bytes_over_bandwidth():
  # 1e11 FLOP → 0.25 ms of compute; 3e9 bytes at 1e12 B/s = 3 ms.
  p = roofline.predict(1e11, 3e9, peak_flops=1e15, bandwidth=1e12, mfu=0.4)
  assert p["bound"] == "memory"
  assert p["seconds"] == pytest.approx(3e-3)


def test_ridge_point_separates_the_two_bounds():
  ridge = roofline.ridge_point(1e15, 1e12, 0.4)
  assert ridge == pytest.approx(400.0)
  for intensity, bound in ((ridge * 1.01, "compute"), (ridge * 0.99, "memory")):
    assert roofline.predict(intensity * 1e9, 1e9, 1e15, 1e12, 0.4)["bound"] == bound


def test_rows_get_images_per_second_for_each_device():
  row = roofline.add_predictions({"flops": 989e12 * 0.4 * 1e-3, "bytes": 1e6, "batch_size": 100},
                                 mfu=0.4)
  h100 = row["H100 SXM"]  # exactly 1 ms of compute at 40 % of 989 TFLOP/s
  assert h100["bound"] == "compute"
  assert h100["ms_per_step"] == pytest.approx(1.0) and h100["images_per_s"] == pytest.approx(1e5)
  assert row["TPU v4"]["ms_per_step"] == pytest.approx(989 / 275)
  assert row["intensity"] == pytest.approx(989e12 * 0.4 * 1e-3 / 1e6)


@pytest.mark.parametrize("mfu", [0.0, -0.1, 1.5])
def test_invalid_mfu_is_refused(mfu):
  with pytest.raises(ValueError, match="mfu"):
    roofline.predict(1.0, 1.0, 1.0, 1.0, mfu)


def test_spec_suffix_sets_the_dtype():
  assert roofline.parse_spec("celeba_masked:latent=512@bfloat16") == ("celeba_masked:latent=512",
                                                                      "bfloat16")
  assert roofline.parse_spec("cifar:mse") == ("cifar:mse", None)
