"""Two processes on 127.0.0.1 (gloo collectives) through launch/local_multiprocess.sh."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from main_test import ROOT, TINY, run_main

# Evaluation on the whole test split (2000 shapes) in batches of 1333, which 2
# processes cannot split: each global batch is padded to 1334 slots (667 a
# process), and the last one (667 real images) leaves process 1 nothing but
# padding.
ARGS = [*TINY, "--config.num_train_steps=6", "--config.log_every_steps=1",
        "--config.checkpoint_every_steps=3", "--config.eval_every_steps=6",
        "--config.eval_batch_size=1333", "--config.eval_batches=-1"]
PER_IMAGE = ("mse", "psnr", "ssim")


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
  # The consoles (the script's per-process files) and each process's library log.
  logs = [open(multi / "logs" / f"process_{i}.log").read() for i in range(2)]
  library = [open(multi / "logs" / f"leae_process{i}.INFO").read() for i in range(2)]
  for i, log in enumerate(library):
    # Each process loads half of every global batch of 16.
    assert f"Process {i} of 2 loads 8 images of every global batch of 16" in log, log[-2000:]
  # Only process 0 writes logs, events, images and progress: one metrics record
  # per logged step and kind, one TensorBoard file, console lines from process 0 only.
  lines = [json.loads(l) for l in open(multi / "metrics.jsonl")]
  train_steps = [r["step"] for r in lines if "train/loss" in r]
  assert train_steps == list(range(1, 7)), train_steps
  assert [r["step"] for r in lines if "eval/psnr" in r] == [6]
  assert len([f for f in os.listdir(multi) if f.startswith("events.out.tfevents")]) == 1
  assert {"config.json", "loss_curves.png", "eval_grid_00000006.png"} <= set(os.listdir(multi))
  assert "eval @ 6" in logs[0] and "eval @ 6" not in logs[1]
  assert "Resolved config" in library[0] and "Resolved config" not in library[1]

  multi_records = _records(multi)
  assert multi_records[6]["eval/num_images"] == 2000

  # The two processes' evaluation of their step-6 state equals one process's
  # evaluation of the same state (its checkpoint): per-image metrics to
  # float32 rounding, objective parts (batch statistics over the 1333 real
  # images of the full batch, reduced across processes) to 1e-5.
  proc = run_main(f"--workdir={multi}", "--probe=false", module="leae_jax.evaluate")
  assert proc.returncode == 0, proc.stderr[-3000:]
  one = json.loads(proc.stdout.strip().splitlines()[-1])
  assert one["step"] == 6 and one["num_images"] == 2000
  logged = {k[len("eval/"):]: v for k, v in multi_records[6].items() if k.startswith("eval/")}
  assert {*PER_IMAGE, "loss", "latent_agreement", "sigreg"} <= set(logged)
  for key, value in logged.items():
    np.testing.assert_allclose(value, one[key], rtol=1e-6 if key in PER_IMAGE else 1e-5,
                               err_msg=key)

  # Resume the two-process run in one process from its step-4 checkpoint: steps
  # 5 and 6 (one process loading the whole global batch) reproduce the two
  # processes' steps, which would differ if the processes split the data wrongly.
  resumed = tmp_path / "resumed"
  shutil.copytree(multi, resumed)
  for step in (5, 6):
    shutil.rmtree(resumed / "checkpoints" / str(step))
  proc = run_main("--config=configs/shapes.py", f"--workdir={resumed}", *ARGS,
                  "--config.eval_batches=1")  # its evaluation is not checked: keep it short
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "resuming at step 4" in proc.stdout.splitlines()[0], proc.stdout
  np.testing.assert_allclose(_losses(_records(resumed), [5, 6]), _losses(multi_records, [5, 6]),
                             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sig,message,codes", [
    (signal.SIGTERM, r"SIGTERM: saved a checkpoint at step (\d+)", (0,)),
    # Ctrl-C on one host: it becomes that process's SIGTERM, which the runtime
    # agrees on; that process exits 130, the others as preempted (0).
    (signal.SIGINT, r"interrupted \(Ctrl-C\) at step (\d+); saved", (0, 130)),
])
def test_a_stop_signal_to_one_process_saves_the_same_step_on_all(tmp_path, sig, message, codes):
  workdir = tmp_path / "preempted"
  env = dict(os.environ, PYTHON=sys.executable, JAX_THREEFRY_PARTITIONABLE="0",
             PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  args = [*TINY, "--config.num_train_steps=100000", "--config.log_every_steps=5",
          "--config.checkpoint_every_steps=100000", "--config.eval_every_steps=0"]
  proc = subprocess.Popen([os.path.join(ROOT, "launch", "local_multiprocess.sh"), "2",
                           "configs/shapes.py", str(workdir), *args],
                          cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + 300
    metrics = workdir / "metrics.jsonl"
    while time.time() < deadline and proc.poll() is None:
      if metrics.exists() and sum("train/loss" in l for l in open(metrics)) >= 2:
        break
      time.sleep(0.5)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    # The preemption notice reaches one host only; the runtime tells the others.
    pid = subprocess.run(["pgrep", "-f", f"workdir={workdir} .*--process_id=0"],
                         capture_output=True, text=True).stdout.split()
    assert pid, "process 0 not found"
    os.kill(int(pid[0]), sig)
    _, stderr = proc.communicate(timeout=300)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode in codes, stderr[-3000:]
  log0 = open(workdir / "logs" / "process_0.log").read()
  match = re.search(message, log0)
  assert match, log0[-3000:]
  step = int(match.group(1))
  assert step > 0 and (workdir / "checkpoints" / str(step)).is_dir()
  log1 = open(workdir / "logs" / "leae_process1.INFO").read()  # orbax's log of process 1
  assert f"Saving checkpoint at step {step}" in log1, log1[-3000:]
