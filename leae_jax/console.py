"""What a training run shows people: a header, the progress bar, eval lines, a summary.

The console is for people; everything else (the resolved config, library
logs) goes to the workdir (see `cli.log_to_workdir`).
"""

from __future__ import annotations

import os
from absl import logging
import ml_collections

from leae_jax import modalities
from leae_jax import objectives


def describe(config: ml_collections.ConfigDict) -> str:
  """What a config trains, in a few words (the console's header)."""
  o = config.objective
  if not objectives.spec(o.name).judged:  # a pixel baseline: its name says it
    what = o.name
  else:
    views_ = o.views or "no transformation"
    what = f"{o.name} ({views_}, {o.judge} judge, SIGReg {o.sigreg_weight:g})"
  size = modalities.get(config.modality).size_label(config.image_size, config.image_channels)
  return f"{config.dataset} {size} · {what}"


def format_eval(results: dict[str, float]) -> str:
  """The headline evaluation numbers, for people (metrics.jsonl has them all)."""
  shown = [("psnr", "PSNR {:.2f} dB"), ("ssim", "SSIM {:.3f}"), ("hole_psnr", "hole PSNR {:.2f} dB"),
           ("chroma_psnr", "chroma PSNR {:.2f} dB"), ("saturation_ratio", "saturation ×{:.2f}"),
           ("frechet_distance", "Fréchet {:.3g}"),
           ("mse", "MSE {:.5f}"), ("mae", "MAE {:.4f}"), ("loss", "loss {:.4g}")]
  return " · ".join(fmt.format(results[k]) for k, fmt in shown if k in results)


def closing_summary(workdir: str, step: int, seconds: float, eval_results: dict[str, float],
                    grid: str | None, preempted: bool, interrupted: bool = False,
                    logs: bool = True) -> str:
  """The console's last line: where the run stands and where its results are
  (`logs`: whether the library logs went to the workdir's `logs/`)."""
  minutes, secs = divmod(int(round(seconds)), 60)
  state = ("interrupted (Ctrl-C)" if interrupted else "stopped by SIGTERM" if preempted
           else "done") + f" at step {step} in {minutes}m{secs:02d}s"
  numbers = f" · {format_eval(eval_results)}" if eval_results else ""
  files = ["metrics.jsonl", "loss_curves.png", "checkpoints/"] + (["logs/"] if logs else [])
  if grid:
    files.insert(1, os.path.basename(grid))
  return f"{state}{numbers} · results in {workdir}: {', '.join(files)}"


class Progress:
  """Console progress: a tqdm bar updated at log steps, or log lines without one."""

  _KEYS = ("epoch", "loss", "latent_agreement", "sigreg", "pixel_mse", "images_per_s")

  def __init__(self, total: int, initial: int, *, enabled: bool, bar: bool):
    self.enabled = enabled
    self._bar = None
    if enabled and bar:
      import tqdm

      self._bar = tqdm.tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

  def update(self, step: int, summary: dict[str, float]) -> None:
    if self._bar is None:
      if self.enabled:
        logging.info("step %d: %s", step, {k: round(v, 5) for k, v in summary.items()})
      return
    self._bar.update(step - self._bar.n)
    self._bar.set_postfix({k.replace("latent_agreement", "agree").replace("images_per_s", "img/s"):
                           f"{summary[k]:.4g}" for k in self._KEYS if k in summary})

  def write(self, message: str) -> None:
    """A line on stdout (above the bar when there is one)."""
    if not self.enabled:
      return
    if self._bar is not None:
      self._bar.write(message)
    else:
      print(message, flush=True)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
