"""The ablation ladder: resumable rung × seed × budget runs, stored results, the verdict rule."""

import json
import os

import numpy as np
import pytest

from leae_jax.experiments import ladder
from leae_jax.experiments.ladder import running

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


def test_ladder_runs_skips_finished_results_and_resumes(tmp_path, idx_data, capsys):
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
  # Called as a library with no log file set up: the closing lines name no logs/.
  closing = [l for l in capsys.readouterr().out.splitlines() if l.startswith("done at step")]
  assert len(closing) == 3 and all(l.endswith("loss_curves.png, checkpoints/") for l in closing)
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


def _result(rung, seed, steps, psnr, probe, platform=None, wall=10.0, **extra):
  row = dict(rung=rung, seed=seed, steps=steps, psnr=psnr, probe_accuracy=probe,
             total_wall_s=wall, **extra)
  if platform:
    row.update(platform="gpu", device_kind=f"NVIDIA {platform} 80GB HBM3")
  return row


def test_platforms_are_labelled_and_never_pooled():
  assert ladder.platform_of({}) == "CPU"  # results from before platforms were recorded
  assert ladder.platform_of({"platform": "cpu", "device_kind": "cpu"}) == "CPU"
  assert ladder.platform_of({"platform": "gpu", "device_kind": "NVIDIA H100 80GB HBM3"}) == "H100"
  assert ladder.platform_of({"platform": "tpu", "device_kind": "TPU v5 lite"}) == "TPU v5 lite"
  rows = ([_result("mse", s, 400, 20.0 + s, 0.8) for s in range(2)]           # CPU: 2 seeds
          + [_result("mse", s, 400, 30.0, 0.9, "H100") for s in range(3)]    # H100: 3 seeds
          + [_result("mse", s, 800, 21.0 + 0.2 * s, 0.8) for s in range(3)]  # tie: CPU wins
          + [_result("mse", s, 800, 21.1 + 0.2 * s, 0.9, "H100") for s in range(3)])
  table = ladder.aggregate(rows)
  # The platform with the most seeds takes the cell, whole: values never mix.
  assert table[("mse", 400)]["platform"] == "H100" and table[("mse", 400)]["psnr"] == [30.0] * 3
  assert table[("mse", 800)]["platform"] == "CPU"
  np.testing.assert_allclose(table[("mse", 800)]["psnr"], [21.0, 21.2, 21.4])
  # Both hold 400 and 800 with ≥2 seeds: compared by the verdict rule (far
  # apart at 400; at 800, 0.1 dB against a 2σ of 0.4).
  agreement = ladder.platform_agreement(rows, metrics=("psnr",))
  assert [(a[0], a[1], a[3], a[4], a[-1]) for a in agreement] == [
      ("mse", 400, "CPU", "H100", False), ("mse", 800, "CPU", "H100", True)]
  np.testing.assert_allclose(agreement[0][5], 20.5 - 30.0)


def test_rank_changes_and_whole_budgets():
  rows = [_result(r, s, b, psnr, 0.8) for s in range(2) for r, b, psnr in (
      ("mse", 400, 21.0), ("plain_live", 400, 10.0), ("crop_live", 400, 20.0),
      ("mse", 1600, 24.0), ("plain_live", 1600, 9.0), ("crop_live", 1600, 25.0),
      ("mse", 800, 23.0))]
  table = ladder.aggregate(rows)
  rungs = [r for r in ladder.RUNGS if r.name in ("mse", "plain_live", "crop_live")]
  assert ladder.whole_budgets(table, rungs) == [400, 1600]  # 800 lacks two rungs
  assert ladder.rank_changes(table, rungs, 400, 1600) == [
      ("mse", 1, 2), ("plain_live", 3, 3), ("crop_live", 2, 1)]


def test_seconds_if_all_on_one_platform():
  # CPU: mse to 800 in two segments of 400 steps, 100 s each (0.25 s/step);
  # H100 took mse seed 0 on to 1600: 800 missing CPU steps = 200 s more.
  rows = [_result("mse", 0, 400, 20, 0.8, wall=100.0), _result("mse", 0, 800, 21, 0.8, wall=100.0),
          _result("mse", 0, 1600, 22, 0.8, "H100", wall=5.0)]
  np.testing.assert_allclose(ladder.seconds_if_all_on(rows, "CPU"), 400.0)
  assert ladder.compute_spent(rows) == {"CPU": (2, 200.0), "H100": (1, 5.0)}
  # A rung the platform never ran: no rate to extrapolate from.
  assert ladder.seconds_if_all_on(rows + [_result("crop_live", 0, 400, 20, 0.8, "H100")],
                                  "CPU") is None


def test_a_claims_answers_on_two_datasets_are_set_side_by_side(tmp_path):
  c, x, n = "consistent", "contradicted", "not resolved at this budget"
  assert ladder.one_answer({}) == "–" and ladder.one_answer({400: n}) == "not resolved"
  assert ladder.one_answer({400: n, 1600: c}) == c  # undecided budgets do not dilute it
  assert ladder.one_answer({400: c, 1600: x}) == "flips"
  assert ladder.across_datasets({400: c}, {391: c, 782: n}) == "holds on both"
  assert ladder.across_datasets({400: x}, {391: x}) == "contradicted on both"
  assert ladder.across_datasets({400: c}, {391: x}) == "**differs**"
  assert ladder.across_datasets({400: c}, {391: n}) == "decided on one only"
  assert ladder.across_datasets({400: n}, {391: n}) == "undecided on both"
  assert ladder.across_datasets({400: c, 1600: x}, {391: c}) == "flips on one"
  assert ladder.across_datasets({400: c, 1600: x}, {391: x, 782: c}) == "flips on both"
  assert ladder.across_datasets({}, {391: c}) == "–"
  # The CIFAR-10 page reads the Fashion-MNIST results stored beside it: the claims both ask,
  # each dataset's verdicts at its own budgets, and whether they agree.
  def store(out, rung, steps, psnr, platform=None):
    for s in range(3):
      path = ladder.result_path(out, rung, s, steps)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path, "w") as f:
        json.dump(_result(rung, s, steps, psnr + 0.1 * s, 0.45, platform), f)
  fashion, cifar = str(tmp_path / "results"), str(tmp_path / "results_cifar10")
  spec = ladder.LADDERS["cifar10"]
  for rung, psnr in (("mse", 20.0), ("crop_step_frozen", 19.0), ("crop_live", 18.0)):
    store(fashion, rung, 400, psnr)
  store(os.path.join(fashion, "h100"), "mse", 6400, 25.0, "H100")  # a cell computed elsewhere
  store(os.path.join(fashion, "h100"), "crop_step_frozen", 6400, 23.0, "H100")
  for rung, psnr in (("mse", 21.0), ("crop_step_frozen", 18.0), ("crop_live", 19.0)):
    store(cifar, rung, 391, psnr)
  table = ladder.aggregate(ladder.load_results(cifar))
  lines = ladder.other_dataset_section(table, spec, cifar)
  assert lines[0] == "## Against Fashion-MNIST" and "[results.md](results.md)" in lines[2]
  row = lambda a, b: next(l for l in lines if f"`{a}` vs `{b}` | psnr |" in l)
  assert row("mse", "crop_step_frozen").endswith(
      "| 400: consistent (Δ +1.00); 6400: consistent (Δ +2.00; H100) | 391: consistent (Δ +3.00) "
      "| holds on both |")
  assert row("crop_step_frozen", "crop_live").endswith(
      "| 400: consistent (Δ +1.00) | 391: contradicted (Δ -1.00) | **differs** |")
  # Claims one ladder alone asks (the published recipe, colour) are not set side by side.
  assert not any("mse_published" in l or "saturation_ratio" in l for l in lines)
  report = open(ladder.write_report(cifar, command="ladder test", ladder=spec)).read()
  assert "## Against Fashion-MNIST" in report
  # Without the other dataset's results beside it, the page has no such section; a page
  # stored under the other's folder name is not compared with itself.
  assert ladder.other_dataset_section(table, spec, str(tmp_path / "elsewhere" / "r")) == []
  assert ladder.other_dataset_section(table, spec, fashion) == []
  assert ladder.other_dataset_section(table, ladder.LADDERS["fashion_mnist"], cifar) == []


def test_report_merges_another_platforms_folder(tmp_path):
  out = str(tmp_path / "results")
  def store(root, row):
    path = ladder.result_path(root, row["rung"], row["seed"], row["steps"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
      json.dump(row, f)
  for s in range(3):
    for rung, probe in (("mse", 0.85), ("crop_step_frozen", 0.84)):
      store(out, _result(rung, s, 400, 20.0 + 0.1 * s, probe + 0.001 * s))
      store(os.path.join(out, "h100"), _result(rung, s, 6400, 25.0 + 0.1 * s, probe, "H100"))
    store(os.path.join(out, "h100"), _result("mse", s, 400, 20.05 + 0.1 * s, 0.85, "H100"))
  # What produced the other platform's folder is recorded once per distinct command.
  for _ in range(2):
    ladder.record_command(os.path.join(out, "h100"), "ladder --out=h100")
  assert len(open(os.path.join(out, "h100", "commands.txt")).read().splitlines()) == 1
  report = open(ladder.write_report(out, command="ladder test")).read()
  assert "`results/h100` was computed by:" in report and "ladder --out=h100  # cpu" in report
  assert "## 6400 steps" in report and "| 3 (H100) |" in report
  # The 400-step cells are CPU's own (3 seeds each, a tie with H100's mse).
  assert "`mse` | pixel MSE baseline | 3 | 20.10 ± 0.10 |" in report, report
  # Claims name the platform of a cell that ran elsewhere.
  assert "n 3/3; H100)" in report
  assert "## The downstream question" in report and "contradicted at 400, 6400 steps" in report
  # The platform comparison: mse at 400 on both, 0.05 dB apart, within the rule.
  assert "| `mse` | 400 | psnr | CPU − H100 | -0.050 |" in report and "| yes |" in report
  assert "All of it on CPU" in report


def test_colour_and_blur_columns_appear_only_where_results_hold_them():
  grey = [_result("mse", s, 400, 20.0, 0.8, spectral_power_b3=0.5 + 0.1 * s) for s in range(2)]
  assert [m[0] for m in ladder.table_metrics(ladder.aggregate(grey))][-1] == "spectral_power_b3"
  assert "chroma_psnr" not in [m[0] for m in ladder.table_metrics(ladder.aggregate(grey))]
  colour = grey + [_result("crop_step_frozen", s, 400, 19.0, 0.8, chroma_psnr=30.0 + s,
                           saturation_ratio=0.9, frechet_distance=4.0) for s in range(2)]
  table = ladder.aggregate(colour)
  names = [m[0] for m in ladder.table_metrics(table)]
  assert names[:len(ladder.METRICS)] == [m[0] for m in ladder.METRICS]
  assert names[len(ladder.METRICS):] == ["chroma_psnr", "saturation_ratio", "spectral_power_b3",
                                         "frechet_distance"]
  np.testing.assert_allclose(table[("mse", 400)]["spectral_power_b3"], [0.5, 0.6])
  assert "chroma_psnr" not in table[("mse", 400)]  # shown as – in its row
  np.testing.assert_allclose(table[("crop_step_frozen", 400)]["chroma_psnr"], [30.0, 31.0])


def test_reference_probes_are_computed_once(tmp_path, idx_data):
  idx, empty = idx_data
  out = str(tmp_path / "results")
  kw = dict(probe_train_examples=32, batch_size=8, hidden=4, latent_channels=4,
            eval_batch_size=16, idx_dir=idx, data_dir=empty)
  ref = ladder.reference_probes(out, [0, 1], log=lambda m: None, **kw)
  assert ref["probe_train_examples"] == 32
  assert 0 <= ref["pixels"] <= 1 and set(ref["untrained_encoder"]) == {"0", "1"}
  # Stored: a second call reads the file (here altered to prove it is not recomputed).
  path = os.path.join(out, "reference_probes.json")
  json.dump(dict(ref, pixels=-1.0), open(path, "w"))
  assert ladder.reference_probes(out, [0, 1], log=lambda m: None, **kw)["pixels"] == -1.0
  # The report states them next to the probe verdicts.
  row = dict(rung="mse", seed=0, steps=2, psnr=20.0, probe_accuracy=0.5)
  os.makedirs(os.path.join(out, "runs", "mse"))
  json.dump(row, open(ladder.result_path(out, "mse", 0, 2), "w"))
  report = open(ladder.write_report(out, command="ladder test")).read()
  assert "on the raw pixels -1.000" in report
  # A later command with another seed adds its untrained encoder, keeping the rest.
  more = ladder.reference_probes(out, [0, 1, 2], log=lambda m: None, **kw)
  assert more["pixels"] == -1.0 and set(more["untrained_encoder"]) == {"0", "1", "2"}
  assert more["untrained_encoder"]["0"] == ref["untrained_encoder"]["0"]


def test_each_dataset_has_its_ladder_of_known_rungs_and_claims():
  for spec in ladder.LADDERS.values():
    assert set(spec.rungs) <= set(ladder.RUNG_NAMES) and set(spec.curve_rungs) <= set(spec.rungs)
    for claim in spec.all_claims:
      assert {claim.a, claim.b} <= set(spec.rungs), (spec.dataset, claim)
  cifar = ladder.LADDERS["cifar10"]
  assert "mse_published" in cifar.rungs and "masked_mse" not in cifar.rungs
  # Both new rungs are on both ladders.
  for spec in ladder.LADDERS.values():
    assert {"plain_step_frozen", "crop_step_frozen_no_sigreg"} <= set(spec.rungs)


def test_cifar_rungs_keep_their_configs_batch_and_the_published_baseline_recipe():
  spec = ladder.LADDERS["cifar10"]
  configs = {name: ladder.rung_config(spec.rung(name), seed=1, steps=391, ladder=spec,
                                      prepared_dir="/prepared")
             for name in spec.rungs}
  published = configs["mse_published"]
  assert (published.batch_size, published.learning_rate, published.weight_decay) == (64, 1e-3, 0.0)
  assert published.objective.name == "mse" and published.objective.sigreg_weight == 0.0
  for name, c in configs.items():
    assert c.dataset == "cifar10" and c.seed == 1 and c.num_train_steps == 391
    assert (c.model.hidden, c.model.latent_channels) == (64, 32)  # the published 0.58 M model
    assert c.prepared_dir == "/prepared" and c.num_workers == 0
    if name != "mse_published":
      assert (c.batch_size, c.learning_rate, c.weight_decay) == (128, 1e-4, 0.01), name
  assert configs["crop_step_frozen_no_sigreg"].objective.sigreg_weight == 0.0
  assert configs["crop_step_frozen"].objective.sigreg_weight == 0.03
  assert configs["plain_step_frozen"].objective.judge == "step_frozen"
  assert configs["plain_step_frozen"].objective.views == ""
  assert configs["channel_mask_live"].objective.views == "channel_mask"
  # An explicit flag still overrides every rung (the tests' tiny models).
  assert ladder.rung_config(spec.rung("mse_published"), seed=0, steps=2, ladder=spec,
                            batch_size=8).batch_size == 8


def test_the_rules_false_verdict_rate_and_lower_is_better_claims():
  # At 3 seeds each the threshold is t = √6 with 4 degrees of freedom: p ≈ 0.07.
  np.testing.assert_allclose(ladder.chance_of_a_verdict(3, 3), 0.0700, atol=5e-4)
  assert ladder.chance_of_a_verdict(5, 5) < ladder.chance_of_a_verdict(3, 3)
  assert ladder.chance_of_a_verdict(1, 3) == 0.0
  # A Monte-Carlo check of that rate with the rule itself.
  rng = np.random.default_rng(0)
  draws = rng.normal(size=(20000, 2, 3))
  decided = np.mean([ladder.verdict(a, b)[0] != "not resolved at this budget" for a, b in draws])
  np.testing.assert_allclose(decided, ladder.chance_of_a_verdict(3, 3), atol=0.006)
  lower = ladder.Claim("a closer", "a", "b", "frechet_distance", lower_is_better=True)
  v, diff, _ = ladder.claim_verdict(lower, [4.0, 4.1, 3.9], [8.0, 8.1, 7.9])
  assert v == "consistent" and diff < 0  # the difference stays a − b
  assert ladder.claim_verdict(lower, [8.0, 8.1, 7.9], [4.0, 4.1, 3.9])[0] == "contradicted"


def test_verdicts_across_budgets_and_their_census():
  assert ladder.across_budgets({400: "consistent"}) == "–"
  assert ladder.across_budgets({400: "consistent", 1600: "consistent"}) == "same"
  assert ladder.across_budgets({400: "consistent", 1600: "not resolved at this budget"}) == "changes"
  assert ladder.across_budgets({400: "consistent", 1600: "contradicted"}) == "**flips**"
  rows = [_result(r, s, b, psnr + 0.1 * s, 0.8) for s in range(3) for r, b, psnr in (
      ("mse", 400, 21.0), ("crop_step_frozen", 400, 19.0), ("mse", 1600, 20.0),
      ("crop_step_frozen", 1600, 23.0), ("crop_live", 400, 19.0))]
  rows.append(_result("plain_live", 0, 400, 9.0, 0.8))  # one seed: no verdict drawn
  table = ladder.aggregate(rows)
  claims = [ladder.Claim("mse better", "mse", "crop_step_frozen", "psnr"),
            ladder.Claim("frozen better", "crop_step_frozen", "crop_live", "psnr"),
            ladder.Claim("loophole", "crop_live", "plain_live", "psnr")]
  assert ladder.claim_verdicts(table, claims[0], [400, 1600]) == {400: "consistent",
                                                                   1600: "contradicted"}
  # A budget where a rung has one seed draws no verdict, so it cannot make a claim "change".
  assert ladder.claim_verdicts(table, claims[2], [400]) == {400: "not resolved at this budget"}
  assert ladder.claim_verdicts(table, claims[2], [400], min_seeds=2) == {}
  drawn, decided, chance = ladder.verdict_census(table, claims, [400, 1600])
  assert (drawn, decided) == (3, 2)  # mse×2 budgets, frozen at 400 (equal: not resolved)
  np.testing.assert_allclose(chance, 3 * ladder.chance_of_a_verdict(3, 3))


def test_blur_is_compared_at_the_nearest_psnr():
  rows = []
  for s in range(3):
    e, db = 0.01 * s, 0.3 * s  # seed spreads: 0.01 of power, 0.3 dB of PSNR
    rows += [_result("crop_step_frozen", s, 391, 19.0 + db, 0.5, spectral_power_b3=0.10 + e),
             _result("crop_step_frozen", s, 1955, 22.0 + db, 0.5, spectral_power_b3=0.30 + e,
                     frechet_distance=10.0 + e),
             _result("mse", s, 391, 22.1 + db, 0.5, spectral_power_b3=0.20 + e,
                     frechet_distance=12.0 + e),
             _result("mse", s, 1955, 26.0 + db, 0.5, spectral_power_b3=0.40 + e)]
  pairs = ladder.equal_psnr_pairs(ladder.aggregate(rows), "crop_step_frozen", "mse")
  assert [(p["a_steps"], p["b_steps"]) for p in pairs] == [(391, 391), (1955, 391)]
  # 22.0 against 22.1 dB: not resolved, a fair pair; there self-teaching keeps more
  # high-band power and lies closer in Fréchet distance (lower is better).
  assert pairs[1]["psnr"][0] == "not resolved at this budget"  # 0.1 dB against a 2σ of 0.6
  # A threshold below 0.1 keeps three decimals even beside a larger difference.
  from leae_jax.experiments.ladder import report
  assert report._verdict_text(("contradicted", -0.15, 0.004)) == "contradicted (Δ -0.150, 2σ 0.004)"
  assert report._verdict_text(("consistent", 2.5, 0.4)) == "consistent (Δ +2.50, 2σ 0.40)"
  assert pairs[1]["spectral_power_b3"][0] == "consistent"
  assert pairs[1]["frechet_distance"][0] == "consistent"
  assert "frechet_distance" not in pairs[0]  # the 391-step self-teaching cell has none



def test_the_cifar10_page_answers_colour_and_blur_from_stored_results(tmp_path, monkeypatch):
  out = str(tmp_path / "results_cifar10")
  spec = ladder.LADDERS["cifar10"]
  rng = np.random.default_rng(0)
  for rung in spec.rungs:
    for s in range(3):
      row = _result(rung, s, 391, 20.0 + rng.normal(0, 0.1), 0.45, chroma_psnr=35.0,
                    saturation_ratio=(0.7 if rung == "pixel_mask_live" else 0.9) + 0.01 * s,
                    spectral_power_b3=0.2 + 0.01 * s, frechet_distance=20.0 + s)
      path = ladder.result_path(out, rung, s, 391)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      json.dump(row, open(path, "w"))
  # A masked rung's samples: the grid shows its masked input beside the masked reconstruction.
  images = np.zeros((2, 8, 8, 3), np.float16)
  np.savez(ladder.result_path(out, "crop_live", 0, 391, "_samples.npz"), images=images,
           reconstruction=images, masked_input=images, masked_reconstruction=images)
  shown = []  # the grid's row labels
  from leae_jax import outputs
  monkeypatch.setattr(outputs, "plot_labelled_rows",
                      lambda rows, labels, path: shown.extend(labels) or path)
  report = open(ladder.write_report(out, command="ladder test", ladder=spec)).read()
  assert shown == ["input", "crop_live", "crop_live (masked input)", "crop_live (masked)"]
  assert report.startswith("# The ablation ladder on CIFAR-10 (JPEG q75)")
  assert "--dataset=cifar10 --out=" in report and "JPEG q75" in report
  assert "## Colour and blur" in report and "### Blur at equal PSNR" in report
  assert ("Pixel masking washes colour out where crop-resize does not (saturation): `crop_live` vs "
          "`pixel_mask_live` | saturation_ratio | consistent") in report
  assert "frechet_distance (lower is better)" in report
  assert "## How many verdicts, and how many by chance" in report
  for figure in ("bars.png", "colour_blur.png", "blur_vs_psnr.png"):
    assert os.path.exists(os.path.join(out, figure)) and f"results_cifar10/{figure})" in report


def test_a_stopped_run_stores_no_result(tmp_path):
  # SIGTERM or Ctrl-C mid-segment: train returns `preempted`; nothing is stored
  # as finished, and the ladder stops (the same command resumes it).
  out = str(tmp_path / "results")
  jobs = ladder.plan(["mse", "plain_live"], [0], [4], [], curve_rungs=[])
  calls = []

  def stopped(config, workdir):
    calls.append(workdir)
    return {"preempted": True, "interrupted": True, "step": 2}

  assert ladder.run(out, jobs, workdir_root=str(tmp_path / "w"), train_fn=stopped,
                    log=lambda m: None) == 0
  assert len(calls) == 1 and not os.path.exists(ladder.result_path(out, "mse", 0, 4))


def test_a_run_changed_on_resume_is_marked(tmp_path):
  out = str(tmp_path / "results")
  for s in range(2):
    row = _result("mse", s, 400, 20.0 + s, 0.8,
                  **({"changed_on_resume": ["learning_rate"]} if s == 1 else {}))
    path = ladder.result_path(out, "mse", s, 400)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    json.dump(row, open(path, "w"))
  report = open(ladder.write_report(out, command="ladder test")).read()
  assert "| `mse` | pixel MSE baseline | 2 (seeds [1] changed on resume) |" in report


def test_the_recorded_command_names_the_ladders_folder_wherever_the_checkout_is(tmp_path):
  # A run from another worktree writes into this checkout by absolute path; its page's
  # command still reads as the checkout-relative folder a reader can run.
  assert running.shown_out(str(tmp_path / "elsewhere" / "docs" / "results"), "docs/results") == (
      "docs/results")
  assert running.shown_out("docs/results_cifar10", "docs/results_cifar10") == "docs/results_cifar10"
  assert running.shown_out(str(tmp_path / "mine"), "docs/results") == str(tmp_path / "mine")
  assert running.shown_out("docs/results_cifar10", "docs/results") == "docs/results_cifar10"


def test_downstream_summary_gives_one_difference_for_one_budget_and_a_range_for_several():
  from leae_jax.experiments.ladder import report
  from leae_jax.experiments.ladder.rungs import Claim
  claim = Claim("probe", "a", "b", "probe_accuracy")
  table = {("a", 10): {"probe_accuracy": [0.50, 0.51, 0.52]},
           ("b", 10): {"probe_accuracy": [0.40, 0.41, 0.42]},
           ("a", 20): {"probe_accuracy": [0.60, 0.61, 0.62]},
           ("b", 20): {"probe_accuracy": [0.40, 0.41, 0.42]}}
  one = report.downstream_summary(table, [10], [claim])
  assert "(probe top-1 difference +0.100): consistent at 10 steps." in one
  both = report.downstream_summary(table, [10, 20], [claim])
  assert "(probe top-1 difference +0.100 to +0.200): consistent at 10, 20 steps." in both


def _write_json(path, value):
  with open(path, "w") as f:
    json.dump(value, f)


def test_a_probe_of_another_size_may_not_join_stored_results(tmp_path, idx_data):
  # A page compares one probe protocol: stored results say how many codes they probed.
  idx, empty = idx_data
  out = str(tmp_path / "results")
  kw = dict(idx_dir=idx, data_dir=empty)
  assert running.probe_count_mismatch(out, 32, **kw) is None  # nothing stored yet
  os.makedirs(os.path.join(out, "runs", "mse"))
  _write_json(ladder.result_path(out, "mse", 1, 2),
              dict(rung="mse", seed=1, steps=2, psnr=20.0, probe_train_examples=32))
  assert running.probe_count_mismatch(out, 32, **kw) is None
  message = running.probe_count_mismatch(out, 48, **kw)
  assert message == (f"--probe_train_examples=48: the results stored under {out} probed 32 "
                     "training codes (mse seed 1), this would probe 48; a page compares one "
                     "protocol: pass --probe_train_examples=32 or another --out")
  # -1 is the whole split as the dataset describes it (the registry's 60 000 for
  # Fashion-MNIST's files, whatever these small test files hold), not a count of its own.
  assert "this would probe 60000" in running.probe_count_mismatch(out, -1, **kw)
  # The reference probes count too, and a count past the split is the split.
  _write_json(ladder.result_path(out, "mse", 1, 2),
              dict(rung="mse", seed=1, steps=2, psnr=20.0, probe_train_examples=60000))
  assert running.probe_count_mismatch(out, 100000, **kw) is None
  assert running.probe_count_mismatch(out, -1, **kw) is None
  _write_json(os.path.join(out, "reference_probes.json"),
              {"probe_train_examples": 32, "pixels": 0.1, "untrained_encoder": {}})
  assert "probed 32 training codes (the reference probes)" in running.probe_count_mismatch(
      out, -1, **kw)


def test_the_command_line_keeps_library_logs_in_workdirs_and_one_probe_protocol(tmp_path, idx_data):
  # End to end, as a user runs it: the console shows the ladder's lines only; the
  # libraries' logs go to <workdir_root>/logs/ and each run's workdir/logs/.
  idx, empty = idx_data
  out, root = str(tmp_path / "results"), str(tmp_path / "workdirs")
  args = [f"--out={out}", f"--workdir_root={root}", "--rungs=mse", "--seeds=0", "--budgets=2",
          "--curve_budgets=", "--batch_size=8", "--hidden=4", "--latent_channels=4",
          "--eval_batch_size=16", f"--idx_dir={idx}", f"--data_dir={empty}", "--sigreg_slices=8"]
  done = helpers.run_module("leae_jax.experiments.ladder", *args, "--probe_train_examples=32")
  assert done.returncode == 0, done.stderr[-2000:]
  assert os.path.exists(ladder.result_path(out, "mse", 0, 2))
  assert os.path.exists(os.path.join(root, "logs", "ladder.INFO"))
  run_log = os.path.join(root, "mse", "seed0", "logs", "leae.INFO")
  assert os.path.getsize(run_log) > 0
  assert f"results in {os.path.join(root, 'mse', 'seed0')}: metrics.jsonl, loss_curves.png, " \
         "checkpoints/, logs/" in done.stdout + done.stderr
  assert "INFO" not in done.stdout + done.stderr  # no library records on the console
  # Adding results probed on another count of codes is refused, before training.
  refused = helpers.run_module("leae_jax.experiments.ladder", *args, "--seeds=1",
                               "--probe_train_examples=48")
  assert refused.returncode == 2
  assert refused.stderr.strip().splitlines() == [
      f"error: --probe_train_examples=48: the results stored under {out} probed 32 training "
      "codes (mse seed 0), this would probe 48; a page compares one protocol: pass "
      "--probe_train_examples=32 or another --out"]
  assert not os.path.exists(os.path.join(root, "mse", "seed1"))
