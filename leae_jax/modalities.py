"""The kinds of data the method runs on, and everything that differs between them: one table.

`config.modality` names one `Modality`; the dataset's registration says which
it holds (`data.DatasetInfo.modality`, checked by `train.resolve`). The rest
of the code asks the entry for what it needs, so the objectives, the judges,
SIGReg, the training loop, checkpoints and evaluation have no branch of their
own on the kind of data:

| | `image` | `sequence` |
|---|---|---|
| input `(N, *input_shape)` | `(N, s, s, C)` in [0, 1] | `(N, L, C)`, normalised per channel |
| model | `models.Autoencoder` | `models.series.SeriesAutoencoder` |
| views | `views` (the `image` namespace) | `views.sequence` (the `sequence` namespace) |
| per-example metrics | MSE, PSNR, SSIM; luma and chroma PSNR, saturation (colour images); power per radial frequency band | MSE, MAE, error energy per frequency band |
| pictures | image grid | series drawn over their reconstructions |

`config.image_size` is the input's side along its spatial axes: an image's
side in pixels, a series' length in steps; `config.image_channels` (resolved
from the dataset) its channels.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import jax
import ml_collections
import numpy as np

from leae_jax import metrics as metrics_lib
from leae_jax import models
from leae_jax import outputs
from leae_jax.models import series as series_models
from leae_jax import views

Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Modality:
  """What differs between kinds of data.

  Attributes:
    name: The `config.modality` value (and the view registry's namespace).
    noun: The inputs, in messages ("images", "series").
    create_model: `(config.model, size, channels) -> model`; the model has
      `input_shape`, `latent_shape`, `encode`, `decode` and a `modality`.
    metric_names: The keys `metrics`' result may have (grey images have no colour metrics).
    metrics: `(reconstruction, inputs) -> {name: (N,) per-example values}`.
    summarise: The evaluation's means of those values → the reported metrics.
    picture: Batches in `evaluation.grid_rows` order → an HWC picture in [0, 1].
    size_label: `(size, channels)` → the input's size in a few characters.
  """

  name: str
  noun: str
  create_model: Callable[[ml_collections.ConfigDict, int, int], Any]
  metric_names: tuple[str, ...]
  metrics: Callable[[jax.Array, jax.Array], Metrics]
  summarise: Callable[[Mapping[str, float]], dict[str, float]]
  picture: Callable[[Sequence[np.ndarray]], np.ndarray]
  size_label: Callable[[int, int], str]

  def describe_input(self, size: int, channels: int) -> str:
    """e.g. '32px images', '128×3 series'."""
    return f"{self.size_label(size, channels)} {self.noun}"


def _band_names(prefix: str, bands=metrics_lib.SPECTRAL_BANDS) -> tuple[str, ...]:
  return tuple(f"{prefix}_b{i}" for i in range(len(bands)))


# Sums over the test split, divided by `_image_summary` (ratios of means).
_IMAGE_POWER, _IMAGE_RECON_POWER = (_band_names("band_power", metrics_lib.IMAGE_BANDS),
                                    _band_names("band_recon_power", metrics_lib.IMAGE_BANDS))
_CHROMA = ("chroma", "recon_chroma")
#: Colour metrics: only colour (3-channel) images have them.
COLOUR_METRICS = ("luma_psnr", "chroma_psnr") + _CHROMA


def _image_metrics(recon: jax.Array, images: jax.Array) -> Metrics:
  out = dict(mse=metrics_lib.per_image_mse(recon, images),
             psnr=metrics_lib.per_image_psnr(recon, images),
             ssim=metrics_lib.per_image_ssim(recon, images))
  if images.shape[-1] == 3:  # grey images have no colour to measure
    out.update(luma_psnr=metrics_lib.per_image_luma_psnr(recon, images),
               chroma_psnr=metrics_lib.per_image_chroma_psnr(recon, images),
               chroma=metrics_lib.per_image_chroma(images),
               recon_chroma=metrics_lib.per_image_chroma(recon))
  for names, x in ((_IMAGE_POWER, images), (_IMAGE_RECON_POWER, recon)):
    power = metrics_lib.image_band_power(x)
    out.update({name: power[:, i] for i, name in enumerate(names)})
  return out


def _image_summary(results: Mapping[str, float]) -> dict[str, float]:
  """`saturation_ratio`: mean chroma of the reconstructions / of the inputs (below 1: colour
  washed out); `spectral_power_b<i>`: the reconstructions' power in radial frequency band i /
  the inputs' (`metrics.IMAGE_BANDS`; below 1 in the high bands: blurred)."""
  out = {k: v for k, v in results.items() if k not in _CHROMA + _IMAGE_POWER + _IMAGE_RECON_POWER}
  if "chroma" in results:
    out["saturation_ratio"] = results["recon_chroma"] / max(results["chroma"], 1e-12)
  for i, (inputs, recon) in enumerate(zip(_IMAGE_POWER, _IMAGE_RECON_POWER)):
    if inputs in results:
      out[f"spectral_power_b{i}"] = results[recon] / max(results[inputs], 1e-12)
  return out


# Per-example energies, summed over the test split before dividing (a ratio of
# means, so quiet series do not dominate through tiny denominators).
_BAND_ERROR, _BAND_SIGNAL, _BAND_RECON = (_band_names("band_error_energy"),
                                          _band_names("band_energy"),
                                          _band_names("band_recon_energy"))


def _series_metrics(recon: jax.Array, series: jax.Array) -> Metrics:
  out = dict(mse=metrics_lib.per_image_mse(recon, series),
             mae=metrics_lib.per_example_mae(recon, series))
  for names, x in ((_BAND_ERROR, recon - series), (_BAND_SIGNAL, series), (_BAND_RECON, recon)):
    energies = metrics_lib.band_energies(x)
    out.update({name: energies[:, i] for i, name in enumerate(names)})
  return out


def _series_summary(results: Mapping[str, float]) -> dict[str, float]:
  """`spectral_error_b<i>`: error energy / signal energy in band i (0: nothing lost);
  `spectral_power_b<i>`: reconstruction energy / signal energy (below 1: the band is smeared out)."""
  out = {k: v for k, v in results.items() if k not in _BAND_ERROR + _BAND_SIGNAL + _BAND_RECON}
  for i, (err, sig, rec) in enumerate(zip(_BAND_ERROR, _BAND_SIGNAL, _BAND_RECON)):
    if sig in results:
      energy = max(results[sig], 1e-12)
      out[f"spectral_error_b{i}"] = results[err] / energy
      out[f"spectral_power_b{i}"] = results[rec] / energy
  return out


def _create_image_model(config: ml_collections.ConfigDict, size: int, channels: int) -> Any:
  return models.create_model(config, image_size=size, image_channels=channels)


def _create_series_model(config: ml_collections.ConfigDict, size: int, channels: int) -> Any:
  return series_models.create_model(config, length=size, channels=channels)


_MODALITIES = {
    m.name: m for m in (
        Modality("image", "images", _create_image_model,
                 ("mse", "psnr", "ssim") + COLOUR_METRICS + _IMAGE_POWER + _IMAGE_RECON_POWER,
                 _image_metrics, _image_summary, outputs.image_grid,
                 lambda size, channels: f"{size}px"),
        Modality("sequence", "series", _create_series_model,
                 ("mse", "mae") + _BAND_ERROR + _BAND_SIGNAL + _BAND_RECON, _series_metrics,
                 _series_summary, outputs.series_grid,
                 lambda size, channels: f"{size}×{channels}"),
    )
}
assert tuple(_MODALITIES) == views.MODALITIES


def names() -> tuple[str, ...]:
  """The modalities, e.g. for `config.modality`."""
  return tuple(_MODALITIES)


def get(name: str) -> Modality:
  """The `Modality` called `name` (ValueError naming the valid ones)."""
  if name not in _MODALITIES:
    raise ValueError(f"modality={name!r} is not valid: it must be one of {', '.join(_MODALITIES)}.")
  return _MODALITIES[name]
