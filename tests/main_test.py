"""End-to-end tests of the command line (`python -m leae_jax.main`) in real processes."""

import json
import os
import subprocess
import sys

import numpy as np

import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--config.model.hidden=8", "--config.model.latent_channels=4",
        "--config.objective.sigreg_slices=16", "--config.batch_size=16",
        "--config.eval_batch_size=8", "--config.progress_bar=false"]


def run_main(*args, timeout=300, env=None, module="leae_jax.main"):
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
             JAX_THREEFRY_PARTITIONABLE="0", **(env or {}))
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


def last_line(stderr: str) -> str:
  lines = [l for l in stderr.strip().splitlines() if l.strip()]
  return lines[-1] if lines else ""


def test_shapes_run_writes_config_metrics_events_and_grids(tmp_path):
  workdir = tmp_path / "run"
  proc = run_main("--config=configs/shapes.py", f"--workdir={workdir}", *TINY,
                  "--config.num_train_steps=6", "--config.log_every_steps=3",
                  "--config.eval_every_steps=6", "--config.eval_batches=2")
  assert proc.returncode == 0, proc.stderr[-3000:]
  # The console: a header, a line per evaluation, a closing summary; logs in the workdir.
  out = proc.stdout.strip().splitlines()
  assert len(out) == 3, proc.stdout
  assert out[0].startswith("configs/shapes.py · shapes 28px · self_teaching (pixel_mask, live judge")
  assert "params · 1 cpu device · 6 steps of 16 · workdir" in out[0]
  assert out[1].startswith("eval @ 6: PSNR ") and " dB · SSIM " in out[1]
  assert out[2].startswith("done at step 6 in ") and f"results in {workdir}: metrics.jsonl" in out[2]
  assert out[2].endswith("loss_curves.png, checkpoints/, logs/")
  assert proc.stderr.strip() == "", proc.stderr[-2000:]  # no library log on the console
  logs = os.listdir(workdir / "logs")
  assert any(f.startswith("leae.") and "INFO" in f for f in logs), logs
  log_text = open(workdir / "logs" / "leae.INFO").read()
  assert "Resolved config" in log_text and "orbax" in log_text.lower()
  config = json.load(open(workdir / "config.json"))
  assert config["dataset"] == "shapes" and config["num_train_steps"] == 6
  records = [json.loads(l) for l in open(workdir / "metrics.jsonl")]
  train_records = [r for r in records if "train/loss" in r]
  assert [r["step"] for r in train_records] == [3, 6]
  for r in train_records:
    assert all(np.isfinite(r[k]) for k in ("train/loss", "train/latent_agreement", "train/sigreg",
                                          "train/images_per_s"))
  eval_record = next(r for r in records if "eval/psnr" in r)
  assert eval_record["step"] == 6 and eval_record["eval/num_images"] == 16
  files = os.listdir(workdir)
  assert any(f.startswith("events.out.tfevents") for f in files)
  assert "eval_grid_00000006.png" in files and "loss_curves.png" in files
  from PIL import Image
  grid = Image.open(workdir / "eval_grid_00000006.png")
  assert grid.size[0] >= 256  # enlarged to be legible

  # `python -m leae_jax.evaluate` on that run prints one JSON object, the same
  # as the eval_6.json it writes, whose metrics are those the training run
  # logged at step 6 (same state, same two test batches).
  proc = run_main(f"--workdir={workdir}", "--eval_batches=2", "--probe=false",
                  module="leae_jax.evaluate")
  assert proc.returncode == 0, proc.stderr[-3000:]
  printed = json.loads(proc.stdout.strip().splitlines()[-1])
  assert printed == json.load(open(workdir / "eval_6.json"))
  assert printed["step"] == 6 and printed["num_images"] == 16
  assert printed["judge"] == config["objective"]["judge"]
  for key in ("psnr", "mse", "ssim", "loss", "latent_agreement", "sigreg"):
    np.testing.assert_allclose(printed[key], eval_record[f"eval/{key}"], rtol=1e-5, err_msg=key)
  assert os.path.exists(printed["spectrum_png"]) and os.path.exists(printed["pca_png"])
  # ...and a directory that is no run is a one-line error.
  proc = run_main(f"--workdir={tmp_path / 'nothing'}", module="leae_jax.evaluate")
  assert proc.returncode != 0 and "Traceback" not in proc.stderr
  assert last_line(proc.stderr).startswith("error: ") and "config.json not found" in proc.stderr


def test_non_finite_loss_is_a_one_line_error_naming_the_step_and_every_part(tmp_path):
  # NaN injected at step 4; logging every 3 steps would only see it at step 6,
  # so the check before the milestone save at step 5 stops the run.
  workdir = tmp_path / "run"
  proc = run_main("--config=configs/shapes.py", f"--workdir={workdir}", *TINY,
                  "--config.num_train_steps=6", "--config.log_every_steps=3",
                  "--config.eval_every_steps=0", "--config.debug_nan_step=4")
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr
  line = last_line(proc.stderr)
  assert line.startswith("error: Non-finite loss at step 4: "), proc.stderr[-2000:]
  parts = dict(p.split("=") for p in line.split(": ", 2)[2].split(". ")[0].split(", "))
  objective = json.load(open(workdir / "config.json"))["objective"]
  views = [f"agree/{v}" for v in objective["views"].split(",") if v]
  views += ["agree/plain"] if objective["plain_weight"] > 0 else []
  assert views and set(parts) == {*views, "grad_norm", "latent_agreement", "learning_rate",
                                  "loss", "sigreg"}, line
  assert parts["loss"] == "nan" and np.isfinite(float(parts["latent_agreement"]))
  saved = sorted(int(n) for n in os.listdir(workdir / "checkpoints") if n.isdigit())
  assert saved and max(saved) == 4  # the bad state was never saved


def test_fashion_mnist_runs_offline_from_idx_files(tmp_path):
  idx_dir, empty = tmp_path / "idx", tmp_path / "tfds"
  idx_dir.mkdir(), empty.mkdir()
  rng = np.random.default_rng(0)
  for prefix, n in (("train", 40), ("t10k", 20)):
    helpers.write_idx(idx_dir, prefix, rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n))
  workdir = tmp_path / "run"
  proc = run_main("--config=configs/fashion_mnist.py", f"--workdir={workdir}", *TINY,
                  f"--config.idx_dir={idx_dir}", f"--config.data_dir={empty}",
                  "--config.num_train_steps=4", "--config.log_every_steps=2",
                  "--config.eval_every_steps=4")
  assert proc.returncode == 0, proc.stderr[-3000:]
  records = [json.loads(l) for l in open(workdir / "metrics.jsonl")]
  eval_record = next(r for r in records if "eval/psnr" in r)
  assert eval_record["eval/num_images"] == 20  # 8 + 8 + 4 (padded), each counted once
  assert np.isfinite(eval_record["eval/psnr"])


def test_moving_the_log_to_the_next_workdir_closes_the_previous_file(tmp_path):
  # The experiments train many runs in one process, each logging into its own
  # workdir: the file left behind is closed (absl's switch alone leaves it open).
  from absl import logging as absl_logging

  from leae_jax import cli
  handler = absl_logging.get_absl_handler().python_handler
  saved = handler.stream
  try:
    seen = []
    logged = cli.logging_to_each_workdir(
        lambda config, workdir: seen.append((config, handler.stream)) or workdir, name="t")
    assert logged("c1", str(tmp_path / "a")) == str(tmp_path / "a")
    logged("c2", str(tmp_path / "b"))
    (_, first), (_, second) = seen
    assert first.closed and not second.closed
    assert os.path.realpath(first.name).startswith(str(tmp_path / "a" / "logs"))
    assert os.path.realpath(second.name).startswith(str(tmp_path / "b" / "logs"))
  finally:
    if handler.stream is not saved:
      handler.stream.close()
    handler.stream = saved
