"""Statistics of stored results: pooling seeds by platform, the verdict rule and its chance rate,
verdicts across budgets, blur at equal PSNR, compute spent. Pure functions of the result rows."""

from __future__ import annotations

import glob
import json
import math
import os
from typing import Any, Sequence

import numpy as np

from leae_jax.experiments.ladder.rungs import Claim
from leae_jax.experiments.ladder.rungs import IMAGE_METRICS
from leae_jax.experiments.ladder.rungs import METRICS
from leae_jax.experiments.ladder.rungs import Rung


VERDICT_RULE = ("A claim *a beats b* is **consistent** when mean(a) − mean(b) exceeds twice the "
                "pooled standard deviation of the two rungs over seeds, **contradicted** when "
                "mean(b) − mean(a) does, and **not resolved at this budget** otherwise (and "
                "whenever either rung has fewer than 2 seeds).")


def verdict(a: Sequence[float], b: Sequence[float]) -> tuple[str, float, float]:
  """`(verdict, mean(a) − mean(b), threshold)` under `VERDICT_RULE`.

  The pooled standard deviation is `sqrt((var_a + var_b) / 2)` with the
  unbiased per-rung variances; the threshold is twice it.
  """
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  diff = float(a.mean() - b.mean()) if len(a) and len(b) else float("nan")
  if len(a) < 2 or len(b) < 2:
    return "not resolved at this budget", diff, float("nan")
  threshold = 2.0 * math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2.0)
  if diff > threshold:
    return "consistent", diff, threshold
  if -diff > threshold:
    return "contradicted", diff, threshold
  return "not resolved at this budget", diff, threshold


def platform_of(row: dict[str, Any]) -> str:
  """Where a stored result ran, as a short label ("CPU", "H100", ...).

  Results written before platforms were recorded all ran on CPU.
  """
  platform = row.get("platform", "cpu")
  if platform == "cpu":
    return "CPU"
  kind = row.get("device_kind") or platform.upper()
  return kind.removeprefix("NVIDIA ").split(" ")[0] if platform == "gpu" else kind


def load_results(out: str) -> list[dict[str, Any]]:
  """Every stored result under `<out>/runs/`, then under `<out>/*/runs/` (other platforms)."""
  rows = []
  for pattern in (os.path.join(out, "runs", "*", "seed*_step*.json"),
                  os.path.join(out, "*", "runs", "*", "seed*_step*.json")):
    for path in sorted(glob.glob(pattern)):
      with open(path) as f:
        rows.append(json.load(f))
  return rows


def aggregate_by_platform(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, int], dict[str, dict]]:
  """`{(rung, steps): {platform: {metric: [values over seeds], 'seeds': [...]}}}`.

  Platforms keep the order in which `rows` first name them.
  """
  table: dict[tuple[str, int], dict[str, dict]] = {}
  for r in rows:
    platform = platform_of(r)
    cell = table.setdefault((r["rung"], int(r["steps"])), {}).setdefault(
        platform, {"seeds": [], "platform": platform})
    cell["seeds"].append(int(r["seed"]))
    if r.get("changed_on_resume"):  # a resume changed what was trained, on purpose
      cell.setdefault("changed_on_resume", []).append(int(r["seed"]))
    for key, _, _ in METRICS + IMAGE_METRICS:
      if r.get(key) is not None:
        cell.setdefault(key, []).append(float(r[key]))
  return table


def aggregate(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
  """`{(rung, steps): {metric: [values over seeds], 'seeds': [...], 'platform': label}}`.

  Seeds of different platforms are never pooled: each cell takes the
  platform with the most seeds, ties going to the first platform of `rows`
  (`load_results` puts `<out>`'s own results first).
  """
  order = list(dict.fromkeys(platform_of(r) for r in rows))
  return {key: max(cells.values(), key=lambda c: (len(c["seeds"]), -order.index(c["platform"])))
          for key, cells in aggregate_by_platform(rows).items()}


def whole_budgets(table, rungs: Sequence[Rung]) -> list[int]:
  """Budgets at which every one of `rungs` has a result (the whole ladder's budgets)."""
  budgets = sorted({s for _, s in table})
  return [s for s in budgets if all((r.name, s) in table for r in rungs)]


def rank_changes(table, rungs: Sequence[Rung], short: int, long: int,
                 metric: str = "psnr") -> list[tuple[str, int, int]]:
  """`(rung, rank at short, rank at long)` by the mean of `metric` (1 = best)."""
  def ranks(steps):
    means = {r.name: np.mean(table[(r.name, steps)][metric]) for r in rungs
             if table.get((r.name, steps), {}).get(metric)}
    return {name: i + 1 for i, name in enumerate(sorted(means, key=means.get, reverse=True))}
  a, b = ranks(short), ranks(long)
  return [(r.name, a[r.name], b[r.name]) for r in rungs if r.name in a and r.name in b]


def platform_agreement(rows: Sequence[dict[str, Any]],
                       metrics: Sequence[str] = ("psnr", "hole_psnr", "probe_accuracy")
                       ) -> list[tuple[str, int, str, str, str, float, float, bool]]:
  """Cells that two platforms both hold with ≥2 seeds: does each metric agree?

  Returns `(rung, steps, metric, platform a, platform b, mean a − mean b,
  threshold, agree)`, agreeing when the verdict rule cannot tell them apart.
  """
  found = []
  for (rung, steps), cells in sorted(aggregate_by_platform(rows).items()):
    names = [p for p, c in cells.items() if len(c["seeds"]) >= 2]
    for i, pa in enumerate(names):
      for pb in names[i + 1:]:
        for metric in metrics:
          a, b = cells[pa].get(metric), cells[pb].get(metric)
          if a and b:
            v, diff, threshold = verdict(a, b)
            found.append((rung, steps, metric, pa, pb, diff, threshold,
                          v == "not resolved at this budget"))
  return found


def wall_seconds(row: dict[str, Any]) -> float:
  """A result's training + evaluation seconds; its training seconds alone where the
  result was stored before the total was recorded (`training_time_only`)."""
  return float(row.get("total_wall_s", row.get("segment_wall_s", 0.0)))


def training_time_only(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
  """`{platform: how many results recorded their training time but not their evaluation's}`."""
  found: dict[str, int] = {}
  for r in rows:
    if "total_wall_s" not in r:
      found[platform_of(r)] = found.get(platform_of(r), 0) + 1
  return found


def compute_spent(rows: Sequence[dict[str, Any]]) -> dict[str, tuple[int, float]]:
  """`{platform: (results, summed wall seconds of training + evaluation)}` (`wall_seconds`)."""
  spent: dict[str, tuple[int, float]] = {}
  for r in rows:
    n, s = spent.get(platform_of(r), (0, 0.0))
    spent[platform_of(r)] = (n + 1, s + wall_seconds(r))
  return spent


def seconds_if_all_on(rows: Sequence[dict[str, Any]], platform: str) -> float | None:
  """Wall seconds the stored results would have taken had all run on `platform`.

  Its own results count as measured; every (rung, seed) it has not taken to
  the longest stored budget adds the missing steps at its measured seconds
  per step for that rung (training and evaluation of its segments). None if
  a rung has no result on `platform` to measure a rate from.
  """
  own = sorted((r for r in rows if platform_of(r) == platform), key=lambda r: int(r["steps"]))
  seconds, steps = {}, {}
  reached: dict[tuple[str, int], int] = {}
  for r in own:
    key = (r["rung"], int(r["seed"]))
    steps[r["rung"]] = steps.get(r["rung"], 0) + int(r["steps"]) - reached.get(key, 0)
    seconds[r["rung"]] = seconds.get(r["rung"], 0.0) + wall_seconds(r)
    reached[key] = int(r["steps"])
  total = sum(seconds.values())
  longest: dict[tuple[str, int], int] = {}
  for r in rows:
    key = (r["rung"], int(r["seed"]))
    longest[key] = max(longest.get(key, 0), int(r["steps"]))
  for (rung, seed), last in longest.items():
    missing = last - reached.get((rung, seed), 0)
    if missing > 0:
      if not steps.get(rung):
        return None
      total += missing * seconds[rung] / steps[rung]
  return total


def mean_std(values: Sequence[float] | None, digits: int) -> str:
  if not values:
    return "–"
  if len(values) == 1:
    return f"{values[0]:.{digits}f}"
  return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def claim_cells(table, claim: Claim, steps: int) -> tuple[dict, dict] | None:
  """The two rungs' cells of a claim at one budget, or None if either lacks its metric."""
  a, b = table.get((claim.a, steps)), table.get((claim.b, steps))
  if not a or not b or not a.get(claim.metric) or not b.get(claim.metric):
    return None
  return a, b


def claim_verdict(claim: Claim, a: Sequence[float], b: Sequence[float]) -> tuple[str, float, float]:
  """`verdict` of the claim's direction: `(verdict, mean(a) − mean(b), threshold)`.

  A lower-is-better claim (a Fréchet distance) is consistent when mean(a) is
  below mean(b) by more than the threshold; the difference stays a − b.
  """
  if not claim.lower_is_better:
    return verdict(a, b)
  v, diff, threshold = verdict(b, a)
  return v, -diff, threshold


def _drawn(table, claim: Claim, budgets: Sequence[int], min_seeds: int):
  """Yields `(budget, (cell a, cell b), (verdict, difference, threshold))` at the budgets
  where both rungs hold the claim's metric from at least `min_seeds` seeds."""
  for steps in budgets:
    cells = claim_cells(table, claim, steps)
    if cells is not None and min(len(c[claim.metric]) for c in cells) >= min_seeds:
      yield steps, cells, claim_verdict(claim, cells[0][claim.metric], cells[1][claim.metric])


def drawn_verdicts(table, claim: Claim, budgets: Sequence[int], *, min_seeds: int = 2
                   ) -> dict[int, tuple[str, float, float]]:
  """`{budget: (verdict, difference, threshold)}` at the budgets where both rungs hold the
  claim's metric from at least `min_seeds` seeds (2: only the verdicts the rule can draw)."""
  return {steps: v for steps, _, v in _drawn(table, claim, budgets, min_seeds)}


def claim_verdicts(table, claim: Claim, budgets: Sequence[int], *, min_seeds: int = 1
                   ) -> dict[int, str]:
  """`{budget: verdict}` of `drawn_verdicts`."""
  return {steps: v[0] for steps, v in
          drawn_verdicts(table, claim, budgets, min_seeds=min_seeds).items()}


def across_budgets(verdicts: dict[int, str]) -> str:
  """Whether a claim's verdicts agree between budgets: '–' (one budget), 'same',
  'changes' (resolved at some, not at others) or 'flips' (consistent at one,
  contradicted at another)."""
  kinds = set(verdicts.values())
  if len(verdicts) < 2:
    return "–"
  if {"consistent", "contradicted"} <= kinds:
    return "**flips**"
  return "same" if len(kinds) == 1 else "changes"


def one_answer(verdicts: dict[int, str]) -> str:
  """A dataset's answer to a claim over its budgets: 'consistent' or 'contradicted' when
  every decided verdict says so, 'flips' when they disagree, 'not resolved' when none is
  decided, '–' when none is drawn."""
  decided = {v for v in verdicts.values() if v in ("consistent", "contradicted")}
  if not verdicts:
    return "–"
  if not decided:
    return "not resolved"
  return decided.pop() if len(decided) == 1 else "flips"


def across_datasets(first: dict[int, str], second: dict[int, str]) -> str:
  """Whether two datasets answer a claim alike, from `one_answer` of each: 'holds on both',
  'contradicted on both', '**differs**' (consistent on one, contradicted on the other),
  'decided on one only', 'flips on one' (or 'on both'), 'undecided on both', or '–' (one
  draws none)."""
  answers = (one_answer(first), one_answer(second))
  decided = {"consistent", "contradicted"}
  if "–" in answers:
    return "–"
  if answers == ("consistent", "consistent"):
    return "holds on both"
  if answers == ("contradicted", "contradicted"):
    return "contradicted on both"
  if set(answers) == decided:
    return "**differs**"
  if answers == ("flips", "flips"):
    return "flips on both"
  if "flips" in answers:
    return "flips on one"
  return "decided on one only" if set(answers) & decided else "undecided on both"


def chance_of_a_verdict(n_a: int, n_b: int) -> float:
  """Probability that the verdict rule decides (either way) between two rungs whose
  true means are equal, with normal seed noise of one standard deviation: the
  rule's false-verdict rate. Two-sided Student t with n_a + n_b − 2 degrees of
  freedom at the rule's threshold, 2·s_p = t·s_p·√(1/n_a + 1/n_b) (exact for
  n_a = n_b, where s_p is the pooled standard deviation); 0.070 at 3 seeds each.
  """
  from scipy import stats  # pylint: disable=g-import-not-at-top  (installed with JAX)

  if n_a < 2 or n_b < 2:
    return 0.0
  critical = 2.0 / math.sqrt(1.0 / n_a + 1.0 / n_b)
  return float(2.0 * stats.t.sf(critical, n_a + n_b - 2))


def verdict_census(table, claims: Sequence[Claim], budgets: Sequence[int]
                   ) -> tuple[int, int, float]:
  """`(verdicts drawn, how many decided, how many the rule would decide by chance)`
  over the verdicts `drawn_verdicts` draws (both rungs with ≥2 seeds)."""
  drawn, decided, chance = 0, 0, 0.0
  for claim in claims:
    for _, (a, b), (v, _, _) in _drawn(table, claim, budgets, min_seeds=2):
      drawn += 1
      decided += v != "not resolved at this budget"
      chance += chance_of_a_verdict(len(a[claim.metric]), len(b[claim.metric]))
  return drawn, decided, chance


#: What "less blurred" is measured by, at equal PSNR (`equal_psnr_pairs`).
BLUR_METRICS = (Claim("", "", "", "spectral_power_b3"),
                Claim("", "", "", "frechet_distance", lower_is_better=True))


def equal_psnr_pairs(table, a: str, b: str) -> list[dict[str, Any]]:
  """Rung `a` at each of its budgets against rung `b` at the budget whose mean PSNR is
  nearest: the PSNR verdict (a fair pair is one the rule cannot tell apart) and
  each of `BLUR_METRICS`' verdicts (a's direction: a less blurred than b).

  Returns `[{'a_steps', 'b_steps', 'psnr': (verdict, diff, threshold),
  metric: (verdict, diff, threshold), ...}]`.
  """
  pairs = []
  b_cells = {steps: cell for (name, steps), cell in table.items() if name == b and cell.get("psnr")}
  for (name, steps), cell in sorted(table.items(), key=lambda kv: kv[0][1]):
    if name != a or not cell.get("psnr") or not b_cells:
      continue
    nearest = min(b_cells, key=lambda sb: (abs(np.mean(b_cells[sb]["psnr"]) - np.mean(cell["psnr"])), sb))
    other = b_cells[nearest]
    pair = {"a_steps": steps, "b_steps": nearest, "psnr": verdict(cell["psnr"], other["psnr"])}
    for claim in BLUR_METRICS:
      if cell.get(claim.metric) and other.get(claim.metric):
        pair[claim.metric] = claim_verdict(claim, cell[claim.metric], other[claim.metric])
    pairs.append(pair)
  return pairs
