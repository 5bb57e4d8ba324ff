"""The ablation ladder on Fashion-MNIST: `python -m leae_jax.experiments.ladder --out=docs/results`.

Trains every rung with one architecture and one step budget, evaluates each
(DESIGN.md §5: PSNR, SSIM, linear probe, effective rank, SIGReg), and writes
`<out>.md` (the table plus checks of the blog's claims against the numbers),
a comparison grid and loss curves into `<out>/`. The default budget runs on a
2-core CPU in under an hour; pass `--steps` (and `--batch_size`) for a GPU.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from typing import Any

from absl import app
from absl import flags
import jax

from leae_jax import evaluate
from leae_jax import outputs
from leae_jax import train


@dataclasses.dataclass(frozen=True)
class Rung:
  name: str
  variant: str  # base_config variants applied to configs/fashion_mnist
  description: str


RUNGS = (
    Rung("mse", "mse", "pixel MSE baseline"),
    Rung("plain_live", "plain,live",
         "no transformation, live judge (the private-language loophole)"),
    Rung("pixel_mask_live", "pixel_mask,live", "pixel mask 0.7, live judge"),
    Rung("crop_live", "crop_resize,live", "crop-resize, live judge"),
    Rung("crop_step_frozen", "crop_resize,step_frozen", "crop-resize, step-frozen judge (headline recipe)"),
    Rung("crop_ema", "crop_resize,ema", "crop-resize, EMA judge (decay 0.999)"),
    Rung("detail_stack", "detail_stack,step_frozen",
         "detail stack + plain view, (mean + plain)/2, step-frozen"),
    Rung("masked_self_teaching", "masked,step_frozen", "masked: symmetric clean/masked objective"),
    Rung("masked_mse", "masked_mse",
         "masked: MSE from inpainted input, hole 50 % in training (encoder never sees clean input)"),
)

# Which judge form a rung's name means (docs/fidelity.md): the published live
# runs back-propagated through both sides and put SIGReg on the judge's codes.
JUDGE_NOTE = ("`*_live` rungs use the published live judge: gradient through both sides of the "
              "comparison, SIGReg on the judge's codes of both sides; step-frozen and EMA rungs "
              "put SIGReg on the clean code E(x).")

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Command-line flags (defined only when run as a program, so importing stays side-effect free)."""
  flags.DEFINE_string("out", "docs/results", "Output prefix: writes <out>.md and figures under <out>/.")
  flags.DEFINE_integer("steps", 400, "Training steps per rung.")
  flags.DEFINE_integer("batch_size", 128, "Global batch size.")
  flags.DEFINE_integer("hidden", 32, "Model width (all rungs).")
  flags.DEFINE_integer("latent_channels", 16, "Code channels (all rungs).")
  flags.DEFINE_integer("probe_train_examples", 10000, "Train codes for the linear probe (-1: all).")
  flags.DEFINE_integer("eval_batches", -1, "Test batches to evaluate (-1: the whole test split).")
  flags.DEFINE_integer("eval_batch_size", 500, "Evaluation batch size.")
  flags.DEFINE_list("rungs", [r.name for r in RUNGS], "Subset of rungs to run.")
  flags.DEFINE_string("idx_dir", None, "Fashion-MNIST IDX directory (default: Debian's).")
  flags.DEFINE_string("data_dir", None, "TFDS data dir.")
  flags.DEFINE_integer("sigreg_slices", 256, "SIGReg directions.")
  flags.DEFINE_string("compare_with", None,
                      "An earlier results.json: adds a before/after table to the report.")


def rung_config(rung: Rung, *, steps: int, batch_size: int, hidden: int, latent_channels: int,
                idx_dir: str | None = None, data_dir: str | None = None, sigreg_slices: int = 256,
                eval_batch_size: int = 500):
  """configs/fashion_mnist.py with the rung's variant and the shared budget."""
  from importlib import util

  path = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "configs", "fashion_mnist.py")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: run the ladder from a checkout of the repository.")
  spec = util.spec_from_file_location("fashion_mnist_config", path)
  module = util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config(rung.variant)
  c.num_train_steps = steps
  c.batch_size = batch_size
  c.model.hidden = hidden
  c.model.latent_channels = latent_channels
  c.objective.sigreg_slices = sigreg_slices
  c.log_every_steps = max(1, min(c.log_every_steps, steps // 20 or 1))
  c.eval_every_steps = 0  # evaluate_workdir does the full evaluation afterwards
  c.checkpoint_every_steps = steps
  c.eval_batch_size = eval_batch_size
  c.progress_bar = False
  if idx_dir:
    c.idx_dir = idx_dir
  if data_dir:
    c.data_dir = data_dir
  return c


def run_ladder(out: str, *, rungs: list[str], steps: int, batch_size: int, hidden: int,
               latent_channels: int, probe_train_examples: int, eval_batches: int = -1,
               idx_dir: str | None = None, data_dir: str | None = None,
               sigreg_slices: int = 256, eval_batch_size: int = 500,
               compare_with: str | None = None) -> list[dict[str, Any]]:
  """Trains and evaluates the chosen rungs; writes the report; returns one row per rung."""
  unknown = sorted(set(rungs) - {r.name for r in RUNGS})
  if unknown:
    raise ValueError(f"Unknown rungs {unknown}; valid: {', '.join(r.name for r in RUNGS)}.")
  fig_dir = out
  run_dir = os.path.join(out, "runs")
  os.makedirs(run_dir, exist_ok=True)
  rows = []
  for rung in [r for r in RUNGS if r.name in rungs]:
    workdir = os.path.join(run_dir, rung.name)
    shutil.rmtree(workdir, ignore_errors=True)  # a ladder run always starts fresh
    config = rung_config(rung, steps=steps, batch_size=batch_size, hidden=hidden,
                         latent_channels=latent_channels, idx_dir=idx_dir, data_dir=data_dir,
                         sigreg_slices=sigreg_slices, eval_batch_size=eval_batch_size)
    print(f"=== {rung.name}: {rung.description}", flush=True)
    start = time.perf_counter()
    train.train_and_evaluate(config, workdir)
    wall = time.perf_counter() - start
    res = evaluate.evaluate_workdir(workdir, max_batches=eval_batches,
                                    probe_train_examples=probe_train_examples)
    rows.append(dict(res, rung=rung.name, description=rung.description, train_wall_s=wall))
    print(json.dumps({k: v for k, v in rows[-1].items() if not k.endswith("_png")}), flush=True)
  if jax.process_index() == 0:
    write_report(out, rows, steps=steps, batch_size=batch_size, hidden=hidden,
                 latent_channels=latent_channels, fig_dir=fig_dir, run_dir=run_dir,
                 compare_with=compare_with)
  return rows


def _fmt(v: Any, digits: int = 2) -> str:
  return "–" if v is None else f"{v:.{digits}f}"


def _claims(by: dict[str, dict[str, Any]]) -> list[str]:
  """The blog's claims, each checked against this ladder's numbers."""
  lines = []

  def check(a: str, b: str, metric: str, blog: str, expect_a_higher: bool, unit: str = " dB"):
    if a not in by or b not in by or by[a].get(metric) is None or by[b].get(metric) is None:
      return
    da, db = by[a][metric], by[b][metric]
    holds = (da > db) == expect_a_higher
    verdict = "consistent with the blog" if holds else "**contradicts the blog**"
    lines.append(f"* {blog}: `{a}` {metric} {da:.2f}{unit} vs `{b}` {db:.2f}{unit} — {verdict}.")

  check("mse", "crop_step_frozen", "psnr",
        "The MSE baseline reconstructs (slightly) better than self-teaching", True)
  check("crop_live", "plain_live", "psnr",
        "Without transformations the loss is hackable (private language): plain is worse than crop-resize", True)
  check("crop_step_frozen", "crop_live", "psnr", "Step-freezing the judge improves crop-resize", True)
  check("crop_live", "pixel_mask_live", "psnr",
        "Crop-resize is a stronger transformation than pixel masking on natural images", True)
  check("crop_step_frozen", "detail_stack", "psnr",
        "Within the step-frozen setup crop-resize remains the strongest transformation", True)
  check("masked_self_teaching", "masked_mse", "hole_psnr",
        "Masked self-teaching slightly beats the masked-MSE baseline (inside the hole)", True)
  check("masked_self_teaching", "masked_mse", "psnr",
        "… and on clean input, which the masked-MSE encoder never saw", True)
  return lines


def _comparison(rows: list[dict[str, Any]], path: str) -> list[str]:
  """A table of each rung's metrics against an earlier results.json (e.g. before a change)."""
  with open(path) as f:
    before = {r["rung"]: r for r in json.load(f)}
  metrics = (("psnr", "PSNR", 2), ("ssim", "SSIM", 3), ("hole_psnr", "hole PSNR", 2),
             ("probe_accuracy", "probe", 3), ("latent_effective_rank", "eff. rank", 1))
  head = " | ".join(f"{label} before → after (Δ)" for _, label, _ in metrics)
  lines = [f"| rung | {head} |", "|---|" + "---|" * len(metrics)]
  for r in rows:
    b = before.get(r["rung"], {})
    cells = []
    for key, _, d in metrics:
      old, new = b.get(key), r.get(key)
      if old is None or new is None:
        cells.append("–")
      else:
        cells.append(f"{old:.{d}f} → {new:.{d}f} ({new - old:+.{d}f})")
    lines.append(f"| `{r['rung']}` | " + " | ".join(cells) + " |")
  return lines


def write_report(out: str, rows: list[dict[str, Any]], *, steps: int, batch_size: int, hidden: int,
                 latent_channels: int, fig_dir: str, run_dir: str,
                 compare_with: str | None = None) -> str:
  """Writes `<out>.md`, the comparison grid and the loss curves.

  `compare_with`: an earlier `results.json`; adds a before/after table.
  """
  by = {r["rung"]: r for r in rows}
  device = jax.devices()[0].device_kind
  compare = evaluate.compare_workdirs([os.path.join(run_dir, r["rung"]) for r in rows],
                                      os.path.join(fig_dir, "compare.png"))
  curves = plot_ladder_curves(rows, run_dir, os.path.join(fig_dir, "curves.png"))
  rel = lambda p: os.path.relpath(p, os.path.dirname(os.path.abspath(out + ".md")))
  lines = [
      "# The ablation ladder on Fashion-MNIST",
      "",
      f"Produced by `python -m leae_jax.experiments.ladder --out={out} --steps={steps} "
      f"--batch_size={batch_size}"
      + (f" --compare_with={compare_with}" if compare_with else "")
      + f"` on `{device}` ({jax.device_count()} device(s)). Every rung: "
      f"`configs/fashion_mnist.py` (32×32, padded), the same spatial-latent model "
      f"(hidden {hidden}, code 4×4×{latent_channels}, PyTorch initialisation), {steps} steps of "
      f"batch {batch_size}, AdamW (PyTorch defaults) at a constant 1e-3, the faithful recipes of "
      "`docs/fidelity.md`. " + JUDGE_NOTE + " Metrics on the full test split (10 000 images) with "
      "running normalisation statistics; linear probe on frozen standardised codes "
      f"({rows[0].get('probe_train_examples', '–')} train codes); SIGReg on chunks of 256 codes.",
      "",
      "| rung | method | PSNR (dB) | SSIM | hole PSNR | probe top-1 | eff. rank | SIGReg | train wall (s) |",
      "|---|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    lines.append(
        f"| `{r['rung']}` | {r['description']} | {_fmt(r.get('psnr'))} | {_fmt(r.get('ssim'), 3)} | "
        f"{_fmt(r.get('hole_psnr'))} | {_fmt(r.get('probe_accuracy'), 3)} | "
        f"{_fmt(r.get('latent_effective_rank'), 1)} / {r.get('latent_dim')} | "
        f"{_fmt(r.get('latent_sigreg'), 1)} | {r['train_wall_s']:.0f} |")
  lines += [
      "",
      "Hole PSNR: PSNR of the reconstruction of the inpainted input, inside the hole (masked rungs). "
      "Effective rank: exp(entropy) of the code covariance eigenvalues, out of the code size. "
      "SIGReg ≈ 1 for Gaussian codes; larger is further from Gaussian.",
      "",
      *((["## Before and after the fidelity fixes", "",
           f"Each rung against `{compare_with}` (the same command and budget before the "
           "published recipes were matched: warmup + cosine schedule, flax initialisation, the "
           "un-normalised detail stack, our own filters, a live judge with a detached target, "
           "the masked-MSE baseline trained at 35 %). One seed each, so differences below "
           "about 1 dB are within the seed noise this ladder has not yet measured.", "",
           *_comparison(rows, compare_with), ""]) if compare_with else []),
      "## The blog's claims, checked",
      "",
      *_claims(by),
      "",
      "Caveats: Fashion-MNIST is grayscale, so the blog's colour argument for crop-resize over "
      "pixel masking cannot show here; the budget is short (a CPU hour for the whole ladder), so "
      "rankings of close rungs may change with longer training; the masked-MSE encoder only ever "
      "sees masked input, so its clean-input numbers are out of distribution. All rungs use the "
      "same spatial latent (the blog's masked runs used a pooled one).",
      "",
      f"![same test images reconstructed by every rung]({rel(compare)})",
      "",
      f"![training curves]({rel(curves)})" if curves else "",
      "",
      "Per-rung details (metrics JSON, spectra, PCA pictures, TensorBoard events) are in "
      f"`{rel(run_dir)}/<rung>/`.",
      "",
  ]
  path = out + ".md"
  with open(path, "w") as f:
    f.write("\n".join(lines))
  with open(os.path.join(fig_dir, "results.json"), "w") as f:
    json.dump(rows, f, indent=2, sort_keys=True)
  return path


def plot_ladder_curves(rows: list[dict[str, Any]], run_dir: str, path: str) -> str | None:
  """Training loss, latent agreement and pixel MSE of every rung on shared axes."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  panels = (("train/loss", "training loss"), ("train/latent_agreement", "latent agreement"),
            ("train/pixel_mse", "pixel MSE (baselines)"), ("train/sigreg", "SIGReg (train batches)"))
  fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
  drawn = False
  for ax, (key, title) in zip(axes, panels):
    for r in rows:
      recs = [m for m in outputs.read_metrics(os.path.join(run_dir, r["rung"])) if key in m]
      if recs:
        ax.plot([m["step"] for m in recs], [m[key] for m in recs], label=r["rung"])
        drawn = True
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("step", fontsize=8)
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
  if not drawn:
    plt.close(fig)
    return None
  axes[0].legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def main(argv):
  del argv
  run_ladder(FLAGS.out, rungs=FLAGS.rungs, steps=FLAGS.steps, batch_size=FLAGS.batch_size,
             hidden=FLAGS.hidden, latent_channels=FLAGS.latent_channels,
             probe_train_examples=FLAGS.probe_train_examples, eval_batches=FLAGS.eval_batches,
             idx_dir=FLAGS.idx_dir, data_dir=FLAGS.data_dir, sigreg_slices=FLAGS.sigreg_slices,
             eval_batch_size=FLAGS.eval_batch_size, compare_with=FLAGS.compare_with)


if __name__ == "__main__":
  define_flags()
  app.run(main)
