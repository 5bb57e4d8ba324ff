"""A write that fails mid-run (disk full, quota) stops the run in one line and loses nothing.

The failure is real, from the kernel: once the run has written a checkpoint,
the test lowers the process's file-size limit (RLIMIT_FSIZE, as `prlimit`
does), so every later write past the limit fails with EFBIG — inside orbax's
TensorStore threads as well as in Python. Python ignores SIGXFSZ, so the
write returns an error instead of killing the process.
"""

import os
import re
import resource
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--config.model.hidden=8", "--config.model.latent_channels=4",
        "--config.objective.sigreg_slices=16", "--config.batch_size=16",
        "--config.eval_batch_size=8", "--config.progress_bar=false",
        "--config.eval_every_steps=0", "--config.num_train_steps=3000"]


def _start(workdir, *extra):
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  return subprocess.Popen([sys.executable, "-m", "leae_jax.main", "--config=configs/shapes.py",
                           f"--workdir={workdir}", *TINY, *extra],
                          cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def _steps(workdir):
  folder = os.path.join(workdir, "checkpoints")
  return sorted(int(d) for d in os.listdir(folder) if d.isdigit()) if os.path.isdir(folder) else []


@pytest.mark.parametrize("what,extra", [
    # Only checkpoints are written after the limit: the save of step 40 fails.
    ("checkpoint", ["--config.checkpoint_every_steps=20", "--config.log_every_steps=100000"]),
    # Metrics every step, checkpoints rarely: appending metrics.jsonl fails first.
    ("metrics", ["--config.checkpoint_every_steps=20", "--config.log_every_steps=1"]),
])
def test_failed_write_is_one_line_and_the_last_checkpoint_resumes(what, extra, tmp_path):
  workdir = str(tmp_path / "run")
  proc = _start(workdir, *extra)
  deadline = time.time() + 300
  while 20 not in _steps(workdir):  # a finished checkpoint past the first
    assert proc.poll() is None and time.time() < deadline, proc.communicate()
    time.sleep(0.02)
  resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (1, 1))  # the disk is full from now on
  out, err = proc.communicate(timeout=300)
  lines = [l for l in err.splitlines() if l.strip()]
  assert proc.returncode == 1, err[-3000:]
  assert "Traceback" not in out + err and len(lines) == 1, err[-3000:]
  if what == "checkpoint":
    assert re.match(r"error: could not write the checkpoint of step \d+ to .*/checkpoints "
                    r"\(.*\); the checkpoint of step \d+ is intact: free space \(or fix the "
                    r"permissions\) and rerun the same command to resume from it\.$", lines[0]), lines[0]
  else:
    assert re.match(r"error: could not append step \d+ to .*metrics\.jsonl \(File too large\)",
                    lines[0]), lines[0]
  intact = max(_steps(workdir))
  assert intact >= 20
  # Space is back: the same command resumes from the newest intact checkpoint.
  again = _start(workdir, *extra, "--config.num_train_steps=60")
  out, err = again.communicate(timeout=300)
  assert again.returncode == 0, err[-3000:]
  assert f"resuming at step {intact}" in out.splitlines()[0], out
  assert re.search(r"^done at step 60 ", out, re.M), out
  assert max(_steps(workdir)) == 60
