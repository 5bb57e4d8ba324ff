"""What a run writes to its workdir: metrics.jsonl, TensorBoard events, PNG grids, plots.

Only numpy / PIL / matplotlib / tensorboardX here: nothing in this module
touches the device, so writing never stalls a jitted step.
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any, Mapping, Sequence

import numpy as np

METRICS_FILE = "metrics.jsonl"


class WriteError(OSError):
  """A file of the run could not be written (disk full, permissions, quota).

  The message says what failed and which checkpoint is intact to resume from.
  """


def _to_python(value: Any) -> Any:
  value = np.asarray(value)
  return value.item() if value.ndim == 0 else value.tolist()


class MetricWriter:
  """Appends scalars to `metrics.jsonl` and TensorBoard; images to TensorBoard and PNG.

  `enabled=False` (non-zero processes under multi-host) makes every call a
  no-op, so callers need no `if process_index == 0` of their own.
  """

  def __init__(self, workdir: str, *, enabled: bool = True):
    self.workdir = workdir
    self.enabled = enabled
    self._tb = None
    if enabled:
      os.makedirs(workdir, exist_ok=True)
      import tensorboardX  # only the writing process needs it

      self._tb = tensorboardX.SummaryWriter(logdir=workdir, flush_secs=30)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    """One JSON object per call: `{"step": step, **scalars}`."""
    if not self.enabled:
      return
    record = {"step": int(step), **{k: _to_python(v) for k, v in scalars.items()}}
    path = os.path.join(self.workdir, METRICS_FILE)
    try:
      with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
    except OSError as err:
      raise WriteError(f"could not append step {int(step)} to {path} "
                       f"({err.strerror or err})") from err
    for k, v in record.items():
      if k != "step" and isinstance(v, (int, float)):
        self._tb.add_scalar(k, v, int(step))

  def write_image(self, step: int, name: str, image: np.ndarray) -> str | None:
    """Writes an HWC [0, 1] image to TensorBoard and `<name>_<step>.png`; returns the path."""
    if not self.enabled:
      return None
    self._tb.add_image(name, np.asarray(image), int(step), dataformats="HWC")
    path = os.path.join(self.workdir, f"{name.replace('/', '_')}_{int(step):08d}.png")
    try:
      save_png(path, image)
    except OSError as err:
      raise WriteError(f"could not write {path} ({err.strerror or err})") from err
    return path

  def flush(self) -> None:
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
      self._tb = None


def read_metrics(workdir: str) -> list[dict]:
  """All records of a workdir's `metrics.jsonl` (for notebooks and plots)."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def truncate_metrics(workdir: str, step: int) -> int:
  """Drops records after `step` (a resumed run re-logs them); returns how many were dropped."""
  path = os.path.join(workdir, METRICS_FILE)
  records = read_metrics(workdir)
  kept = [r for r in records if r.get("step", 0) <= step]
  if len(kept) != len(records):
    with open(path + ".tmp", "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in kept)
    os.replace(path + ".tmp", path)
  return len(records) - len(kept)


def image_grid(rows: Sequence[np.ndarray], pad: int = 1) -> np.ndarray:
  """Stacks batches `(N, H, W, C)` as rows of a grid; returns HWC float in [0, 1] (RGB)."""
  rows = [np.clip(np.asarray(r, np.float32), 0.0, 1.0) for r in rows]
  n, h, w, _ = rows[0].shape
  grid = np.ones((len(rows) * (h + pad) + pad, n * (w + pad) + pad, 3), np.float32)
  for i, row in enumerate(rows):
    if row.shape[-1] == 1:
      row = np.repeat(row, 3, axis=-1)
    for j in range(n):
      y, x = pad + i * (h + pad), pad + j * (w + pad)
      grid[y : y + h, x : x + w] = row[j]
  return grid


def plot_labelled_rows(rows: Sequence[np.ndarray], labels: Sequence[str], path: str) -> str:
  """One image batch `(N, H, W, C)` per row, each named at its left; saved as PNG at `path`."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  n = rows[0].shape[0]
  fig, axes = plt.subplots(len(rows), 1, figsize=(1.2 * n + 3, 1.25 * len(rows)), squeeze=False)
  for ax, row, label in zip(axes[:, 0], rows, labels):
    ax.imshow(image_grid([row]), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def save_png(path: str, image: np.ndarray, min_side: int = 256) -> None:
  """Saves an HWC [0, 1] float image as an 8-bit PNG.

  Small images are enlarged by an integer nearest-neighbour factor until their
  shorter side reaches `min_side`, so 32-pixel tiles stay legible.
  """
  from PIL import Image

  image = np.asarray(image, np.float32)
  factor = max(1, -(-min_side // min(image.shape[:2])))
  if factor > 1:
    image = image.repeat(factor, axis=0).repeat(factor, axis=1)
  img = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
  if img.shape[-1] == 1:
    img = img[..., 0]
  Image.fromarray(img).save(path)


def curve_panels(records: Sequence[Mapping[str, Any]],
                 keys: Sequence[str] | None = None) -> dict[str, dict[str, list[tuple[int, float]]]]:
  """Groups scalar series from metrics records into panels: {panel title: {line label: points}}.

  One panel per series, titled by its key, except numbered bands
  (`eval/spectral_power_b0`, `_b1`, ...), which are the lines `b0`, `b1`, ...
  of one panel (`eval/spectral_power`). Training and evaluation series stay
  apart: their values are not comparable (evaluation batches are larger, and
  SIGReg's statistic grows with the batch). By default every numeric `train/`
  and `eval/` series but throughput, the epoch and the count of evaluated images.
  """
  if keys is None:
    keys = sorted({k for r in records for k, v in r.items()
                   if k != "step" and isinstance(v, (int, float)) and
                   (k.startswith("train/") or k.startswith("eval/")) and "images_per_s" not in k
                   and k not in ("train/epoch", "eval/num_images")})
  panels: dict[str, dict[str, list[tuple[int, float]]]] = {}
  for key in keys:
    points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
    if points:
      band = re.fullmatch(r"(.+)_(b\d+)", key)
      title, label = (band.group(1), band.group(2)) if band else (key, key)
      panels.setdefault(title, {})[label] = points
  return panels


def plot_curves(records: Sequence[Mapping[str, Any]], path: str,
                keys: Sequence[str] | None = None) -> str | None:
  """Plots scalar series from metrics records, one panel per quantity (`curve_panels`);
  returns the path, or None when there is nothing to plot."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  panels = curve_panels(records, keys)
  if not panels:
    return None
  cols = min(3, len(panels))
  rows = math.ceil(len(panels) / cols)
  # Fixed margins: tight_layout would measure every text (about half the time of a small figure).
  fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False,
                           gridspec_kw=dict(left=0.12 / cols ** 0.5, right=0.97, bottom=0.5 / (3.2 * rows),
                                            top=1 - 0.35 / (3.2 * rows), wspace=0.35, hspace=0.3 + 0.1 * rows))
  for ax, (title, lines) in zip(axes.flat, panels.items()):
    values = [v for pts in lines.values() for _, v in pts]
    for label, pts in lines.items():
      steps, ys = zip(*pts)
      ax.plot(steps, ys, marker="." if len(pts) < 30 else None, label=label)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("step", fontsize=8)
    if all(v > 0 for v in values) and max(values) / max(min(values), 1e-12) > 50:
      ax.set_yscale("log")
    if len(lines) > 1:
      ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
  for ax in list(axes.flat)[len(panels):]:
    ax.axis("off")
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def series_grid(rows: Sequence[np.ndarray], *, max_channels: int = 3, columns: int = 4,
                labels: Sequence[str] = ("input", "reconstruction", "masked input",
                                         "masked reconstruction")) -> np.ndarray:
  """Series against their reconstructions, one panel per example; returns HWC float in [0, 1].

  `rows` are batches `(N, L, C)` in the order of `evaluation.grid_rows`
  (input, reconstruction, then the masked input and reconstruction of masked
  runs). Each panel draws the first `max_channels` channels of one example,
  one colour per channel: the input solid, the reconstruction dashed, the
  others dotted / dash-dotted.
  """
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  rows = [np.asarray(r, np.float32) for r in rows]
  n = rows[0].shape[0]
  cols = max(1, min(columns, n))
  grid_rows = max(1, math.ceil(n / cols))
  fig, axes = plt.subplots(grid_rows, cols, figsize=(3.2 * cols, 2.0 * grid_rows), squeeze=False,
                           sharex=True)
  styles = ("-", "--", ":", "-.")
  for j, ax in enumerate(axes.flat):
    if j >= n:
      ax.axis("off")
      continue
    for i, row in enumerate(rows[:len(styles)]):
      for ch in range(min(max_channels, row.shape[-1])):
        ax.plot(row[j, :, ch], styles[i], color=f"C{ch}", linewidth=1.0 if i else 1.4,
                label=f"{labels[i] if i < len(labels) else i}" if ch == 0 else None)
    ax.tick_params(labelsize=6)
    ax.grid(alpha=0.3)
  axes.flat[0].legend(fontsize=6, loc="upper right")
  fig.tight_layout()
  fig.canvas.draw()
  image = np.asarray(fig.canvas.buffer_rgba(), np.float32)[..., :3] / 255.0
  plt.close(fig)
  return image
