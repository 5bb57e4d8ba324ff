"""The ablation ladder runs end to end with a tiny budget."""

import json
import os

import numpy as np

from leae_jax.experiments import ladder

import helpers


def test_ladder_runs_end_to_end_and_writes_the_report(tmp_path):
  idx, empty = tmp_path / "idx", tmp_path / "tfds"
  idx.mkdir(), empty.mkdir()
  rng = np.random.default_rng(0)
  for prefix, n in (("train", 64), ("t10k", 32)):
    helpers.write_idx(idx, prefix, rng.integers(0, 256, (n, 28, 28)), np.arange(n) % 10)
  out = str(tmp_path / "results")
  rungs = ["mse", "crop_step_frozen", "masked_self_teaching", "masked_mse"]
  rows = ladder.run_ladder(out, rungs=rungs, steps=2, batch_size=8, hidden=4, latent_channels=4,
                           probe_train_examples=32, eval_batch_size=16, idx_dir=str(idx),
                           data_dir=str(empty), sigreg_slices=8)
  assert [r["rung"] for r in rows] == rungs
  for r in rows:
    assert np.isfinite(r["psnr"]) and np.isfinite(r["ssim"]) and 0 <= r["probe_accuracy"] <= 1
  report = open(out + ".md").read()
  for rung in rungs:
    assert f"`{rung}`" in report
  assert "The MSE baseline reconstructs" in report and "masked-MSE baseline" in report
  assert os.path.exists(os.path.join(out, "compare.png")) and os.path.exists(os.path.join(out, "curves.png"))
  assert len(json.load(open(os.path.join(out, "results.json")))) == 4
