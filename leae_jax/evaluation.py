"""Evaluation of a run's state: the jitted eval step, metrics over the test split, codes.

One home for evaluation, during training (`train.train_and_evaluate` every
`eval_every_steps`) and from the command line (`leae_jax.evaluate`, which adds
the linear probe, figures and comparisons of saved runs):

* `eval_step`: objective parts on the real images of a batch and per-image
  reconstruction metrics (inference-mode normalisation), jitted by
  `train.Trainer` with the run's shardings;
* `evaluate`: the whole test split on any number of devices and processes,
  with the numbers of one device (padding weighted 0);
* `encode_split`: eval-mode codes and labels of a split (for probes);
* `latent_health`: SIGReg, effective rank and spread of codes.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils
import numpy as np

from leae_jax import data
from leae_jax import metrics as metrics_lib
from leae_jax import modalities
from leae_jax import models
from leae_jax import objectives
from leae_jax import sigreg as sigreg_lib
from leae_jax import views

#: Codes per SIGReg evaluation in `latent_health` (the training batch size's order).
SIGREG_CHUNK = 256


def eval_step(
    state: Any,
    images: jax.Array,
    key: jax.Array,
    *,
    model: models.Autoencoder,
    objective: objectives.Objective,
    mask: views.View | None,
    num_real: int | None = None,
    features: Callable[[jax.Array], jax.Array] | None = None,
) -> dict[str, jax.Array]:
  """Objective parts on a test batch plus per-image reconstruction metrics.

  The per-example metrics are the model's modality's (`modalities.py`:
  MSE, PSNR, SSIM of images; MSE, MAE, band energies of series).
  `images` holds the `S` slots of an evaluation global batch
  (`data.create_eval_loader`); its first `num_real` (`R`, static; default
  all) are the batch's real images when the batch is full, the rest padding
  that lets the batch split evenly over the devices. The objective parts
  depend on batch statistics (batch norm, SIGReg), so they are computed on
  exactly `images[:R]`, the batch a one-device evaluation sees (XLA's
  partitioner handles the uneven split of that slice); the masks of the
  masked metrics are drawn for those `R` images too, so that each image gets
  the hole it gets on one device. (So the parts are a held-out training
  loss at the evaluation batch size, not the published test loss, which
  encoded `E(x)` with the running statistics at the training batch size:
  `docs/fidelity.md` row 36.) Reconstructions use the running
  normalisation statistics (inference mode), so per-image numbers do not
  depend on the rest of the batch: they are returned for every slot, and the
  caller weights the padding 0. With `features` (a shipped Fréchet feature
  net, `frechet.FeatureExtractor.features`), the features of every input
  and reconstruction too (`features_input`, `features_recon`), for the
  Fréchet distance `evaluate` reports.
  """
  n = images.shape[0]
  r = n if num_real is None else min(int(num_real), n)
  real = images if r == n else images[:r]
  _, aux = objective(state.params, state.batch_stats, real, key, state.ema_params)
  out = {f"parts/{k}": v for k, v in aux["parts"].items()}
  codes, _ = models.encode(model, state.params["encoder"], state.batch_stats, images, train=False)
  recon = models.decode(model, state.params["decoder"], codes)
  out.update(modalities.get(model.modality).metrics(recon, images),
             codes=codes, images=images, reconstruction=recon)
  if features is not None:
    out.update(features_input=features(images), features_recon=features(recon))
  if mask is not None:
    mask_params = mask.sample(key, real.shape)
    if r < n:  # the padding slots get copies of the last real image's mask
      mask_params = jax.tree_util.tree_map(
          lambda m: jnp.pad(m, [(0, n - r)] + [(0, 0)] * (m.ndim - 1), mode="edge"), mask_params)
    masked = mask.transform(mask_params, images)
    codes_m, _ = models.encode(model, state.params["encoder"], state.batch_stats, masked, train=False)
    recon_m = models.decode(model, state.params["decoder"], codes_m)
    out.update(masked_psnr=metrics_lib.per_image_psnr(recon_m, images),
               hole_psnr=metrics_lib.per_image_psnr(recon_m, images, mask_params["hole"]),
               masked_input=masked, masked_reconstruction=recon_m)
  return out


def evaluate(trainer: Any, state: Any, *, max_batches: int = -1,
             collect_codes: bool = False) -> "EvalResult":
  """Metrics of `trainer`'s run at `state` over the test split (or its first `max_batches` batches).

  `trainer` is a `train.Trainer` (its config, jitted `eval_step`, mesh).

  Works on any number of devices and processes with the numbers of one
  device: global batch `b` is test records `[b·R, (b+1)·R)` (`R =
  eval_batch_size`), padded at its end to a multiple of `data_shards` so
  that it splits evenly (`data.create_eval_loader`). Per-image metrics
  (MSE, PSNR, SSIM, masked and hole PSNR) count every test image once,
  padding weighted 0. Objective parts depend on batch statistics, so they
  are computed on the `R` real images only (`eval_step`) and counted on
  full batches only (all `R` present). The key of batch `i` is
  `fold_in(eval_key, i)`. With `collect_codes`, the eval-mode codes and
  labels of every counted image are returned too (for probes and latent
  statistics). The image grid shows real images only. Where the trainer has
  a Fréchet feature net (`frechet.load`: one is shipped for the dataset at
  this size), `frechet_distance` is the Fréchet distance between the
  features of the test images and of their reconstructions.
  """
  c = trainer.config
  num_real = int(c.eval_batch_size)
  modality = modalities.get(trainer.model.modality)
  per_example = modality.metric_names + MASKED_METRICS
  loader = data.create_eval_loader(
      c.dataset, "test", batch_size=num_real, multiple=trainer.data_shards, max_batches=max_batches,
      **data.config_options(c))
  eval_key = jax.random.key(c.seed + 1)
  sums: dict[str, float] = {}
  counts: dict[str, float] = {}
  shown = None
  codes, labels = [], []
  features: dict[str, list[np.ndarray]] = {k: [] for k in FEATURES}
  for i, batch in enumerate(loader):
    out = trainer.eval_step(state, trainer.global_batch(batch["image"]), jax.random.fold_in(eval_key, i))
    if not collect_codes:
      out.pop("codes")
    if shown is not None:  # the grid's images come from the first batch only
      for k in GRID_ROWS:
        out.pop(k, None)
    out["labels"] = trainer.global_batch(batch["label"])
    out["valid"] = trainer.global_batch(batch["valid"])
    out = jax.device_get(multihost_utils.process_allgather(out, tiled=True)
                         if jax.process_count() > 1 else out)
    # Padding slots (the end of every global batch) weigh 0.
    weights = np.asarray(out["valid"], bool)
    for k, v in out.items():
      if k.startswith("parts/"):
        if weights[:num_real].sum() == num_real:  # batch-statistics dependent: full batches only
          sums[k] = sums.get(k, 0.0) + float(v)
          counts[k] = counts.get(k, 0.0) + 1
      elif k in per_example:
        sums[k] = sums.get(k, 0.0) + float(np.sum(np.asarray(v, np.float64) * weights))
        counts[k] = counts.get(k, 0.0) + float(weights.sum())
    if collect_codes:
      codes.append(np.asarray(out["codes"])[weights])
      labels.append(np.asarray(out["labels"])[weights])
    for k in FEATURES:
      if k in out:
        features[k].append(np.asarray(out[k])[weights])
    if shown is None:
      shown = {k: np.asarray(v)[weights][: c.num_grid_images]
               for k, v in out.items() if k in GRID_ROWS}
  if not counts:
    raise ValueError(f"The {c.dataset} test split produced no evaluation batch.")
  results = {k.replace("parts/", ""): sums[k] / counts[k] for k in sums}
  results["num_images"] = counts.get("mse", 0.0)
  results = modality.summarise(results)
  if all(features.values()) and sum(len(f) for f in features[FEATURES[0]]) >= 2:
    results["frechet_distance"] = metrics_lib.frechet_distance(
        *(np.concatenate(features[k]) for k in FEATURES))
  return EvalResult(results, shown or {},
                    np.concatenate(codes) if codes else None,
                    np.concatenate(labels) if labels else None)


#: The Fréchet feature net's features of the inputs and the reconstructions (`eval_step`).
FEATURES = ("features_input", "features_recon")
#: Per-example metrics of the masked objectives' holes (any modality).
MASKED_METRICS = ("masked_psnr", "hole_psnr")
#: The per-example metrics of images (`modalities.get('image').metric_names` + the masked ones).
PER_IMAGE_METRICS = ("mse", "psnr", "ssim") + MASKED_METRICS
GRID_ROWS = ("images", "reconstruction", "masked_input", "masked_reconstruction")


class EvalResult(NamedTuple):
  """What `evaluate` returns."""

  metrics: dict[str, float]
  images: dict[str, np.ndarray]  # the first images of the first batch, by grid row
  codes: np.ndarray | None  # (num_images, *code_shape) eval-mode codes, if collected
  labels: np.ndarray | None


def grid_rows(shown: dict[str, np.ndarray]) -> list[np.ndarray]:
  """Image batches in grid order: input | reconstruction | masked input | masked reconstruction."""
  return [shown[k] for k in GRID_ROWS if k in shown]


def encode_split(trainer: Any, state: Any, split: str,
                 max_examples: int = -1) -> tuple[np.ndarray, np.ndarray]:
  """Eval-mode codes and labels of (the first `max_examples` of) a split, in order.

  Batches as `evaluate`'s (`data.create_eval_loader`: `eval_batch_size`
  real records, padded to split over the devices and processes); the padding
  is dropped, so the result is the same on any number of devices.
  """
  c = trainer.config
  batch_size = int(c.eval_batch_size)
  max_batches = -1 if max_examples < 0 else max(1, -(-max_examples // batch_size))
  loader = data.create_eval_loader(
      c.dataset, split, batch_size=batch_size, multiple=trainer.data_shards,
      max_batches=max_batches, **data.config_options(c))
  encode = jax.jit(lambda s, x: models.encode(trainer.model, s.params["encoder"], s.batch_stats,
                                                  x, train=False)[0])
  codes, labels = [], []
  for batch in loader:
    z = encode(state, trainer.global_batch(batch["image"]))
    z, lab, keep = jax.device_get(_allgather(
        (z, trainer.global_batch(batch["label"]), trainer.global_batch(batch["valid"]))))
    keep = np.asarray(keep, bool)  # drop the padding slots
    codes.append(np.asarray(z)[keep])
    labels.append(np.asarray(lab)[keep])
  codes, labels = np.concatenate(codes), np.concatenate(labels)
  return (codes[:max_examples], labels[:max_examples]) if max_examples >= 0 else (codes, labels)


def _allgather(tree: Any) -> Any:
  """Global arrays on every process (identity with one process)."""
  from jax.experimental import multihost_utils

  return multihost_utils.process_allgather(tree, tiled=True) if jax.process_count() > 1 else tree


def latent_health(codes: np.ndarray, *, seed: int = 0) -> tuple[dict[str, float], np.ndarray]:
  """SIGReg, effective rank and per-dimension std of codes; also the eigenvalues."""
  flat = jnp.asarray(codes.reshape(len(codes), -1), jnp.float32)
  eig = metrics_lib.covariance_eigenvalues(flat)
  std = jnp.std(flat, axis=0)
  key = jax.random.key(seed)
  chunks = [codes[i:i + SIGREG_CHUNK] for i in range(0, len(codes) - SIGREG_CHUNK + 1, SIGREG_CHUNK)]
  chunks = chunks or [codes]
  sig = float(np.mean([sigreg_lib.sigreg(jnp.asarray(ch), key) for ch in chunks]))
  return {
      "latent_sigreg": sig,
      "latent_effective_rank": float(metrics_lib.effective_rank(eig)),
      "latent_dim": int(flat.shape[1]),
      "latent_std_min": float(jnp.min(std)),
      "latent_std_median": float(jnp.median(std)),
  }, np.asarray(eig)
