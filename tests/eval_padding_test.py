"""Evaluation on any number of devices and processes gives the numbers of one device.

Evaluation keeps global batches of exactly `eval_batch_size` (R) real test
images and pads each to a multiple of the devices × processes
(`data.create_eval_loader`); `Trainer.evaluate` weights the padding 0 and
computes the batch-statistics dependent objective parts on the R real images
only. Checked here: the loader's layout for any shard count, the metrics of
one state on 1, 3 and 8 simulated devices (`eval_devices.py`), and the
8-device command of docs/scaling.md with the default eval_batch_size of 500. The
two-process case is in `multihost_test.py`.
"""

import json

import numpy as np
import pytest

from leae_jax import data

import helpers
from main_test import run_main

EIGHT_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
PER_IMAGE = ("mse", "psnr", "ssim", "masked_psnr", "hole_psnr")


def _global_batches(num_records, batch_size, multiple, shards):
  """Each global batch as the shards' loads put side by side (process order)."""
  loaders = [data.create_eval_loader("shapes", "test", batch_size=batch_size, multiple=multiple,
                                     shard_index=p, shard_count=shards, num_records=num_records,
                                     image_size=16)
             for p in range(shards)]
  per_shard = [list(loader) for loader in loaders]
  assert len({len(b) for b in per_shard}) == 1
  return [{k: np.concatenate([batches[b][k] for batches in per_shard]) for k in per_shard[0][b]}
          for b in range(len(per_shard[0]))], loaders[0]


@pytest.mark.parametrize("multiple, shards", [(1, 1), (3, 1), (8, 1), (4, 2), (6, 2), (8, 2), (9, 3)])
def test_eval_batches_hold_the_same_real_records_then_padding(multiple, shards):
  # 23 records in batches of 10: 10 + 10 + 3 real records, in split order,
  # whatever the number of slots (10 rounded up to the multiple) and of shards.
  n, r = 23, 10
  source = data.get_source("shapes", "test", num_records=n, image_size=16)
  batches, loader = _global_batches(n, r, multiple, shards)
  slots = data.eval_slots(r, multiple)
  assert slots % multiple == 0 and r <= slots < r + multiple
  assert loader.slots == slots and loader.num_batches == len(batches) == 3
  for b, batch in enumerate(batches):
    real = min(r, n - b * r)
    assert batch["image"].shape == (slots, 16, 16, 1)
    # Real records first, padding (weight 0) at the end of every global batch.
    np.testing.assert_array_equal(batch["valid"], np.arange(slots) < real)
    want = [source[b * r + i] for i in range(real)]
    np.testing.assert_array_equal(batch["image"][:real], np.stack([w["image"] for w in want]))
    np.testing.assert_array_equal(batch["label"][:real], [w["label"] for w in want])
    # Padding repeats the batch's last real record: ordinary images, no NaN.
    np.testing.assert_array_equal(batch["image"][real:],
                                  np.broadcast_to(want[-1]["image"], (slots - real, 16, 16, 1)))


def test_eval_loader_limits_batches_and_rejects_uneven_shards():
  loader = data.create_eval_loader("shapes", "test", batch_size=10, multiple=4, max_batches=2,
                                   num_records=23, image_size=16, shard_index=0, shard_count=1)
  assert len(loader) == 2 and [len(b["valid"]) for b in loader] == [12, 12]
  with pytest.raises(ValueError, match="multiple=3 must be a positive multiple of the 2 shards"):
    data.create_eval_loader("shapes", "test", batch_size=10, multiple=3, num_records=23,
                            shard_index=0, shard_count=2)


def test_evaluation_on_1_3_8_devices_equals_one_device():
  # tests/eval_devices.py: one (once-trained) masked_self_teaching state,
  # evaluated on meshes of 1, 3 and 8 simulated CPU devices over a test split
  # of 23 images in batches of 10 (padded to 12 and 16 slots).
  out = helpers.run_on_devices("eval_devices.py", 8)
  ref = out["1"]
  assert (ref["slots"], out["3"]["slots"], out["8"]["slots"]) == (10, 12, 16)
  assert set(PER_IMAGE) | {"loss", "consistency", "sigreg", "num_images"} <= set(ref["metrics"])
  for count in ("1", "3", "8"):
    got = out[count]
    assert got["metrics"]["num_images"] == 23
    assert set(got["metrics"]) == set(ref["metrics"])
    for key, want in ref["metrics"].items():
      if key in PER_IMAGE:
        # Float32 rounding of each image's value (the devices run different
        # batch sizes); SSIM's mean is near 0 here, so its floor is absolute.
        np.testing.assert_allclose(got["metrics"][key], want, rtol=1e-6,
                                   atol=1e-6 if key == "ssim" else 0, err_msg=(count, key))
      else:  # objective parts: batch statistics reduced over the devices
        np.testing.assert_allclose(got["metrics"][key], want, rtol=1e-5, err_msg=(count, key))
    # Codes and labels of exactly the 23 test images, in split order, no padding.
    assert got["labels"] == got["split_labels"] == out["split_labels"]
    np.testing.assert_allclose(got["codes"], ref["codes"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["split_codes"], ref["codes"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["first_codes"], ref["codes"][:12], rtol=1e-5, atol=1e-6)
    # The grid (num_grid_images=12) shows the 10 real images of the first batch only.
    assert {k: np.shape(v)[0] for k, v in got["shown"].items()} == {
        "images": 10, "reconstruction": 10, "masked_input": 10, "masked_reconstruction": 10}
    np.testing.assert_array_equal(got["shown"]["images"], out["split_images"])


def test_readme_eight_device_run_with_default_eval_batch_size(tmp_path):
  # The case of docs/scaling.md: configs/shapes.py on 8 devices with batch 64 and the
  # config's eval_batch_size of 500 (not a multiple of 8: padded to 504).
  proc = run_main("--config=configs/shapes.py", f"--workdir={tmp_path}",
                  "--config.batch_size=64", "--config.num_train_steps=2",
                  "--config.log_every_steps=1", "--config.model.hidden=8",
                  "--config.model.latent_channels=4", "--config.objective.sigreg_slices=16",
                  "--config.progress_bar=false", env=EIGHT_DEVICES, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  config = json.load(open(tmp_path / "config.json"))
  assert config["eval_batch_size"] == 500
  assert any(l.startswith("eval @ 2") for l in proc.stdout.splitlines()), proc.stdout[-2000:]
  records = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  results = next(r for r in records if "eval/psnr" in r)
  assert results["step"] == 2 and results["eval/num_images"] == 2000, results
  assert all(np.isfinite(v) for v in results.values()), results
