"""The ablation ladder: resumable rung × seed × budget runs, stored results, the verdict rule."""

import json
import os

import numpy as np
import pytest

from leae_jax.experiments import ladder

import helpers


def test_verdict_rule_on_synthetic_results():
  # Difference of means against twice the pooled standard deviation.
  assert ladder.verdict([10.0, 10.2, 9.8], [8.0, 8.2, 7.8])[0] == "consistent"
  assert ladder.verdict([8.0, 8.2, 7.8], [10.0, 10.2, 9.8])[0] == "contradicted"
  v, diff, threshold = ladder.verdict([10.0, 11.0, 9.0], [9.5, 10.5, 8.5])
  assert v == "not resolved at this budget"
  np.testing.assert_allclose(diff, 0.5)
  np.testing.assert_allclose(threshold, 2.0)  # pooled std 1.0
  # Just past the threshold on either side.
  assert ladder.verdict([12.01, 11.01, 10.01], [9.0, 10.0, 8.0])[0] == "consistent"
  assert ladder.verdict([11.99, 10.99, 9.99], [9.0, 10.0, 8.0])[0] == "not resolved at this budget"
  # One seed can never settle a claim.
  assert ladder.verdict([20.0], [1.0])[0] == "not resolved at this budget"


def test_plan_nests_budgets_and_gives_curve_rungs_more():
  jobs = ladder.plan(["mse", "plain_live"], [0, 1], [400, 1600], [800, 6400], curve_rungs=["mse"])
  assert [(j.rung.name, j.seed, j.budgets) for j in jobs] == [
      ("mse", 0, (400, 800, 1600, 6400)), ("mse", 1, (400, 800, 1600, 6400)),
      ("plain_live", 0, (400, 1600)), ("plain_live", 1, (400, 1600))]
  with pytest.raises(ValueError, match="Unknown rungs"):
    ladder.plan(["nope"], [0], [400])


@pytest.fixture(scope="module")
def idx_data(tmp_path_factory):
  root = tmp_path_factory.mktemp("ladder_data")
  empty = root / "tfds"
  empty.mkdir()
  return helpers.idx_splits(root / "idx", train=64, test=32), str(empty)


def test_ladder_runs_skips_finished_results_and_resumes(tmp_path, idx_data):
  idx, empty = idx_data
  out, root = str(tmp_path / "results"), str(tmp_path / "workdirs")
  kw = dict(workdir_root=root, probe_train_examples=32, batch_size=8, hidden=4, latent_channels=4,
            eval_batch_size=16, idx_dir=idx, data_dir=empty, sigreg_slices=8)
  # Two nested budgets of one rung, and one masked run (hole metrics).
  jobs = (ladder.plan(["mse"], [0], [2, 4], [], curve_rungs=[])
          + ladder.plan(["masked_self_teaching"], [0], [2], [], curve_rungs=[]))
  calls = []

  def counting_train(config, workdir):
    from leae_jax import train
    calls.append((os.path.relpath(workdir, root), int(config.num_train_steps)))
    return train.train_and_evaluate(config, workdir)

  assert ladder.run(out, jobs, train_fn=counting_train, log=lambda m: None, **kw) == 3
  # Breadth first: every run reaches the short budget before one goes on.
  assert calls == [(os.path.join("mse", "seed0"), 2),
                   (os.path.join("masked_self_teaching", "seed0"), 2),
                   (os.path.join("mse", "seed0"), 4)]
  first = json.load(open(ladder.result_path(out, "mse", 0, 4)))
  assert (first["rung"], first["seed"], first["steps"], first["step"]) == ("mse", 0, 4, 4)
  assert np.isfinite(first["psnr"]) and 0 <= first["probe_accuracy"] <= 1
  # Samples for the comparison grid are kept for the first seed only.
  assert os.path.exists(ladder.result_path(out, "mse", 0, 2, "_samples.npz"))
  # ... whatever seeds a later command runs: seed 1 would add none beside seed 0's.
  assert ladder._samples_of_a_smaller_seed(out, "mse", 1, 2)
  assert not ladder._samples_of_a_smaller_seed(out, "mse", 0, 2)
  # Nested budgets: the 4-step segment resumed from the 2-step checkpoint, so
  # it equals a straight 4-step run of the same seed.
  straight = str(tmp_path / "straight")
  from leae_jax import evaluate
  from leae_jax import train
  train.train_and_evaluate(ladder.rung_config(ladder.RUNGS[0], seed=0, steps=4, batch_size=8,
                                              hidden=4, latent_channels=4, eval_batch_size=16,
                                              idx_dir=idx, data_dir=empty, sigreg_slices=8),
                           straight)
  again = evaluate.evaluate_workdir(straight, 4, probe_train_examples=32, figures=False)
  np.testing.assert_allclose(again["psnr"], first["psnr"], rtol=1e-6)
  # Re-running computes nothing; deleting one result recomputes only it (from
  # the checkpoint already at that step: an evaluation, no training).
  calls.clear()
  assert ladder.run(out, jobs, train_fn=counting_train, log=lambda m: None, **kw) == 0
  assert calls == []
  os.remove(ladder.result_path(out, "mse", 0, 4))
  assert ladder.run(out, jobs, train_fn=counting_train, log=lambda m: None, **kw) == 1
  assert calls == [(os.path.join("mse", "seed0"), 4)]
  np.testing.assert_allclose(json.load(open(ladder.result_path(out, "mse", 0, 4)))["psnr"],
                             first["psnr"], rtol=1e-6)
  # A second seed's stored results (written here: the report reads only files)
  # 1 dB above the first: the report shows their mean ± standard deviation.
  for steps in (2, 4):
    result = json.load(open(ladder.result_path(out, "mse", 0, steps)))
    result.update(seed=1, psnr=result["psnr"] + 1.0)
    with open(ladder.result_path(out, "mse", 1, steps), "w") as f:
      json.dump(result, f)
  # The report is written from the stored results alone.
  path = ladder.write_report(out, command="ladder test")
  report = open(path).read()
  assert "## 2 steps" in report and "## 4 steps" in report
  assert "`masked_self_teaching` | " in report
  # Mean ± sample standard deviation of p and p + 1: p + 0.5 ± 1/√2.
  assert (f"`mse` | pixel MSE baseline | 2 | {first['psnr'] + 0.5:.2f} ± 0.71 |" in report), report
  assert json.load(open(ladder.result_path(out, "masked_self_teaching", 0, 2)))["hole_psnr"] > 0
  assert ladder.VERDICT_RULE in report
  assert os.path.exists(os.path.join(out, "bars.png"))
  assert os.path.exists(os.path.join(out, "compare.png"))
