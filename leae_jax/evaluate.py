"""Evaluate trained runs: `python -m leae_jax.evaluate --workdir=DIR [--step=N] [--compare=D1,D2,...]`.

For one run, on the whole test split:
* reconstruction: pixel MSE, PSNR, SSIM (and for masked runs PSNR of the
  masked reconstruction, overall and inside the hole);
* linear probe on frozen, standardised clean codes (labelled datasets);
* latent health: SIGReg statistic (mean over chunks of 256 codes, so it is
  comparable across methods), effective rank of the code covariance,
  per-dimension std (min / median), the eigenvalue spectrum as a PNG;
* for spatial codes, a PCA picture: each input beside its code's first three
  principal components rendered as RGB at latent resolution.

Prints one JSON object and writes it to `DIR/eval_<step>.json`. With
`--compare`, also renders the same test images reconstructed by several runs
side by side.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

from absl import flags
import jax
import ml_collections
import numpy as np

from leae_jax import base_config
from leae_jax import checkpoints
from leae_jax import cli
from leae_jax import data
from leae_jax import evaluation
from leae_jax import objectives
from leae_jax import outputs
from leae_jax import probe as probe_lib
from leae_jax import resume_check
from leae_jax import train



def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config a run saved in its workdir."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: is {workdir} the --workdir of a training run?")
  with open(path) as f:
    return train.resolve(base_config.from_saved(json.load(f)))


def restore_state(workdir: str, config: ml_collections.ConfigDict, trainer: train.Trainer,
                  step: int | None = None) -> train.TrainState:
  """The train state saved at `step` (newest loadable when None)."""
  ckpt = checkpoints.Checkpointer(workdir, config, async_save=False)
  try:
    restored = ckpt.restore(trainer.init_state(), step=step)
  finally:
    ckpt.close()
  if restored is None:
    raise FileNotFoundError(f"No checkpoint to evaluate in {ckpt.directory}.")
  return restored.state  # already in the trainer's state shardings


def pca_picture(images: np.ndarray, codes: np.ndarray, fit_codes: np.ndarray) -> np.ndarray:
  """Rows: inputs | their spatial codes' top-3 principal components as RGB (latent resolution).

  The PCA basis and the colour scaling come from `fit_codes` (all test codes),
  so colours mean the same thing in every picture.
  """
  c = fit_codes.shape[-1]
  vectors = fit_codes.reshape(-1, c).astype(np.float64)
  mean = vectors.mean(0)
  _, _, vt = np.linalg.svd(vectors - mean, full_matrices=False)
  basis = vt[:3].T  # (c, 3)
  fit_proj = (vectors - mean) @ basis
  lo, hi = np.percentile(fit_proj, 1, axis=0), np.percentile(fit_proj, 99, axis=0)
  proj = (codes.reshape(-1, c) - mean) @ basis
  rgb = np.clip((proj - lo) / np.maximum(hi - lo, 1e-8), 0, 1).reshape(*codes.shape[:3], 3)
  # Nearest-neighbour up to the image side (which need not be a multiple of
  # the grid: the first architecture's 28-px images have a 4x4 code).
  rows = np.arange(images.shape[1]) * codes.shape[1] // images.shape[1]
  cols = np.arange(images.shape[2]) * codes.shape[2] // images.shape[2]
  rgb = rgb[:, rows][:, :, cols]
  return outputs.image_grid([images, rgb])


def plot_spectrum(eigenvalues: np.ndarray, path: str, title: str = "") -> str:
  """Log-scale eigenvalue spectrum of the code covariance."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(5, 3.2))
  ax.semilogy(np.arange(1, len(eigenvalues) + 1), np.maximum(eigenvalues, 1e-12))
  ax.set_xlabel("component")
  ax.set_ylabel("eigenvalue")
  ax.set_title(title or "code covariance spectrum", fontsize=9)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def evaluate_workdir(workdir: str, step: int | None = None, *, max_batches: int = -1,
                     probe: bool = True, probe_train_examples: int = -1,
                     figures: bool = True) -> dict[str, Any]:
  """Evaluates a run's checkpoint; writes `eval_<step>.json` (and figures) and returns the results."""
  config = load_config(workdir)
  trainer = train.Trainer(config, trains=False)
  state = restore_state(workdir, config, trainer, step)
  step = int(jax.device_get(state.step))
  result = trainer.evaluate(state, max_batches=max_batches, collect_codes=True)
  results: dict[str, Any] = dict(result.metrics, step=step, dataset=config.dataset,
                                 objective=config.objective.name,
                                 judge=(config.objective.judge
                                        if objectives.spec(config.objective.name).judged else None))
  health, eig = evaluation.latent_health(result.codes, seed=config.seed)
  results.update(health)
  changed = resume_check.changed_fields(workdir)
  if changed:  # a resume changed what is trained, on purpose (`--config.allow_changes`)
    results["changed_on_resume"] = sorted(changed)
  info = data.describe(config.dataset, **data.config_options(config))
  if probe and info.has_labels and info.num_classes:
    train_codes, train_labels = evaluation.encode_split(trainer, state, "train", probe_train_examples)
    p = probe_lib.linear_probe(train_codes, train_labels, result.codes, result.labels, info.num_classes)
    results.update(probe_accuracy=p["accuracy"], probe_train_accuracy=p["train_accuracy"],
                   probe_train_examples=int(len(train_codes)))
  is_main = jax.process_index() == 0
  if is_main and figures:
    results["spectrum_png"] = plot_spectrum(eig, os.path.join(workdir, f"spectrum_{step}.png"),
                                            f"{os.path.basename(os.path.abspath(workdir))} @ {step}")
    if result.codes.ndim == 4:
      n = config.num_grid_images
      path = os.path.join(workdir, f"pca_{step}.png")
      outputs.save_png(path, pca_picture(result.images["images"][:n], result.codes[:n], result.codes))
      results["pca_png"] = path
  if is_main:
    with open(os.path.join(workdir, f"eval_{step}.json"), "w") as f:
      json.dump(results, f, indent=2, sort_keys=True)
  return results


def _shown_at(trainer: train.Trainer, state: Any, indices: Sequence[int]) -> dict[str, np.ndarray]:
  """What the first evaluation batch shows (`evaluation.GRID_ROWS`), for the test images at
  `indices` instead of the first ones (one process; padded to split over its devices)."""
  if jax.process_count() > 1:
    raise ValueError("--compare_images runs on one process.")
  c = trainer.config
  images, _ = data.load_arrays(c.dataset, "test", indices=indices, to_float=True,
                               **data.config_options(c))
  padded = -(-len(images) // trainer.data_shards) * trainer.data_shards
  images = np.concatenate([images, np.repeat(images[-1:], padded - len(images), axis=0)])
  out = trainer.eval_step(state, trainer.global_batch(images),
                          jax.random.fold_in(jax.random.key(c.seed + 1), 0))
  return {k: np.asarray(out[k])[:len(indices)] for k in evaluation.GRID_ROWS if k in out}


def shown_images(workdir: str, num_images: int = 8, *, step: int | None = None,
                 indices: Sequence[int] | None = None) -> dict[str, np.ndarray]:
  """A run's reconstructions of its first `num_images` test images or series (or those at `indices`).

  From the checkpoint at `step` (default: the newest), evaluated as one batch of
  exactly those images on any number of devices: the rows of `evaluation.GRID_ROWS`
  (`images`, `reconstruction`, and for masked runs `masked_input`,
  `masked_reconstruction`). The one home of a run's sample images (`--compare`, the
  ladders' stored samples).
  """
  config = load_config(workdir)
  count = num_images if indices is None else len(indices)
  config.eval_batch_size = count  # evaluation pads its batches for any device count
  config.num_grid_images = count
  trainer = train.Trainer(config, trains=False)
  state = restore_state(workdir, config, trainer, step)
  if indices is None:
    return trainer.evaluate(state, max_batches=1).images
  return _shown_at(trainer, state, indices)


def compare_workdirs(workdirs: Sequence[str], path: str, *, num_images: int = 8,
                     indices: Sequence[int] | None = None) -> str:
  """The same test images reconstructed by each run, one row per run (newest checkpoints).

  The first `num_images` test images, or those at `indices` (e.g. one per
  class of an image folder, whose test split is sorted by class). Runs of
  masked objectives add a row of masked reconstructions (same holes for
  every run). Row labels are drawn beside the grid.
  """
  rows, labels, inputs = [], [], None
  for workdir in workdirs:
    config = load_config(workdir)
    if config.modality != "image":
      raise ValueError(f"--compare draws image grids, but {workdir} trained on {config.modality} "
                       f"data; its evaluation pictures are {workdir}/eval_grid_<step>.png.")
    shown = shown_images(workdir, num_images, indices=indices)
    name = os.path.basename(os.path.abspath(workdir))
    if inputs is None:
      inputs = shown["images"]
      rows.append(inputs)
      labels.append("input")
    elif shown["images"].shape != inputs.shape or not np.allclose(shown["images"], inputs):
      raise ValueError(f"{workdir} evaluates on different test images than {workdirs[0]}; "
                       "compare runs of the same dataset and image size.")
    rows.append(shown["reconstruction"])
    labels.append(name)
    if "masked_reconstruction" in shown:
      rows.append(shown["masked_reconstruction"])
      labels.append(f"{name} (masked)")
  return outputs.plot_labelled_rows(rows, labels, path)


FLAGS = flags.FLAGS


def define_flags() -> None:
  """Command-line flags (defined only when run as a program, so importing stays side-effect free)."""
  flags.DEFINE_string("workdir", None, "Workdir of a training run.")
  flags.DEFINE_integer("step", -1, "Checkpoint step to evaluate (-1: the newest).")
  flags.DEFINE_integer("eval_batches", -1, "Evaluate only this many test batches (-1: all).")
  flags.DEFINE_bool("probe", True, "Fit the linear probe (labelled datasets).")
  flags.DEFINE_integer("probe_train_examples", -1, "Train codes for the probe (-1: the whole split).")
  flags.DEFINE_list("compare", [], "Workdirs to reconstruct side by side (newest checkpoints).")
  flags.DEFINE_string("compare_out", None, "Where to write the comparison grid (default: WORKDIR/compare.png).")
  flags.DEFINE_list("compare_images", [], "Test images to compare, by index (default: the first 8).")


def main(argv):
  del argv  # cli.run rejects positional arguments
  if not FLAGS.workdir and not FLAGS.compare:
    raise cli.UserError("--workdir (a training run's directory) or --compare is required.")
  for name in ("eval_batches", "probe_train_examples"):
    cli.count_or_all(name, FLAGS[name].value)
  if FLAGS.workdir and os.path.isdir(FLAGS.workdir):
    cli.log_to_workdir(FLAGS.workdir, "evaluate")
  try:
    if FLAGS.workdir:
      results = evaluate_workdir(FLAGS.workdir, None if FLAGS.step < 0 else FLAGS.step,
                                 max_batches=FLAGS.eval_batches, probe=FLAGS.probe,
                                 probe_train_examples=FLAGS.probe_train_examples)
      print(json.dumps(results, sort_keys=True))
    if FLAGS.compare:
      out = FLAGS.compare_out or os.path.join(FLAGS.workdir or FLAGS.compare[0], "compare.png")
      indices = (cli.int_list("compare_images", FLAGS.compare_images)
                 if FLAGS.compare_images else None)
      print(json.dumps({"compare_png": compare_workdirs(FLAGS.compare, out, indices=indices)}))
  except (FileNotFoundError, ValueError) as err:  # a missing run or step, a config it cannot use
    raise cli.UserError(err) from err


if __name__ == "__main__":
  define_flags()
  cli.run(main, config_flags=(), user_errors=train.USER_ERRORS)
