"""The ladder's figures: bars per rung, budget curves, blur against PSNR, the comparison grid."""

from __future__ import annotations

import glob
import os
import re
from typing import Sequence

import numpy as np

from leae_jax.experiments.ladder.rungs import CURVE_RUNGS
from leae_jax.experiments.ladder.stats import BLUR_METRICS


def _pyplot():
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def _sample_std(values) -> float:
  """The standard deviation the tables print (ddof=1); 0 (no bar) for fewer than two seeds."""
  return float(np.std(values, ddof=1)) if values and len(values) > 1 else 0.0


def _error_bars(means: Sequence[float], stds: Sequence[float]) -> np.ndarray:
  """`yerr` of ± std bars for quantities that cannot be negative: the lower bar stops at 0."""
  means, stds = np.asarray(means, np.float64), np.asarray(stds, np.float64)
  return np.stack([np.minimum(stds, np.where(np.isfinite(means), np.maximum(means, 0.0), 0.0)),
                   stds])


BAR_PANELS = (("psnr", "PSNR (dB)"), ("probe_accuracy", "probe top-1"))


#: The colour and blur figure's panels (colour images only).
COLOUR_BLUR_PANELS = (("saturation_ratio", "saturation ratio (1: input's)"),
                      ("chroma_psnr", "chroma PSNR (dB)"),
                      ("spectral_power_b3", "high-band power (1: input's)"),
                      ("frechet_distance", "Fréchet distance (lower: closer)"))


def plot_bars(table, rungs, budgets, path: str, references: dict[str, float] | None = None,
              panels: Sequence[tuple[str, str]] = BAR_PANELS) -> str | None:
  """One panel per metric of `panels` (PSNR and probe accuracy by default): mean ± std
  over seeds, per rung and budget. None when no cell holds any of the metrics.

  The bars start at zero and their lower error bars stop there (every metric
  here is non-negative), except the probe's axis, which spans its values (they
  differ by hundredths) and says where it starts; `references` (label → probe
  accuracy, e.g. an untrained encoder's) are drawn on it as dashed lines.
  """
  panels = [(m, label) for m, label in panels
            if any(table.get((r.name, s), {}).get(m) for r in rungs for s in budgets)]
  if not panels:
    return None
  plt = _pyplot()
  fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
  axes = axes[0]
  width = 0.8 / max(len(budgets), 1)
  for ax, (metric, label) in zip(axes, panels):
    shown = []
    for i, steps in enumerate(budgets):
      means = [np.mean(table.get((r.name, steps), {}).get(metric) or [np.nan]) for r in rungs]
      stds = [_sample_std(table.get((r.name, steps), {}).get(metric)) for r in rungs]
      ax.bar(np.arange(len(rungs)) + i * width, means, width, yerr=_error_bars(means, stds),
             capsize=2, label=f"{steps} steps")
      shown += [m for m in means if np.isfinite(m)]
    if metric == "probe_accuracy" and shown:
      for j, (name, value) in enumerate((references or {}).items()):
        ax.axhline(value, color=f"C{len(budgets) + j}", linestyle="--", linewidth=1, label=name)
        shown.append(value)
      low = max(0.0, min(shown) - 0.02)
      ax.set_ylim(low, min(1.0, max(shown) + 0.01))
      if low > 0:
        label += f" (axis cut: starts at {low:.2f})"
      ax.legend(fontsize=7)
    ax.set_xticks(np.arange(len(rungs)) + width * (len(budgets) - 1) / 2)
    ax.set_xticklabels([r.name for r in rungs], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel(label)
    ax.grid(axis="y", alpha=0.3)
  axes[0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def plot_budget_curves(table, path: str, home: str = "CPU",
                       rungs: Sequence[str] = CURVE_RUNGS) -> str | None:
  """PSNR, hole PSNR and probe accuracy against steps for the headline pairs (mean ± std).

  Points from a platform other than `home` are drawn hollow.
  """
  series = {r: sorted(s for (name, s) in table if name == r) for r in rungs}
  if not any(len(v) > 1 for v in series.values()):
    return None
  plt = _pyplot()
  fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
  panels = (("psnr", "PSNR (dB)"), ("hole_psnr", "hole PSNR (dB)"), ("probe_accuracy", "probe top-1"))
  for ax, (metric, label) in zip(axes, panels):
    for i, (rung, steps) in enumerate(series.items()):
      points = [(s, table[(rung, s)]) for s in steps if table[(rung, s)].get(metric)]
      if not points:
        continue
      color = f"C{i}"  # one colour per rung in every panel (hole PSNR has only the masked two)
      xs = [s for s, _ in points]
      means = np.array([np.mean(c[metric]) for _, c in points])
      stds = np.array([_sample_std(c[metric]) for _, c in points])
      ax.plot(xs, means, label=rung, color=color)
      # Non-negative quantities: the band stops at zero.
      ax.fill_between(xs, np.maximum(means - stds, 0.0), means + stds, alpha=0.2, color=color)
      for x, m, (_, c) in zip(xs, means, points):
        ax.plot([x], [m], marker="o", color=color,
                markerfacecolor=color if c["platform"] == home else "white")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training steps")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def plot_blur_against_psnr(table, rungs, path: str) -> str | None:
  """High-band power and Fréchet distance against PSNR: one point per (rung, budget),
  mean ± std over seeds on both axes, a rung's budgets joined in order. None
  without those metrics (grey or non-image data)."""
  panels = [m for m in BLUR_METRICS if any(c.get(m.metric) for c in table.values())]
  if not panels:
    return None
  plt = _pyplot()
  fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.5), squeeze=False)
  for ax, claim in zip(axes[0], panels):
    for i, rung in enumerate(rungs):
      cells = [table[(n, st)] for (n, st) in sorted(table, key=lambda k: k[1]) if n == rung.name
               and table[(n, st)].get(claim.metric) and table[(n, st)].get("psnr")]
      if not cells:
        continue
      xs = np.array([np.mean(c["psnr"]) for c in cells])
      ys = np.array([np.mean(c[claim.metric]) for c in cells])
      ax.errorbar(xs, ys, xerr=[_sample_std(c["psnr"]) for c in cells],
                  yerr=_error_bars(ys, [_sample_std(c[claim.metric]) for c in cells]),
                  marker="o" if i < 10 else "s", markersize=4, capsize=2, linewidth=1,
                  color=f"C{i % 10}", label=rung.name)
    ax.set_xlabel("PSNR (dB)")
    ax.set_ylabel(dict(COLOUR_BLUR_PANELS)[claim.metric])
    ax.grid(alpha=0.3)
  axes[0][0].legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def plot_compare(out: str, rungs, steps: int, path: str) -> str | None:
  """Stored sample reconstructions of every rung (first seed with samples) at `steps`."""
  from leae_jax import outputs

  rows, labels = [], []
  for rung in rungs:
    found = sorted(glob.glob(os.path.join(out, "runs", rung.name, f"seed*_step{steps}_samples.npz")),
                   key=lambda p: int(re.search(r"seed(\d+)_", p).group(1)))
    # A rung that only another platform ran at `steps` is shown from there, named.
    where = ""
    if not found:
      found = sorted(glob.glob(os.path.join(out, "*", "runs", rung.name,
                                            f"seed0_step{steps}_samples.npz")))
      where = f" ({found[0].split(os.sep)[-4]})" if found else ""
    if not found:
      continue
    samples = np.load(found[0])
    if not rows:
      rows.append(samples["images"].astype(np.float32))
      labels.append("input")
    rows.append(samples["reconstruction"].astype(np.float32))
    labels.append(rung.name + where)
    if "masked_reconstruction" in samples:
      # The masked input beside its reconstruction, so that the hole can be seen.
      if "masked_input" in samples:
        rows.append(samples["masked_input"].astype(np.float32))
        labels.append(f"{rung.name} (masked input){where}")
      rows.append(samples["masked_reconstruction"].astype(np.float32))
      labels.append(f"{rung.name} (masked){where}")
  if not rows:
    return None
  return outputs.plot_labelled_rows(rows, labels, path)
