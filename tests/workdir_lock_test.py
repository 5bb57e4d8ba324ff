"""One run per workdir (`leae_jax.workdir_lock`): a busy workdir refuses a second run, a lock
left by a killed run is taken over, and reading a busy workdir never waits."""

import json
import logging
import os
import signal
import subprocess
import time

import pytest

from checkpoints_test import _command, _env, finished_steps, ROOT
import helpers
from leae_jax import evaluate
from leae_jax import train
from leae_jax import workdir_lock


def test_a_held_lock_refuses_a_second_holder_naming_the_first(tmp_path):
  with workdir_lock.WorkdirLock(str(tmp_path)):
    info = json.load(open(tmp_path / workdir_lock.LOCK_FILE))
    assert info["pid"] == os.getpid() and info["host"] and info["started"]
    # A second open file description conflicts, in this process as in another.
    with pytest.raises(workdir_lock.WorkdirBusyError,
                       match=rf"is in use by pid {os.getpid()} on .*: one run per workdir"):
      with workdir_lock.WorkdirLock(str(tmp_path)):
        pass
  # Released and emptied on a clean exit: the next holder takes it silently.
  assert open(tmp_path / workdir_lock.LOCK_FILE).read() == ""
  with workdir_lock.WorkdirLock(str(tmp_path)):
    pass


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_warning(tmp_path, caplog):
  left = {"host": "elsewhere", "pid": 999999, "started": "2026-01-01T00:00:00"}
  (tmp_path / workdir_lock.LOCK_FILE).write_text(json.dumps(left))
  with caplog.at_level(logging.WARNING):
    with workdir_lock.WorkdirLock(str(tmp_path)):
      pass
  assert "Took over the lock of pid 999999 on elsewhere" in caplog.text


def test_evaluate_reads_a_busy_workdir(tmp_path):
  train.train_and_evaluate(helpers.tiny_config(num_train_steps=2), str(tmp_path))
  with workdir_lock.WorkdirLock(str(tmp_path)):  # as if a run were still training there
    results = evaluate.evaluate_workdir(str(tmp_path), 2, probe=False, figures=False)
  assert results["step"] == 2


def test_a_second_run_is_refused_and_a_killed_runs_lock_is_taken_over(tmp_path):
  workdir = tmp_path / "run"
  first = subprocess.Popen(_command(workdir), cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + 300
    while not finished_steps(workdir):
      assert first.poll() is None and time.time() < deadline
      time.sleep(0.05)
    config_before = open(workdir / "config.json").read()
    second = subprocess.run(_command(workdir, "--config.seed=7"), cwd=ROOT, env=_env(),
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 2, second.stderr[-3000:]
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    assert f"is in use by pid {first.pid} on " in lines[0]
    assert open(workdir / "config.json").read() == config_before  # it wrote nothing
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
  finally:
    if first.poll() is None:
      first.kill()
  # The killed run's lock is taken over, with a warning naming it; the run resumes.
  third = subprocess.run(_command(workdir), cwd=ROOT, env=_env(), capture_output=True, text=True,
                         timeout=600)
  assert third.returncode == 0, third.stderr[-3000:]
  assert f"Took over the lock of pid {first.pid} on " in third.stderr
  assert "resuming at step" in third.stdout.splitlines()[0]
