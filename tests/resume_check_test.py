"""A resume keeps the experiment it resumes (`leae_jax.resume_check`)."""

import json
import os
import subprocess

import pytest

from checkpoints_test import _command, _env, ROOT
from leae_jax import evaluate
from leae_jax import resume_check


def test_changes_are_refused_unless_allowed_or_harmless():
  stored = {"objective": {"name": "self_teaching", "views": "crop_resize"}, "learning_rate": 1e-4,
            "num_train_steps": 20, "mesh": {"data": -1}}
  same_method = dict(stored, num_train_steps=40, mesh={"data": 2})
  assert resume_check.check(stored, same_method, "", "w") == {
      "mesh.data": [-1, 2], "num_train_steps": [20, 40]}
  other = dict(stored, objective={"name": "mse", "views": "crop_resize"}, learning_rate=1e-3)
  with pytest.raises(resume_check.ResumeChangedError) as err:
    resume_check.check(stored, other, "", "w")
  message = str(err.value)
  assert "objective.name 'self_teaching' → 'mse'" in message and "learning_rate" in message
  assert "--config.allow_changes=learning_rate,objective.name" in message and "\n" not in message
  # Named on purpose: a prefix covers the fields under it.
  assert resume_check.check(stored, other, "objective,learning_rate", "w")["learning_rate"] == [
      1e-4, 1e-3]


def test_a_resume_with_another_method_stops_and_an_allowed_one_is_recorded(tmp_path):
  workdir = tmp_path / "run"
  steps = lambda n: [f"--config.num_train_steps={n}"]
  first = subprocess.run(_command(workdir, *steps(20)), cwd=ROOT, env=_env(), capture_output=True,
                         text=True, timeout=600)
  assert first.returncode == 0, first.stderr[-3000:]
  stored = open(workdir / "config.json").read()
  # configs/shapes.py:mse on the same workdir: refused before anything is written.
  mse = [a.replace("configs/shapes.py", "configs/shapes.py:mse") for a in _command(workdir)]
  refused = subprocess.run(mse + steps(40), cwd=ROOT, env=_env(), capture_output=True, text=True,
                           timeout=600)
  assert refused.returncode == 2, refused.stderr[-3000:]
  lines = refused.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error:") and "objective.name" in lines[0], lines
  assert "'self_teaching' → 'mse'" in lines[0] and "--config.allow_changes=" in lines[0]
  assert open(workdir / "config.json").read() == stored
  # More steps is not a change of method; a new learning rate named on purpose is allowed.
  more = subprocess.run(_command(workdir, *steps(30), "--config.learning_rate=0.002",
                                 "--config.allow_changes=learning_rate"),
                        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
  assert more.returncode == 0, more.stderr[-3000:]
  history = [json.loads(l) for l in open(workdir / resume_check.HISTORY_FILE)]
  assert [h["start_step"] for h in history] == [0, 20]
  assert history[1]["changed"]["learning_rate"][1] == 0.002
  assert resume_check.changed_fields(str(workdir)) == {"learning_rate": [
      history[0]["config"]["learning_rate"], 0.002]}
  results = evaluate.evaluate_workdir(str(workdir), 30, probe=False, figures=False)
  assert results["changed_on_resume"] == ["learning_rate"]
