"""Checkpointing and fault tolerance, with real processes and real files."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from leae_jax import checkpoints
from leae_jax import evaluate
from leae_jax import outputs
from leae_jax import train

import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 120
# Small enough to be quick, big enough (tens of ms a step) that a signal sent
# after the first periodic checkpoint lands well before the end of training.
RUN_FLAGS = ["--config=configs/shapes.py", "--config.model.hidden=16", "--config.model.latent_channels=8",
             "--config.objective.sigreg_slices=32", "--config.batch_size=32", "--config.eval_batch_size=64",
             f"--config.num_train_steps={STEPS}", "--config.log_every_steps=5",
             "--config.eval_every_steps=0", "--config.checkpoint_every_steps=10",
             "--config.warmup_steps=5", "--config.progress_bar=false"]


def _command(workdir, *extra):
  return [sys.executable, "-m", "leae_jax.main", f"--workdir={workdir}", *RUN_FLAGS, *extra]


def _env():
  # These subprocesses train 120 steps each: unoptimised XLA (conftest's suite-wide
  # setting) runs them ~2x slower than its compile saves, and the compilation cache
  # makes every process after the first a cache hit (about 260 s -> 160 s for this file).
  return dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
              JAX_THREEFRY_PARTITIONABLE="0", JAX_DISABLE_MOST_OPTIMIZATIONS="0")


def run(workdir, *extra, timeout=600):
  return subprocess.run(_command(workdir, *extra), cwd=ROOT, env=_env(), capture_output=True,
                        text=True, timeout=timeout)


def finished_steps(workdir):
  d = os.path.join(workdir, checkpoints.CHECKPOINT_DIR)
  return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if os.path.isdir(d) else []


def start_and_signal(workdir, sig, *, after_step=10, timeout=300):
  """Starts a run, waits for a finished checkpoint >= after_step, sends `sig`."""
  proc = subprocess.Popen(_command(workdir), cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  deadline = time.time() + timeout
  while not [s for s in finished_steps(workdir) if s >= after_step]:
    assert proc.poll() is None, "training ended before the first periodic checkpoint"
    assert time.time() < deadline
    time.sleep(0.02)
  proc.send_signal(sig)
  out, err = proc.communicate(timeout=timeout)
  return proc.returncode, out, err


def restore_final(workdir, config_overrides=()):
  config = evaluate.load_config(workdir)
  trainer = train.Trainer(config)
  return evaluate.restore_state(str(workdir), config, trainer)


def assert_restores_at(workdir, step):
  """The newest checkpoint is `step` and restores whole, so a rerun resumes from
  it (resuming itself is checked end to end, bitwise, after SIGKILL)."""
  state = jax.device_get(restore_final(workdir))
  assert int(state.step) == step
  for leaf in jax.tree_util.tree_leaves(state.params):
    assert np.isfinite(leaf).all()


def last_train_record(workdir):
  records = [r for r in outputs.read_metrics(str(workdir)) if "train/loss" in r]
  return {k: v for k, v in records[-1].items() if k != "train/images_per_s"}


def test_sigkill_then_resume_matches_an_uninterrupted_run_bitwise(tmp_path):
  straight, killed = tmp_path / "straight", tmp_path / "killed"
  proc = run(straight)
  assert proc.returncode == 0, proc.stderr[-3000:]

  code, _, _ = start_and_signal(killed, signal.SIGKILL)
  assert code == -signal.SIGKILL
  saved = finished_steps(killed)
  assert saved and max(saved) < STEPS
  proc = run(killed)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"resuming at step {max(saved)}" in proc.stdout.splitlines()[0], proc.stdout

  a, b = restore_final(straight), restore_final(killed)
  assert int(a.step) == int(b.step) == STEPS
  for x, y in zip(jax.tree_util.tree_leaves(jax.device_get(a)), jax.tree_util.tree_leaves(jax.device_get(b))):
    np.testing.assert_array_equal(x, y)  # bitwise: params, optimizer, statistics, rng
  assert last_train_record(straight) == last_train_record(killed)
  # The resumed run's metrics.jsonl has each logged step exactly once.
  steps = [r["step"] for r in outputs.read_metrics(str(killed)) if "train/loss" in r]
  assert steps == list(range(5, STEPS + 1, 5))


def test_sigterm_saves_the_current_step_and_exits_zero(tmp_path):
  workdir = tmp_path / "run"
  code, out, err = start_and_signal(workdir, signal.SIGTERM)
  assert code == 0, err[-3000:]
  assert "SIGTERM: saved a checkpoint at step" in out
  step = int(out.split("SIGTERM: saved a checkpoint at step ")[1].split(";")[0])
  assert step in finished_steps(workdir) and step < STEPS
  assert_restores_at(workdir, step)


def test_ctrl_c_saves_the_current_step_and_exits_130(tmp_path):
  workdir = tmp_path / "run"
  code, out, err = start_and_signal(workdir, signal.SIGINT)
  assert code == 130, err[-3000:]
  assert "Traceback" not in err and "KeyboardInterrupt" not in err
  line = next(l for l in out.splitlines() if l.startswith("interrupted (Ctrl-C) at step"))
  step = int(line.split("at step ")[1].split(";")[0])
  assert line.endswith("saved; rerun the same command to resume.")
  assert step in finished_steps(workdir) and step < STEPS
  assert out.strip().splitlines()[-1].startswith(f"interrupted (Ctrl-C) at step {step} in ")
  assert_restores_at(workdir, step)


def test_a_second_ctrl_c_aborts_at_once():
  # In this process: the first SIGINT only asks to stop; it puts Python's own
  # handler back, so the second raises KeyboardInterrupt where the code is.
  from leae_jax import distributed
  before = signal.getsignal(signal.SIGINT)
  with pytest.raises(KeyboardInterrupt):
    with distributed.StopRequest() as stop:
      os.kill(os.getpid(), signal.SIGINT)
      time.sleep(0.05)  # the handler runs between bytecodes
      assert stop.requested and stop.interrupted and stop.should_stop(1)
      assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
      os.kill(os.getpid(), signal.SIGINT)
      time.sleep(1.0)
  assert signal.getsignal(signal.SIGINT) is before  # restored on the way out


def _tiny_config(**overrides):
  return helpers.tiny_config(**{"checkpoint_every_steps": 3, **overrides})


def test_milestones_and_retention(tmp_path):
  train.train_and_evaluate(_tiny_config(checkpoints_to_keep=2), str(tmp_path))
  # Milestones 0, 2, 4, 6, 8, 10 (0–100 %) plus the two newest (9, 10).
  assert finished_steps(tmp_path) == [0, 2, 4, 6, 8, 9, 10]


def test_corrupted_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
  config = _tiny_config()
  train.train_and_evaluate(config, str(tmp_path))
  newest = os.path.join(tmp_path, checkpoints.CHECKPOINT_DIR, "10", "state")
  damaged = 0
  for root, _, files in os.walk(newest):
    for name in files:
      path = os.path.join(root, name)
      size = os.path.getsize(path)
      if size > 16:
        with open(path, "r+b") as f:
          f.truncate(size // 3)
        damaged += 1
  assert damaged
  capsys.readouterr()
  result = train.train_and_evaluate(config, str(tmp_path))
  out = capsys.readouterr().out
  assert "resuming at step 9 (skipped damaged checkpoints at steps [10])" in out
  assert result["step"] == 10


def test_injected_nan_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  # NaN at step 7; checkpoints every 3 steps; logging every 5 would only see it
  # at step 10, so it must be caught before the checkpoint at step 9.
  # The check before the step-8 milestone save finds it and, as on the logging
  # path, names every part of that step (the poison multiplies the loss only).
  config = _tiny_config(debug_nan_step=7)
  with pytest.raises(train.NonFiniteLossError) as error:
    train.train_and_evaluate(config, str(tmp_path))
  message = str(error.value)
  assert message.startswith("Non-finite loss at step 7: "), message
  parts = dict(p.split("=") for p in message.split(": ", 1)[1].split(". ")[0].split(", "))
  assert set(parts) == {"agree/crop_resize", "grad_norm", "latent_agreement", "learning_rate",
                        "loss", "sigreg"}, message
  assert parts["loss"] == "nan" and parts["grad_norm"] == "nan"
  assert np.isfinite(float(parts["latent_agreement"])) and np.isfinite(float(parts["sigreg"]))
  assert float(parts["learning_rate"]) == pytest.approx(1e-3)
  assert max(finished_steps(tmp_path)) == 6
  state = restore_final(tmp_path)
  assert int(state.step) == 6
  for leaf in jax.tree_util.tree_leaves(jax.device_get(state.params)):
    assert np.isfinite(leaf).all()


def test_incompatible_model_config_is_a_one_line_error(tmp_path):
  train.train_and_evaluate(_tiny_config(num_train_steps=3), str(tmp_path))
  proc = subprocess.run(
      [sys.executable, "-m", "leae_jax.main", f"--workdir={tmp_path}", "--config=configs/shapes.py",
       "--config.model.hidden=16", "--config.model.latent_channels=4", "--config.progress_bar=false"],
      cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  # First the resume check: another experiment (model, objective, ...) is refused by name.
  last = proc.stderr.strip().splitlines()[-1]
  assert "holds a run of another experiment" in last and "model.hidden 8 → 16" in last
  allow = re.search(r"--config\.allow_changes=(\S+), or give", last).group(1)
  stored = open(tmp_path / "config.json").read()
  # Allowed on purpose, the state of another shape still cannot be restored.
  proc = subprocess.run(
      [sys.executable, "-m", "leae_jax.main", f"--workdir={tmp_path}", "--config=configs/shapes.py",
       "--config.model.hidden=16", "--config.model.latent_channels=4", "--config.progress_bar=false",
       f"--config.allow_changes={allow}"],
      cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: Checkpoint") and "model.hidden: checkpoint 8 vs config 16" in last
  assert "Traceback" not in proc.stderr
  assert open(tmp_path / "config.json").read() == stored  # the run's record is untouched


def test_harmless_config_changes_resume(tmp_path, capsys):
  # 6 steps, then more steps and another logging interval in the same workdir:
  # the run continues from step 6 (it does not start again: metrics are not
  # logged twice) and ends where a run of 8 steps from the start ends, so the
  # resumed steps read batches 6 and 7, not a batch too far.
  resumed, straight = tmp_path / "resumed", tmp_path / "straight"
  train.train_and_evaluate(_tiny_config(num_train_steps=6), str(resumed))
  capsys.readouterr()
  result = train.train_and_evaluate(_tiny_config(num_train_steps=8, log_every_steps=2), str(resumed))
  assert result["step"] == 8
  assert "resuming at step 6" in capsys.readouterr().out.splitlines()[0]
  train.train_and_evaluate(_tiny_config(num_train_steps=8, log_every_steps=2), str(straight))
  logged = [r["step"] for r in outputs.read_metrics(str(resumed)) if "train/loss" in r]
  assert logged == [5, 6, 8]
  a, b = restore_final(resumed), restore_final(straight)
  a, b = jax.device_get(a), jax.device_get(b)
  assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7, err_msg=jax.tree_util.keystr(path))
  # The last logged losses agree too (step 8 summarises steps 7 and 8 in both runs).
  np.testing.assert_allclose(last_train_record(resumed)["train/loss"],
                             last_train_record(straight)["train/loss"], rtol=1e-6)


def test_evaluate_restores_any_saved_step(tmp_path):
  train.train_and_evaluate(_tiny_config(), str(tmp_path))
  for step in (4, 10):
    # (No probe: it would encode the whole training split twice; evaluate_test covers it.)
    results = evaluate.evaluate_workdir(str(tmp_path), step, max_batches=1, probe=False,
                                        figures=False)
    assert results["step"] == step and np.isfinite(results["psnr"])
    assert json.load(open(tmp_path / f"eval_{step}.json"))["step"] == step
  with pytest.raises(ValueError, match="No checkpoint for step 5"):
    evaluate.evaluate_workdir(str(tmp_path), 5)
