"""The real train and eval steps of every config lower for GPU and TPU (jax.export, no accelerator).

A CPU-only op, or a host callback left in a step, fails here instead of on
the first GPU or TPU run (tests/export_steps.py does the exporting in a
process with the device count set).
"""

import pytest

import helpers

from export_steps import CONFIGS, ONE_DEVICE_CONFIGS


@pytest.mark.parametrize("devices", [1, 8])
def test_every_config_exports_its_steps_for_cuda_and_tpu(devices):
  out = helpers.run_on_devices("export_steps.py", devices)
  # 8 devices: the 4 × 2 data × fsdp mesh (parameters and moments split over fsdp).
  assert (out["devices"], out["fsdp"]) == (devices, 2 if devices > 1 else 1)
  assert set(out["configs"]) == set(CONFIGS if devices > 1 else ONE_DEVICE_CONFIGS)
  for spec, steps in out["configs"].items():
    for step in ("train_step", "eval_step"):
      assert steps[step]["platforms"] == ["cuda", "tpu"], (spec, step)
      assert steps[step]["devices"] == devices and steps[step]["mlir_chars"] > 0, (spec, step)
  # The check is real: a host callback in a step does not export.
  assert out["callbacks_refused"] == {"pure_callback": True, "debug_print": True}
