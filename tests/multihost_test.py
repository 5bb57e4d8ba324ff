"""Two processes on 127.0.0.1 (gloo collectives) through launch/local_multiprocess.sh."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np

from main_test import ROOT, TINY, run_main

ARGS = [*TINY, "--config.num_train_steps=6", "--config.log_every_steps=1",
        "--config.checkpoint_every_steps=3", "--config.eval_every_steps=6",
        "--config.eval_batches=2"]


def _records(workdir) -> dict[int, dict]:
  by_step: dict[int, dict] = {}
  for line in open(os.path.join(workdir, "metrics.jsonl")):
    r = json.loads(line)
    by_step.setdefault(r["step"], {}).update(r)
  return by_step


def _losses(records, steps):
  return np.array([records[s]["train/loss"] for s in steps])


def test_two_processes_match_one_and_checkpoints_move_between_them(tmp_path):
  multi = tmp_path / "two_processes"
  env = dict(os.environ, PYTHON=sys.executable, JAX_THREEFRY_PARTITIONABLE="0",
             PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  proc = subprocess.run([os.path.join(ROOT, "launch", "local_multiprocess.sh"), "2",
                         "configs/shapes.py", str(multi), *ARGS],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
  for i in range(2):
    log = open(multi / "logs" / f"process_{i}.log").read()
    # Each process loads half of every global batch of 16.
    assert f"Process {i} of 2 loads 8 images of every global batch of 16" in log, log[-2000:]

  single = tmp_path / "one_process"
  proc = run_main("--config=configs/shapes.py", f"--workdir={single}", *ARGS)
  assert proc.returncode == 0, proc.stderr[-3000:]

  steps = range(1, 7)
  multi_records, single_records = _records(multi), _records(single)
  np.testing.assert_allclose(_losses(multi_records, steps), _losses(single_records, steps),
                             rtol=1e-5, atol=1e-6)
  for key in ("eval/psnr", "eval/loss"):
    np.testing.assert_allclose(multi_records[6][key], single_records[6][key], rtol=1e-5)

  # Resume the two-process run in one process from its step-4 checkpoint:
  # steps 5 and 6 must reproduce the uninterrupted runs.
  resumed = tmp_path / "resumed"
  shutil.copytree(multi, resumed)
  for step in (5, 6):
    shutil.rmtree(resumed / "checkpoints" / str(step))
  proc = run_main("--config=configs/shapes.py", f"--workdir={resumed}", *ARGS)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Resuming from the checkpoint at step 4" in proc.stdout
  resumed_records = _records(resumed)
  np.testing.assert_allclose(_losses(resumed_records, [5, 6]), _losses(single_records, [5, 6]),
                             rtol=1e-5, atol=1e-6)
