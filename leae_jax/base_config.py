"""Defaults shared by every config in `configs/`, and validation of a config.

Config files start from `get_base_config()` and change what their experiment
needs (big_vision style: `get_config(arg)` selects a variant). Nothing here
builds a model or opens a dataset: `train.resolve` fills the fields derived
from the dataset and the devices, and each piece checks its own fields where
it is built.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import ml_collections

from leae_jax import sigreg
from leae_jax import views


def get_base_config(modality: str = "image") -> ml_collections.ConfigDict:
  """Every field a config may set, with the published defaults.

  `modality`: the kind of data, 'image' or 'sequence' (`modalities.py`): it
  picks the model family, the views' namespace (the `view_args` below hold
  that namespace's views) and the evaluation metrics.
  """
  if modality not in views.MODALITIES:
    raise ValueError(f"modality={modality!r} is not valid: it must be one of "
                     f"{', '.join(views.MODALITIES)}.")
  c = ml_collections.ConfigDict()
  c.modality = modality
  c.dataset = "shapes"
  # Where the dataset is: an image folder (<dir>/{train,test}/<class>/<image>)
  # or a TFDS data dir (None: TFDS's default).
  c.data_dir = ml_collections.FieldReference(None, field_type=str)
  c.idx_dir = ml_collections.FieldReference(None, field_type=str)  # offline Fashion-MNIST files
  # A prepared copy of the dataset (`python -m leae_jax.prepare`): uint8 records
  # already at image_size; training batches then stay uint8 until the device.
  c.prepared_dir = ml_collections.FieldReference(None, field_type=str)
  c.image_size = -1  # the input's side (a series' length); -1: the dataset's default
  # How stored images are brought to image_size (data.FitImage): auto, resize
  # (centred square resized), center_crop (central window) or pad.
  c.fit = "auto"
  c.num_workers = 0  # grain worker processes (0: decode in the main process)
  c.download = False  # let TFDS download (needs internet)

  c.seed = 0
  c.batch_size = 128  # global batch
  c.num_train_steps = -1  # -1: derived from num_epochs (and epoch_end)
  c.num_epochs = 50
  # How steps cut the epochs (data.BatchSchedule): "partial", as PyTorch's
  # DataLoader(shuffle=True, drop_last=False) in every published run: each
  # epoch a new permutation ending with one smaller batch of N mod B images,
  # ⌈N/B⌉ steps an epoch; "continue" (ours): fixed global batches running
  # across epoch boundaries, ⌊epochs·N/B⌋ steps.
  c.epoch_end = "partial"
  # Optimiser: PyTorch's AdamW defaults (β 0.9/0.999, ε 1e-8, decay 0.01 on
  # every parameter) at a constant rate, as every published run trained.
  c.learning_rate = 1e-4
  c.lr_schedule = "constant"  # or "warmup_cosine" (an option of ours, not published)
  c.warmup_steps = 0  # warmup_cosine only
  c.final_learning_rate_ratio = 0.01  # warmup_cosine: decays to this fraction of the peak
  c.weight_decay = 0.01  # 0.0 gives plain Adam (the toy run)
  c.grad_clip_norm = 0.0  # 0: no clipping (published)

  c.model = ml_collections.ConfigDict(dict(
      arch="residual",  # the reference's later architecture; "first": the toy run's (models/first.py)
      hidden=64, latent_channels=32, latent="spatial", pool="mlp", pool_channels=128,
      dtype="float32",
      init="pytorch",  # PyTorch's default initialisation (published) or "flax"
      conv_precision="default",  # convolutions: TF32 allowed on GPUs, as cuDNN under PyTorch
      dense_precision="highest",  # dense layers in full float32, as PyTorch's Linear
      norm_running_variance="unbiased",  # the code norm's running variance, as PyTorch
  ))

  c.objective = ml_collections.ConfigDict(dict(
      name="self_teaching",
      views="crop_resize",
      view_weights="",
      # Every registered view's arguments, with the defaults of its factory
      # (`views.image`, `views.sequence`); a config changes only those it needs.
      view_args=ml_collections.ConfigDict(views.default_args(modality)),
      plain_weight=0.0,
      sigreg_weight=0.03,
      sigreg_on="code",  # "code": SIGReg(E(x)); "views": on the judge's codes (published live runs)
      judge_updates_norm=False,  # judge encodes move the running statistics too (published toy)
      sigreg_flatten=False,  # True: SIGReg on whole flattened codes (published toy), not per position
      sigreg_slices=sigreg.NUM_SLICES,
      sigreg_knots=sigreg.NUM_KNOTS,
      sigreg_t_max=sigreg.T_MAX,
      judge="step_frozen",
      ema_decay=0.999,  # the EMA judge's decay (judge='ema')
      mask_ratio=0.35,  # inpainting hole of the masked objectives, in training
      eval_mask_ratio=0.35,  # ... and in evaluation (hole PSNR)
      masked_updates_norm=True,  # masked branch also moves the running statistics (published)
      crop_view="crop_resize",
  ))

  # Device mesh (sharding.py): the batch is split over data x fsdp devices;
  # params and optimizer state are split over fsdp (tensors >= fsdp_min_size).
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1,
                                          fsdp_min_size=2**14))  # smaller tensors stay replicated

  c.log_every_steps = 100
  c.eval_every_steps = 1000  # <= 0: no evaluation during training
  c.checkpoint_every_steps = 1000
  c.checkpoints_to_keep = 3  # newest N, besides the 0/20/.../100 % milestones
  c.debug_nan_step = -1  # test hook: multiply the loss by NaN at this step
  c.eval_batch_size = 256
  c.eval_batches = -1  # -1: the whole test split
  c.num_grid_images = 8
  c.progress_bar = True
  # Resuming a workdir may not change what is trained (`resume_check`) unless
  # these fields are named, comma-separated (a name covers the fields under it).
  c.allow_changes = ""
  return c


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
  """`base` with `changes` applied, recursively (plain dicts; JSON lists become tuples
  where the base value is a tuple)."""
  out = dict(base)
  for key, value in changes.items():
    if isinstance(value, dict) and isinstance(base.get(key), dict):
      out[key] = merge(base[key], value)
    elif isinstance(value, list) and isinstance(base.get(key), tuple):
      out[key] = tuple(value)
    else:
      out[key] = value
  return out


def from_saved(saved: dict[str, Any]) -> ml_collections.ConfigDict:
  """A config a run saved (`config.json`, maybe from an older version) as a whole
  config: fields it does not have take today's defaults."""
  base = get_base_config(saved.get("modality", "image")).to_dict()
  return ml_collections.ConfigDict(merge(base, saved))


# (field, test, what is valid) for the scalar fields no builder checks; the
# model, views, objective, mesh and data check their own fields when built.
_SCALAR_CHECKS = (
    ("batch_size", lambda v: v >= 1, "a positive integer"),
    ("eval_batch_size", lambda v: v >= 1, "a positive integer"),
    ("eval_batches", lambda v: v == -1 or v >= 1, "-1 (the whole test split) or a positive integer"),
    ("num_train_steps", lambda v: v == -1 or v >= 0, "-1 (from num_epochs) or >= 0"),
    ("num_epochs", lambda v: v >= 1, "a positive integer"),
    ("learning_rate", lambda v: v > 0, "positive"),
    ("warmup_steps", lambda v: v >= 0, ">= 0"),
    ("final_learning_rate_ratio", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("weight_decay", lambda v: v >= 0, ">= 0"),
    ("grad_clip_norm", lambda v: v >= 0, ">= 0 (0: no clipping)"),
    ("seed", lambda v: 0 <= v < 2**31, "in [0, 2**31)"),
    ("num_workers", lambda v: v >= 0, ">= 0 (0: decode in the main process)"),
    ("image_size", lambda v: v == -1 or v >= 1, "-1 (the dataset's) or a positive integer"),
    ("log_every_steps", lambda v: v >= 1, "a positive integer"),
    ("checkpoint_every_steps", lambda v: v >= 1, "a positive integer"),
    ("checkpoints_to_keep", lambda v: v >= 1, "a positive integer"),
    ("num_grid_images", lambda v: v >= 0, ">= 0"),
)


def check_scalars(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first scalar field whose value cannot work, and what can."""
  for field, ok, valid in _SCALAR_CHECKS:
    value = config.get(field)
    if value is not None and not ok(value):
      raise ValueError(f"{field}={value!r} is not valid: it must be {valid}.")
  if config.lr_schedule not in LR_SCHEDULES:
    raise ValueError(f"Unknown lr_schedule {config.lr_schedule!r}; valid: {', '.join(LR_SCHEDULES)}.")


#: Learning-rate schedules (`train.create_schedule`).
LR_SCHEDULES = ("constant", "warmup_cosine")


# Ablation-ladder variants shared by the image configs; combine with commas,
# e.g. `--config=configs/cifar.py:plain,live`.
def _views(names: str, plain_weight: float = 0.0):
  def apply(c):
    c.objective.views = names
    c.objective.plain_weight = plain_weight
  return apply


def _set(**fields):
  def apply(c):
    for k, v in fields.items():
      c.objective[k] = v
  return apply


VARIANTS = {
    "crop_resize": _views("crop_resize"),
    "pixel_mask": _views("pixel_mask"),
    "patch_mask": _views("patch_mask"),
    "channel_mask": _views("channel_mask"),
    "detail_stack": _views("blur,saturation_contrast,sobel,high_pass,local_contrast", 1.0),
    "plain": _views("", 1.0),  # no transformation: the private-language loophole
    "step_frozen": _set(judge="step_frozen", sigreg_on="code"),
    # The published live-judge runs: gradient through both sides of every
    # comparison and SIGReg on the judge's codes of both sides.
    "live": _set(judge="live", sigreg_on="views"),
    # Ours: live judge parameters, detached target, SIGReg on E(x).
    "live_stop_target": _set(judge="live_stop_target", sigreg_on="code"),
    "ema": _set(judge="ema", sigreg_on="code"),
    # Ours (a ladder rung): no SIGReg term, to ask whether a frozen judge alone avoids collapse.
    "no_sigreg": _set(sigreg_weight=0.0),
    # Pixel baselines are plain autoencoders: no SIGReg term.
    "mse": _set(name="mse", sigreg_weight=0.0),
    "masked": _set(name="masked_self_teaching"),
    # The published masked-MSE baseline trained with a 50 % hole and was
    # compared with the self-teaching model at 35 %.
    "masked_mse": _set(name="masked_mse", sigreg_weight=0.0, mask_ratio=0.5, eval_mask_ratio=0.35),
    "warmup_cosine": lambda c: c.update(dict(lr_schedule="warmup_cosine")),
    "flax_init": lambda c: c.model.update(dict(init="flax")),
}


# Variants of the sequence configs (`configs/timeseries*.py`), on top of
# VARIANTS: the views that only series have (`views.sequence`). VARIANTS'
# `crop_resize`, `patch_mask`, `channel_mask`, `masked` and `masked_mse` name
# the sequence views of the same names there.
SEQUENCE_VARIANTS = {
    "time_mask": _views("time_mask"),
    "amplitude_offset": _views("amplitude_offset"),
    "random_band": _views("random_band"),
    # The analogue of the detail stack: three filters tiling the spectrum and a
    # plain term, (mean of the three + plain)/2.
    "filter_stack": _views("low_pass,band_pass,high_pass", 1.0),
}


def apply_variants(config: ml_collections.ConfigDict, arg: str | None,
                   extra: dict | None = None) -> ml_collections.ConfigDict:
  """Applies comma-separated variant names from `arg` (`extra` adds config-specific ones).

  Named arguments (`name=value`) are not variants: configs that take some
  read them with `parse_arg` first and pass only the rest here.
  """
  table = dict(VARIANTS, **(extra or {}))
  for name in [a.strip() for a in (arg or "").split(",") if a.strip()]:
    if name not in table:
      raise ValueError(f"Unknown config variant {name!r}; valid variants: {', '.join(sorted(table))}.")
    table[name](config)
  return config


def parse_arg(arg: str | None, **defaults: Any) -> tuple[dict[str, Any], str]:
  """Splits a config argument into named values and variant names.

  `'latent=512,mse'` with `defaults={'latent': 128}` gives `({'latent': 512},
  'mse')`: each `name=value` must name a default (its value is converted to
  the default's type); everything else is a variant for `apply_variants`.
  """
  named, variants = dict(defaults), []
  for token in [t.strip() for t in (arg or "").split(",") if t.strip()]:
    key, eq, value = token.partition("=")
    if not eq:
      if token.isdigit() and defaults:
        raise ValueError(f"Config argument {token!r}: name it, e.g. "
                         f"{next(iter(defaults))}={token}; valid names: {', '.join(defaults)}.")
      variants.append(token)
      continue
    if key not in defaults:
      raise ValueError(f"Unknown config argument {key!r}; valid: {', '.join(defaults) or 'none'}.")
    kind = type(defaults[key])
    try:
      named[key] = (value.lower() in ("1", "true", "yes")) if kind is bool else kind(value)
    except ValueError as err:
      raise ValueError(f"Config argument {key}={value!r} is not a valid {kind.__name__}.") from err
  return named, ",".join(variants)


#: The repository's config files (`configs/<name>.py`).
CONFIG_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                           os.pardir, "configs"))


def config_names() -> list[str]:
  """The config files of the repository, by name (`cifar`, `shapes`, ...)."""
  if not os.path.isdir(CONFIG_DIR):
    return []
  return sorted(f[:-3] for f in os.listdir(CONFIG_DIR) if f.endswith(".py") and f != "__init__.py")


def load(spec: str) -> ml_collections.ConfigDict:
  """A config by name or path, with its argument: `load('cifar:mse')`,
  `load('configs/celeba_masked.py:latent=512')`; unresolved.

  Loads the file as `--config=` does (its `get_config(arg)`), so notebooks,
  experiments and tests get exactly what the command line gets. Raises
  ValueError naming the valid configs when there is no such file.
  """
  path, _, arg = spec.partition(":")
  if not path.endswith(".py"):
    path = os.path.join(CONFIG_DIR, f"{path}.py")
  if not os.path.isfile(path):
    raise ValueError(f"No config file {path!r}; the configs are {', '.join(config_names())}.")
  module_spec = importlib.util.spec_from_file_location(
      f"leae_config_{os.path.basename(path)[:-3]}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()
