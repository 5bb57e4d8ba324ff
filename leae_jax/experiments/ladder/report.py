"""The ladder's Markdown page, written from the stored results alone (`write_report`)."""

from __future__ import annotations

import glob
import json
import math
import os
from typing import Sequence

import numpy as np

from leae_jax.experiments.ladder.figures import COLOUR_BLUR_PANELS
from leae_jax.experiments.ladder.figures import plot_bars
from leae_jax.experiments.ladder.figures import plot_blur_against_psnr
from leae_jax.experiments.ladder.figures import plot_budget_curves
from leae_jax.experiments.ladder.figures import plot_compare
from leae_jax.experiments.ladder.rungs import Claim
from leae_jax.experiments.ladder.rungs import DOWNSTREAM
from leae_jax.experiments.ladder.rungs import LADDERS
from leae_jax.experiments.ladder.rungs import Ladder
from leae_jax.experiments.ladder.rungs import RUNGS
from leae_jax.experiments.ladder.rungs import table_metrics
from leae_jax.experiments.ladder.running import result_path
from leae_jax.experiments.ladder.stats import BLUR_METRICS
from leae_jax.experiments.ladder.stats import VERDICT_RULE
from leae_jax.experiments.ladder.stats import claim_cells
from leae_jax.experiments.ladder.stats import across_budgets
from leae_jax.experiments.ladder.stats import across_datasets
from leae_jax.experiments.ladder.stats import aggregate
from leae_jax.experiments.ladder.stats import chance_of_a_verdict
from leae_jax.experiments.ladder.stats import claim_verdict
from leae_jax.experiments.ladder.stats import claim_verdicts
from leae_jax.experiments.ladder.stats import compute_spent
from leae_jax.experiments.ladder.stats import drawn_verdicts
from leae_jax.experiments.ladder.stats import equal_psnr_pairs
from leae_jax.experiments.ladder.stats import load_results
from leae_jax.experiments.ladder.stats import mean_std
from leae_jax.experiments.ladder.stats import platform_agreement
from leae_jax.experiments.ladder.stats import platform_of
from leae_jax.experiments.ladder.stats import rank_changes
from leae_jax.experiments.ladder.stats import seconds_if_all_on
from leae_jax.experiments.ladder.stats import training_time_only
from leae_jax.experiments.ladder.stats import verdict_census
from leae_jax.experiments.ladder.stats import whole_budgets


def fidelity_comparison(out: str, before_path: str, *, seed: int = 0, steps: int = 400) -> list[str]:
  """Markdown table: each rung's stored (seed, steps) result against an older results list.

  `before_path` holds the ladder's results from before the published recipes
  were matched (`docs/results/before_fidelity.json`: one seed, 400 steps).
  """
  with open(before_path) as f:
    before = {r["rung"]: r for r in json.load(f)}
  metrics = (("psnr", "PSNR", 2), ("ssim", "SSIM", 3), ("hole_psnr", "hole PSNR", 2),
             ("probe_accuracy", "probe", 3), ("latent_effective_rank", "eff. rank", 1))
  lines = ["| rung | " + " | ".join(f"{label}: before → after (Δ)" for _, label, _ in metrics) + " |",
           "|---|" + "---|" * len(metrics)]
  for rung in RUNGS:
    path = result_path(out, rung.name, seed, steps)
    if rung.name not in before or not os.path.exists(path):
      continue
    with open(path) as f:
      after = json.load(f)
    cells = []
    for key, _, d in metrics:
      old, new = before[rung.name].get(key), after.get(key)
      cells.append("–" if old is None or new is None else
                   f"{old:.{d}f} → {new:.{d}f} ({new - old:+.{d}f})")
    lines.append(f"| `{rung.name}` | " + " | ".join(cells) + " |")
  return lines


def _diff_text(diff: float, threshold: float = float("nan")) -> str:
  """'Δ +1.23, 2σ 0.45': a difference and the rule's threshold, three decimals where either is
  below 0.1 (a threshold of 0.004 must not read '2σ 0.00')."""
  d = 3 if abs(diff) < 0.1 or threshold < 0.1 else 2
  return f"Δ {diff:+.{d}f}" + ("" if math.isnan(threshold) else f", 2σ {threshold:.{d}f}")


def _elsewhere(table, claim: Claim, steps: int, home: str) -> list[str]:
  """The platforms other than `home` that computed a claim's cells at one budget."""
  cells = claim_cells(table, claim, steps) or ()
  return sorted({c["platform"] for c in cells} - {home})


def _claim_cell(table, claim: Claim, steps: int, home: str) -> str:
  """One claim at one budget: its verdict, difference, threshold and seeds."""
  cells = claim_cells(table, claim, steps)
  if cells is None:
    return "–"
  a, b = cells
  v, diff, threshold = claim_verdict(claim, a[claim.metric], b[claim.metric])
  where = _elsewhere(table, claim, steps, home)
  return (f"{v} ({_diff_text(diff, threshold)}; n {len(a[claim.metric])}/{len(b[claim.metric])}"
          + (f"; {', '.join(where)}" if where else "") + ")")


def _verdict_text(v: tuple[str, float, float]) -> str:
  verdict_, diff, threshold = v
  return f"{verdict_} ({_diff_text(diff, threshold)})"


def _equal_psnr_section(table, a: str, b: str) -> list[str]:
  pairs = equal_psnr_pairs(table, a, b)
  if not pairs:
    return []
  lines = ["### Blur at equal PSNR", "",
           f"A sharper-looking reconstruction can simply be a better one. So `{a}` at each of its "
           f"budgets is set against `{b}` at the budget whose mean PSNR is nearest; where the "
           "rule cannot tell their PSNRs apart (*not resolved*), the pair is at equal PSNR and "
           "its blur verdicts answer the blog's argument (consistent: "
           f"`{a}` keeps more high-band power, or lies closer in Fréchet distance).", "",
           f"| `{a}` steps | `{b}` steps | PSNR {a} − {b} | high-band power | Fréchet distance |",
           "|---|---|---|---|---|"]
  for pair in pairs:
    cells = [_verdict_text(pair[m.metric]) if m.metric in pair else "–" for m in BLUR_METRICS]
    lines.append(f"| {pair['a_steps']} | {pair['b_steps']} | {_verdict_text(pair['psnr'])} | "
                 + " | ".join(cells) + " |")
  return lines + [""]


def _claims_table(table, claims: Sequence[Claim], budgets: Sequence[int], home: str) -> list[str]:
  lines = ["| claim | metric | " + " | ".join(f"{s} steps" for s in budgets)
           + " | across budgets |", "|---|---|" + "---|" * (len(budgets) + 1)]
  for claim in claims:
    metric = claim.metric + (" (lower is better)" if claim.lower_is_better else "")
    lines.append(f"| {claim.text}: `{claim.a}` vs `{claim.b}` | {metric} | "
                 + " | ".join(_claim_cell(table, claim, s, home) for s in budgets)
                 + f" | {across_budgets(claim_verdicts(table, claim, budgets, min_seeds=2))} |")
  return lines


def downstream_summary(table, budgets: Sequence[int], claims: Sequence[Claim] = DOWNSTREAM) -> str:
  """The downstream question answered from the probe verdicts, one sentence per comparison."""
  sentences = []
  for claim in claims:
    by_verdict: dict[str, list[str]] = {}
    diffs = []
    for steps in budgets:
      cells = claim_cells(table, claim, steps)
      if cells is not None:
        v, diff, _ = claim_verdict(claim, cells[0][claim.metric], cells[1][claim.metric])
        by_verdict.setdefault(v, []).append(str(steps))
        diffs.append(diff)
    if not diffs:
      continue
    parts = [f"{v} at {', '.join(s)} steps" for v, s in by_verdict.items()]
    low, high = f"{min(diffs):+.3f}", f"{max(diffs):+.3f}"
    spread = low if low == high else f"{low} to {high}"
    sentences.append(f"`{claim.a}` against `{claim.b}` (probe top-1 difference {spread}): "
                     + "; ".join(parts) + ".")
  return " ".join(sentences)


def _dataset_cell(table, claim: Claim, verdicts: dict[int, tuple[str, float, float]],
                  home: str) -> str:
  """One dataset's verdicts on a claim, budget by budget: '400: consistent (Δ +1.23); ...',
  naming the platform of cells computed elsewhere than `home`."""
  if not verdicts:
    return "–"
  cells = []
  for steps, (v, diff, _) in sorted(verdicts.items()):
    where = _elsewhere(table, claim, steps, home)
    cells.append(f"{steps}: {'not resolved' if v.startswith('not resolved') else v} "
                 f"({_diff_text(diff)}" + (f"; {', '.join(where)}" if where else "") + ")")
  return "; ".join(cells)


def other_dataset_section(table, ladder: Ladder, out: str, home: str = "CPU") -> list[str]:
  """The claims this ladder shares with `ladder.other_dataset`, both datasets' verdicts side by
  side; the other ladder's stored results are read from beside `out`, under its own folder's
  name (`docs/results` beside `docs/results_cifar10`). [] when there are none. `home`: the
  platform of this page's own results (cells from elsewhere name theirs)."""
  if not ladder.other_dataset:
    return []
  other = LADDERS[ladder.other_dataset]
  other_out = os.path.join(os.path.dirname(os.path.abspath(out)), os.path.basename(other.out))
  rows = load_results(other_out) if other_out != os.path.abspath(out) else []
  if not rows:
    return []
  other_table = aggregate(rows)
  shared = ladder.shared_claims(other)
  here, there = sorted({s for _, s in table}), sorted({s for _, s in other_table})
  lines = [f"## Against {other.name}", "",
           f"The claims both ladders ask, with each dataset's verdicts at every budget where both "
           f"rungs have at least 2 seeds (steps: Δ = mean(a) − mean(b)), and whether the two "
           f"datasets answer alike (from the decided verdicts; each ladder has its own budgets and "
           f"recipe, so compare directions, not sizes). {other.name}'s page: "
           f"[{os.path.basename(other_out)}.md]({os.path.basename(other_out)}.md).", "",
           f"| claim | metric | {other.name} | {ladder.name} | the two datasets |",
           "|---|---|---|---|---|"]
  for claim in shared:
    mine = drawn_verdicts(table, claim, here, min_seeds=2)
    theirs = drawn_verdicts(other_table, claim, there, min_seeds=2)
    metric = claim.metric + (" (lower is better)" if claim.lower_is_better else "")
    lines.append(f"| {claim.text}: `{claim.a}` vs `{claim.b}` | {metric} | "
                 f"{_dataset_cell(other_table, claim, theirs, platform_of(rows[0]))} "
                 f"| {_dataset_cell(table, claim, mine, home)} | "
                 f"{across_datasets({s: v[0] for s, v in theirs.items()}, {s: v[0] for s, v in mine.items()})} |")
  return lines + [""]


def write_report(out: str, *, command: str, compare_with: str | None = None,
                 ladder: Ladder | None = None) -> str:
  """Writes `<out>.md` and the figures from the stored results; returns the report's path.

  `ladder`: whose page (title, set-up, claims; default Fashion-MNIST's).
  `compare_with`: the results from before the fidelity fixes; adds a
  before/after section for seed 0 at 400 steps.
  """
  ladder = ladder or LADDERS["fashion_mnist"]
  rows = load_results(out)
  if not rows:
    raise ValueError(f"No stored results under {out}/runs: run the ladder first.")
  table = aggregate(rows)
  home = platform_of(rows[0])
  budgets = sorted({s for _, s in table})
  rungs = [r for r in RUNGS if any((r.name, s) in table for s in budgets)]
  whole = whole_budgets(table, rungs)
  others = sorted({c["platform"] for c in table.values()} - {home})
  rel = lambda p: os.path.relpath(p, os.path.dirname(os.path.abspath(out + ".md")))
  dataset_flag = "" if ladder.dataset == "fashion_mnist" else f"--dataset={ladder.dataset} "
  lines = [
      f"# {ladder.title}",
      "",
      f"Produced by `{command}`; this page is rewritten from the stored results by "
      f"`python -m leae_jax.experiments.ladder {dataset_flag}--out={out} --report_only`. "
      + ladder.setup,
      "",
  ]
  if others:
    lines += [f"Results ran on {home} unless a cell names another platform ({', '.join(others)}): "
              f"those were computed by the same command with `--out={out}/<platform>` on a lent "
              "accelerator, to reach the long budgets in hours rather than days. Seeds of "
              "different platforms are never pooled: a cell takes the platform with the most "
              f"seeds, ties going to {home}. [Platforms](#platforms) compares them where both "
              "hold a cell.", ""]
    for path in sorted(glob.glob(os.path.join(out, "*", "commands.txt"))):
      lines += [f"`{rel(os.path.dirname(path))}` was computed by:", "", "```",
                *open(path).read().splitlines(), "```", ""]
  shown = table_metrics(table)
  for steps in budgets:
    lines += [f"## {steps} steps", "",
              "| rung | method | seeds | " + " | ".join(label for _, label, _ in shown) + " |",
              "|---|---|---|" + "---|" * len(shown)]
    for rung in rungs:
      cell = table.get((rung.name, steps))
      if cell is None:
        continue
      desc = rung.description + (f" (caveat: {rung.caveat})" if rung.caveat else "")
      seeds = f"{len(cell['seeds'])}" + (f" ({cell['platform']})" if cell["platform"] != home else "")
      if cell.get("changed_on_resume"):
        seeds += f" (seeds {cell['changed_on_resume']} changed on resume)"
      lines.append(f"| `{rung.name}` | {desc} | {seeds} | "
                   + " | ".join(mean_std(cell.get(k), d) for k, _, d in shown) + " |")
    lines.append("")
  if len(whole) >= 2:
    short, long = whole[0], whole[-1]
    lines += [f"## Ranks at {short} and {long} steps", "",
              "Every rung ranked by its mean over seeds (1 = best) at the two budgets of the whole "
              "ladder. Neighbours closer than their seed spread can swap by chance: read a move "
              "against the tables above.", "",
              f"| rung | PSNR rank {short} → {long} | probe rank {short} → {long} |",
              "|---|---|---|"]
    probe = {name: (a, b) for name, a, b in rank_changes(table, rungs, short, long,
                                                           "probe_accuracy")}
    for name, a, b in rank_changes(table, rungs, short, long, "psnr"):
      pa, pb = probe.get(name, (None, None))
      mark = lambda x, y: f"{x} → {y}" + (" (moved)" if x != y else "")
      lines.append(f"| `{name}` | {mark(a, b)} | "
                   + ("–" if pa is None else mark(pa, pb)) + " |")
    lines.append("")
  for i, (section, lead, claims) in enumerate(ladder.claims):
    lines += [f"## {section}", "", *([VERDICT_RULE, ""] if i == 0 else []),
              *([lead, ""] if lead else []), *_claims_table(table, claims, budgets, home), ""]
    if any(c.metric == "spectral_power_b3" for c in claims) and ladder.equal_psnr:
      lines += _equal_psnr_section(table, *ladder.equal_psnr)
  lines += ["## The downstream question", "",
            "*Does transformed latent agreement improve representations, or only "
            "reconstructions?* Asked of the linear probe (top-1 on frozen codes), by the same "
            "rule:", "", *_claims_table(table, ladder.downstream, budgets, home), "",
            downstream_summary(table, budgets, ladder.downstream), ""]
  ref_path = os.path.join(out, "reference_probes.json")
  references = None
  if os.path.exists(ref_path):
    with open(ref_path) as f:
      ref = json.load(f)
    untrained = list(ref["untrained_encoder"].values())
    references = {"raw pixels": ref["pixels"], "untrained encoder": float(np.mean(untrained))}
    lines += [f"For scale, the same probe (same {ref['probe_train_examples']} training images, "
              f"same test split): on the raw pixels {ref['pixels']:.3f}; on an untrained "
              f"encoder's codes {mean_std(untrained, 3)} ({len(untrained)} "
              f"seed{'s' if len(untrained) != 1 else ''}; "
              f"`{rel(ref_path)}`).", ""]
  drawn, decided, chance = verdict_census(table, ladder.all_claims, budgets)
  if drawn:
    lines += ["## How many verdicts, and how many by chance", "",
              f"The tables above draw {drawn} verdicts (a claim at a budget where both rungs have "
              f"at least 2 seeds); {decided} of them are decided (consistent or contradicted). "
              f"Were every compared pair truly equal, the 2σ rule would decide about "
              f"{chance:.1f} of them by chance (a rate of {chance_of_a_verdict(3, 3):.3f} a "
              f"verdict at 3 seeds each, {chance_of_a_verdict(2, 2):.3f} at 2: a two-sided "
              "Student t test at the rule's threshold). A "
              "verdict whose claim **flips** between budgets (consistent at one, contradicted at "
              "another) or *changes* (decided at one, not at another) is marked in the last "
              "column.", ""]
  lines += other_dataset_section(table, ladder, out, home)
  agreement = platform_agreement(rows)
  if agreement:
    agree = sum(a[-1] for a in agreement)
    lines += ["## Platforms", "",
              f"Cells computed on two platforms (≥2 seeds each), compared by the verdict rule: "
              f"they agree when it cannot tell them apart. {agree} of {len(agreement)} "
              "comparisons agree.", "",
              "| rung | steps | metric | platforms | difference | 2σ | agree |",
              "|---|---|---|---|---|---|---|"]
    for rung, steps, metric, pa, pb, diff, threshold, ok in agreement:
      lines.append(f"| `{rung}` | {steps} | {metric} | {pa} − {pb} | {diff:+.3f} | "
                   f"{threshold:.3f} | {'yes' if ok else 'no'} |")
    lines.append("")
  spent = compute_spent(rows)
  lines += ["## Compute", "",
            "Summed wall time of training and evaluation per result, by platform (the ladder "
            "resumes each run from its previous budget, so a result's time covers its own "
            "segment; processes that shared a machine each count their own time):", ""]
  partial = training_time_only(rows)
  for platform, (n, seconds) in spent.items():
    lines.append(f"* {platform}: {n} results, {seconds / 3600:.1f} h"
                 + (f" ({partial[platform]} of them, stored before evaluation time was recorded, "
                    "count their training only)." if partial.get(platform) else "."))
  if others:
    estimate = seconds_if_all_on(rows, home)
    if estimate is not None:
      lines.append(f"* All of it on {home} (its own results as measured, the rest at its measured "
                   f"seconds per step of each rung): about {estimate / 3600:.0f} h.")
  lines.append("")
  if compare_with and os.path.exists(compare_with):
    lines += ["## Before and after the fidelity fixes", "",
              f"Seed 0 at 400 steps against `{compare_with}`: the same command and budget before "
              "the published recipes were matched (warmup + cosine schedule, flax initialisation, "
              "a per-image crop ratio in (0.1, 0.5) where the faithful config fixes 0.3, "
              "the un-normalised detail stack, our own filters, a live judge with a detached "
              "target and SIGReg on E(x), a masked-MSE baseline trained at 35 %, the masked "
              "objective's statistics from the clean batch only). One seed: read differences "
              "against the seed spread in the tables above.", "",
              *fidelity_comparison(out, compare_with), ""]
  figures = []
  bars = plot_bars(table, rungs, whole or budgets, os.path.join(out, "bars.png"), references)
  if bars:
    figures.append(f"![mean ± std per rung]({rel(bars)})")
  colour = plot_bars(table, rungs, whole or budgets, os.path.join(out, "colour_blur.png"),
                     panels=COLOUR_BLUR_PANELS)
  if colour:
    figures.append(f"![colour and blur, mean ± std per rung]({rel(colour)})")
  blur = plot_blur_against_psnr(table, rungs, os.path.join(out, "blur_vs_psnr.png"))
  if blur:
    figures.append(f"![high-band power and Fréchet distance against PSNR, every rung and "
                   f"budget]({rel(blur)})")
  curves = plot_budget_curves(table, os.path.join(out, "budget_curves.png"), home=home,
                              rungs=ladder.curve_rungs)
  if curves:
    figures.append(f"![budget curves of the headline pairs; hollow markers: {', '.join(others)}]"
                   f"({rel(curves)})" if others else
                   f"![budget curves of the headline pairs]({rel(curves)})")
  grid_steps = (whole or budgets)[-1]
  grid = plot_compare(out, rungs, grid_steps, os.path.join(out, "compare.png"))
  if grid:
    figures.append(f"![the same test images reconstructed by every rung, first seed, "
                   f"{grid_steps} steps]({rel(grid)})")
  lines += figures + ["", "Per-run results: `" + rel(os.path.join(out, "runs")) +
                      "/<rung>/seed<s>_step<b>.json`" +
                      (f" and `{rel(out)}/<platform>/runs/...`" if others else "") + ".", ""]
  path = out + ".md"
  with open(path, "w") as f:
    f.write("\n".join(lines))
  return path
