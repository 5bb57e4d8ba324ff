"""Training objectives: pure loss functions of (params, batch_stats, images, key).

Every loss returns `(scalar, aux)` and works with `jax.value_and_grad(...,
has_aux=True)`. `aux` holds:

* `parts`: named scalars for logging (`loss`, `latent_agreement`, `sigreg`,
  one `agree/<view>` per view, ...);
* `batch_stats`: the new normalisation statistics — updated from the clean
  input only, never from views or reconstructions;
* `images`: named image batches for inspection (`reconstruction`, and for the
  masked objectives `masked_input`, `masked_reconstruction`, `hole`).

The judge `J` is the model's own encoder applied with the statistics of the
batch it is judging, discarding the statistics update. Which parameters it
uses is the judge mode:

* `step_frozen`: the current encoder params under `stop_gradient` — gradient
  still flows through J's *input* (the reconstruction) but never into J's
  parameters, so the decoder has to fix its artefacts instead of the encoder
  learning to ignore them. No second copy is kept. The target `J(T(x))`
  carries no gradient;
* `live`: the published live runs: the current encoder params with gradient
  flowing through them *and through both sides* of every agreement term (the
  target `J(T(x))` is not detached either);
* `live_stop_target`: live judge parameters but a detached target — a
  variant of ours, not a published run;
* `ema`: an exponential moving average of the encoder carried in the train
  state (`update_ema`), under `stop_gradient`; target detached.

(About 550 lines: the four losses, the judge modes they share and the
registry that binds a config's fields to them are one concept — adding an
objective is a change to this file alone, as `docs/library.md` shows.)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import optax

from leae_jax import models
from leae_jax import sigreg as sigreg_lib
from leae_jax import views as views_lib

PyTree = Any
LossFn = Callable[..., tuple[jax.Array, dict]]

JUDGES = ("step_frozen", "live", "live_stop_target", "ema")


# ---------------------------------------------------------------------------
# Judges (the model's own encoder, run by models.encode).


def make_judge(model: models.Autoencoder, judge_params: PyTree, batch_stats: PyTree) -> Callable[[jax.Array], jax.Array]:
  """`J(x)`: the encoder under `judge_params`, normalised with x's own batch statistics."""
  return lambda x: models.encode(model, judge_params, batch_stats, x, train=True)[0]


def judge_params_for(mode: str, params: PyTree, ema_params: PyTree | None = None) -> PyTree:
  """The encoder parameters the judge uses under judge `mode`."""
  if mode == "step_frozen":
    return jax.lax.stop_gradient(params["encoder"])
  if mode in ("live", "live_stop_target"):
    return params["encoder"]
  if mode == "ema":
    if ema_params is None:
      raise ValueError("judge='ema' needs the EMA judge params (init_ema(params) in the train state).")
    return jax.lax.stop_gradient(ema_params)
  raise ValueError(f"Unknown judge {mode!r}; valid judges: {', '.join(JUDGES)}.")


def init_ema(params: PyTree) -> PyTree:
  """Initial EMA judge: a copy of the encoder params."""
  return jax.tree_util.tree_map(jnp.array, params["encoder"])


def update_ema(ema_params: PyTree, encoder_params: PyTree, decay: float) -> PyTree:
  """`decay · ema + (1 − decay) · encoder`, leaf by leaf."""
  return optax.incremental_update(encoder_params, ema_params, step_size=1.0 - decay)


def target_carries_gradient(mode: str) -> bool:
  """Whether the target side `J(T(x))` back-propagates under judge `mode` (only `live`)."""
  return mode == "live"


def _mse(a: jax.Array, b: jax.Array) -> jax.Array:
  return jnp.mean(jnp.square(a.astype(jnp.float32) - b.astype(jnp.float32)))


# ---------------------------------------------------------------------------
# Losses.


@dataclasses.dataclass(frozen=True)
class SigregSpec:
  """Weight and statistic settings of the SIGReg term.

  `flatten`: each spatial code `(H, W, C)` is one `C·H·W` vector, flattened
  channel-major as PyTorch's `flatten(1)` of an NCHW map (the published toy
  run, before the reference moved to per-position samples in 59031b2);
  otherwise each position is its own sample set (`sigreg.sigreg`).
  """

  weight: float = 0.03
  num_slices: int = sigreg_lib.NUM_SLICES
  num_knots: int = sigreg_lib.NUM_KNOTS
  t_max: float = sigreg_lib.T_MAX
  flatten: bool = False

  def __call__(self, codes: jax.Array, key: jax.Array) -> jax.Array:
    if self.flatten and codes.ndim == 4:
      codes = models.flatten_channel_major(codes)
    return sigreg_lib.sigreg(codes, key, num_slices=self.num_slices,
                             num_knots=self.num_knots, t_max=self.t_max)


SIGREG_ON = ("code", "views")


def self_teaching_loss(
    model: models.Autoencoder,
    params: PyTree,
    batch_stats: PyTree,
    images: jax.Array,
    key: jax.Array,
    *,
    judge_params: PyTree,
    views: Sequence[tuple[views_lib.View, float]],
    plain_weight: float = 0.0,
    sigreg: SigregSpec = SigregSpec(),
    target_gradient: bool = False,
    sigreg_on: str = "code",
    judge_updates_norm: bool = False,
) -> tuple[jax.Array, dict]:
  """Latent agreement under views, plus `λ SIGReg`.

  With views `T` (weights `w_T`) and a plain (untransformed) term of weight
  `p`, the agreement is the published detail-stack form

      A = (Σ_T w_T ||J(T(x)) − J(T(x̂))||² / Σ_T w_T  +  p · ||J(x) − J(x̂)||²) / (1 + p)

  i.e. the view mean when `p = 0`, and the plain term alone when there are no
  views. `judge_params` are used as given (choose them with
  `judge_params_for`); the target side `J(T(x))` carries no gradient unless
  `target_gradient` (the published live judge).

  SIGReg is taken on the clean code `z = E(x)` (`sigreg_on='code'`, every
  step-frozen and EMA run) or, as in the published live-judge runs, on the
  judge's codes of both sides of every comparison (`'views'`): the mean over
  compared pairs of `SIGReg(J(T(x))) + SIGReg(J(T(x̂)))`, each call with its
  own random directions.

  `judge_updates_norm`: the judge's encodes move the running normalisation
  statistics too, in call order (target, then judged, view by view) after the
  clean batch — what the published toy and early live runs did, whose judge
  was the model itself in training mode. Off, only `E(x)` moves them.
  """
  if not views and plain_weight <= 0:
    raise ValueError("self_teaching needs at least one view or a positive plain_weight.")
  if sigreg_on not in SIGREG_ON:
    raise ValueError(f"Unknown sigreg_on {sigreg_on!r}; valid: {', '.join(SIGREG_ON)}.")
  k_sigreg, k_views = jax.random.split(key)
  codes, new_stats = models.encode(model, params["encoder"], batch_stats, images, train=True)
  recon = models.decode(model, params["decoder"], codes)
  judge = make_judge(model, judge_params, batch_stats)
  detach = (lambda t: t) if target_gradient else jax.lax.stop_gradient
  pair_codes = []
  stats = [new_stats]

  def judge_and_update(images: jax.Array) -> jax.Array:
    z, stats[0] = models.encode(model, judge_params, stats[0], images, train=True)
    return z

  if judge_updates_norm:
    judge = judge_and_update

  def agreement(x: jax.Array, x_hat: jax.Array) -> jax.Array:
    target, judged = judge(x), judge(x_hat)
    pair_codes.append((target, judged))
    return _mse(detach(target), judged)

  parts = {}
  view_mean = jnp.zeros((), jnp.float32)
  total_weight = sum(w for _, w in views)
  for i, (view, weight) in enumerate(views):
    tx, tx_hat = view.pair(jax.random.fold_in(k_views, i), images, recon)
    term = agreement(tx, tx_hat)
    parts[f"agree/{view.name}"] = term
    view_mean += weight / total_weight * term
  if plain_weight > 0:
    parts["agree/plain"] = agreement(images, recon)
    latent_agreement = (parts["agree/plain"] if not views else
                        (view_mean + plain_weight * parts["agree/plain"]) / (1.0 + plain_weight))
  else:
    latent_agreement = view_mean

  if sigreg_on == "code":
    sig = sigreg(codes, k_sigreg)
  else:
    sig = sum(sigreg(a, jax.random.fold_in(k_sigreg, 2 * i))
              + sigreg(b, jax.random.fold_in(k_sigreg, 2 * i + 1))
              for i, (a, b) in enumerate(pair_codes)) / len(pair_codes)
  loss = latent_agreement + sigreg.weight * sig
  parts.update(loss=loss, latent_agreement=latent_agreement, sigreg=sig)
  return loss, dict(parts=parts, batch_stats=jax.lax.stop_gradient(stats[0]),
                    images=dict(reconstruction=recon))


def masked_self_teaching_loss(
    model: models.Autoencoder,
    params: PyTree,
    batch_stats: PyTree,
    images: jax.Array,
    key: jax.Array,
    *,
    judge_params: PyTree,
    crop: views_lib.View,
    mask: views_lib.View,
    sigreg: SigregSpec = SigregSpec(),
    target_gradient: bool = False,
    masked_updates_norm: bool = True,
) -> tuple[jax.Array, dict]:
  """The symmetric clean/masked objective.

  `x̂_c = D(E(x))`, `x̂_m = D(E(mask(x)))`, one shared crop `c`:
  `(||J(x̂_c) − J(x̂_m)||² + ||J(c(x)) − J(c(x̂_c))||² + ||J(c(x)) − J(c(x̂_m))||²)/3
  + λ/2 (SIGReg(E(x)) + SIGReg(E(mask(x))))`.

  As published: the consistency term back-propagates into both branches; the
  two SIGReg terms draw their own random directions; and both encoder passes
  run in training mode, so the running normalisation statistics move twice
  per step, first towards the clean batch and then towards the masked one
  (`masked_updates_norm=False`: from the clean batch only). The judge always
  uses the statistics of the batch it judges and never moves them.
  """
  k_mask, k_crop, k_sigreg = jax.random.split(key, 3)
  mask_params = mask.sample(k_mask, images.shape)
  masked = mask.transform(mask_params, images)
  z_clean, clean_stats = models.encode(model, params["encoder"], batch_stats, images, train=True)
  z_masked, both_stats = models.encode(model, params["encoder"], clean_stats, masked, train=True)
  new_stats = both_stats if masked_updates_norm else clean_stats
  recon_clean = models.decode(model, params["decoder"], z_clean)
  recon_masked = models.decode(model, params["decoder"], z_masked)
  judge = make_judge(model, judge_params, batch_stats)
  detach = (lambda t: t) if target_gradient else jax.lax.stop_gradient

  crop_params = crop.sample(k_crop, images.shape)
  target = detach(judge(crop.transform(crop_params, images)))
  consistency = _mse(judge(recon_clean), judge(recon_masked))
  clean_crop = _mse(target, judge(crop.transform(crop_params, recon_clean)))
  masked_crop = _mse(target, judge(crop.transform(crop_params, recon_masked)))
  latent_agreement = (consistency + clean_crop + masked_crop) / 3.0
  k_sig_clean, k_sig_masked = jax.random.split(k_sigreg)
  sig = 0.5 * (sigreg(z_clean, k_sig_clean) + sigreg(z_masked, k_sig_masked))
  loss = latent_agreement + sigreg.weight * sig
  parts = dict(loss=loss, latent_agreement=latent_agreement, sigreg=sig,
               consistency=consistency, clean_crop=clean_crop, masked_crop=masked_crop)
  imgs = dict(reconstruction=recon_clean, masked_input=masked,
              masked_reconstruction=recon_masked, hole=mask_params["hole"])
  return loss, dict(parts=parts, batch_stats=new_stats, images=imgs)


def _logged_only(codes: jax.Array, spec: SigregSpec) -> jax.Array:
  """`codes` for a SIGReg term: cut from the gradient when its weight is 0.

  The baselines log SIGReg at weight 0 (a health number, comparable across
  rungs) but must not pay its backward pass: `0 · ∂SIGReg` is still computed
  by XLA (IEEE zero times a gradient is not folded away). The loss and its
  gradient are unchanged (a finite term times 0).
  """
  return jax.lax.stop_gradient(codes) if spec.weight == 0 else codes


def mse_loss(
    model: models.Autoencoder,
    params: PyTree,
    batch_stats: PyTree,
    images: jax.Array,
    key: jax.Array,
    *,
    sigreg: SigregSpec = SigregSpec(weight=0.0),
) -> tuple[jax.Array, dict]:
  """Plain autoencoder baseline `||D(E(x)) − x||²` (+ optional SIGReg)."""
  codes, new_stats = models.encode(model, params["encoder"], batch_stats, images, train=True)
  recon = models.decode(model, params["decoder"], codes)
  pixel = _mse(recon, images)
  sig = sigreg(_logged_only(codes, sigreg), key)
  loss = pixel + sigreg.weight * sig
  parts = dict(loss=loss, pixel_mse=pixel, sigreg=sig)
  return loss, dict(parts=parts, batch_stats=new_stats, images=dict(reconstruction=recon))


def masked_mse_loss(
    model: models.Autoencoder,
    params: PyTree,
    batch_stats: PyTree,
    images: jax.Array,
    key: jax.Array,
    *,
    mask: views_lib.View,
    sigreg: SigregSpec = SigregSpec(weight=0.0),
) -> tuple[jax.Array, dict]:
  """Masked baseline `||D(E(mask(x))) − x||²`.

  Its encoder only ever sees masked input (and its statistics come from it):
  compare with that caveat in mind.
  """
  k_mask, k_sigreg = jax.random.split(key)
  mask_params = mask.sample(k_mask, images.shape)
  masked = mask.transform(mask_params, images)
  codes, new_stats = models.encode(model, params["encoder"], batch_stats, masked, train=True)
  recon = models.decode(model, params["decoder"], codes)
  pixel = _mse(recon, images)
  sig = sigreg(_logged_only(codes, sigreg), k_sigreg)
  loss = pixel + sigreg.weight * sig
  hole = mask_params["hole"]
  hole_mse = jnp.sum(jnp.square(recon - images) * hole) / jnp.maximum(
      jnp.sum(hole) * images.shape[-1], 1.0)
  parts = dict(loss=loss, pixel_mse=pixel, hole_mse=hole_mse, sigreg=sig)
  imgs = dict(reconstruction=recon, masked_input=masked, masked_reconstruction=recon, hole=hole)
  return loss, dict(parts=parts, batch_stats=new_stats, images=imgs)


# ---------------------------------------------------------------------------
# Building an objective from a config.


@dataclasses.dataclass(frozen=True)
class Objective:
  """A configured loss: `objective(params, batch_stats, images, key, ema_params=None)`.

  `judge` is the judge mode (`None` for the pixel baselines); `ema_decay`
  applies when `judge == 'ema'` and the train state carries EMA params;
  `eval_mask_ratio` is the hole evaluation scores (`None` when the objective
  has no hole).
  """

  name: str
  fn: LossFn
  judge: str | None = None
  ema_decay: float | None = None
  eval_mask_ratio: float | None = None

  @property
  def uses_ema(self) -> bool:
    return self.judge == "ema"

  @property
  def masked(self) -> bool:
    """Whether evaluation scores an inpainting hole (hole PSNR)."""
    return self.eval_mask_ratio is not None

  def __call__(self, params: PyTree, batch_stats: PyTree, images: jax.Array, key: jax.Array,
               ema_params: PyTree | None = None) -> tuple[jax.Array, dict]:
    if self.judge is None:
      return self.fn(params, batch_stats, images, key)
    judge_params = judge_params_for(self.judge, params, ema_params)
    return self.fn(params, batch_stats, images, key, judge_params=judge_params,
                   target_gradient=target_carries_gradient(self.judge))


@dataclasses.dataclass(frozen=True)
class ObjectiveSpec:
  """What the rest of the code may ask of an objective without building it.

  `judged`: it compares codes through a judge, so `objective.judge` (and
  `ema_decay`) apply and an EMA judge adds params to the train state;
  `masked`: it trains with an inpainting hole, and evaluation scores the hole
  (`eval_mask_ratio`); `reads`: the `config.objective` fields its builder
  reads (besides `name`).
  """

  name: str
  build: Callable[[ml_collections.ConfigDict, models.Autoencoder], LossFn]
  judged: bool
  masked: bool
  reads: tuple[str, ...]


_REGISTRY: dict[str, ObjectiveSpec] = {}
_JUDGE_FIELDS = ("judge", "ema_decay")
_SIGREG_FIELDS = ("sigreg_weight", "sigreg_slices", "sigreg_knots", "sigreg_t_max", "sigreg_flatten")
_MASK_FIELDS = ("mask_ratio", "eval_mask_ratio")


def register(name: str, *, judged: bool, masked: bool, reads: Sequence[str]):
  """Decorator registering `build(config, model) -> loss_fn` as objective `name`.

  The loss function is called as `fn(params, batch_stats, images, key)`, plus
  `judge_params=` and `target_gradient=` when `judged`. A new objective is one
  such function and this decorator: training, evaluation and checkpoints ask
  the registry (`spec`) what they need to know. `reads` lists the objective
  fields the builder reads; the judge and mask fields are added for judged
  and masked objectives.
  """
  reads = tuple(reads) + (_JUDGE_FIELDS if judged else ()) + (_MASK_FIELDS if masked else ())

  def wrap(build):
    _REGISTRY[name] = ObjectiveSpec(name, build, judged, masked, reads)
    return build

  return wrap


def names() -> list[str]:
  """Registered objective names, in registration order."""
  return list(_REGISTRY)


def spec(name: str) -> ObjectiveSpec:
  """The registry entry of objective `name` (ValueError naming the valid ones)."""
  if name not in _REGISTRY:
    raise ValueError(f"Unknown objective.name {name!r}; valid: {', '.join(_REGISTRY)}.")
  return _REGISTRY[name]



def _split_list(value: Any) -> list[str]:
  if value is None:
    return []
  if isinstance(value, str):
    return [v.strip() for v in value.split(",") if v.strip()]
  return [str(v) for v in value]


def _view(name: str, view_args: Any, field: str = "objective.views",
          modality: str = "image") -> views_lib.View:
  kwargs = dict(view_args.get(name, {}) or {}) if view_args else {}
  try:
    return views_lib.get_view(name, modality=modality, **kwargs)
  except (ValueError, TypeError) as err:  # name the config field the bad value came from
    where = f"objective.view_args.{name}" if name in views_lib.names(modality) else field
    raise ValueError(f"{where}: {err}") from err


def parse_views(config: ml_collections.ConfigDict,
                modality: str = "image") -> list[tuple[views_lib.View, float]]:
  """`config.views` ('a,b' or a list) + optional `view_weights` → [(View, weight)].

  The views are looked up in `modality`'s namespace (the model's, `model.modality`).
  """
  view_names = _split_list(config.views)
  weights = [float(w) for w in _split_list(config.view_weights)] or [1.0] * len(view_names)
  if len(weights) != len(view_names):
    raise ValueError(
        f"objective.view_weights has {len(weights)} entries but objective.views names "
        f"{len(view_names)} views ({', '.join(view_names)})."
    )
  if any(w < 0 for w in weights) or (view_names and sum(weights) <= 0):
    raise ValueError(f"objective.view_weights must be non-negative with a positive sum, got {weights}.")
  return [(_view(name, config.view_args, modality=modality), w)
          for name, w in zip(view_names, weights)]


def _check(field: str, value: Any, ok: bool, valid: str) -> None:
  if not ok:
    raise ValueError(f"objective.{field}={value!r} is not valid: it must be {valid}.")


def mask_ratio(config: ml_collections.ConfigDict, field: str = "mask_ratio") -> float:
  """An inpainting hole's area fraction, checked: in [0, 1) for training (0: no hole,
  a control), strictly between 0 and 1 for evaluation (a hole to score)."""
  ratio = float(config[field])
  if field == "eval_mask_ratio":
    _check(field, ratio, 0.0 < ratio < 1.0, "strictly between 0 and 1 (a hole to score)")
  else:
    _check(field, ratio, 0.0 <= ratio < 1.0, "in [0, 1) (something left to inpaint from)")
  return ratio


def sigreg_spec(config: ml_collections.ConfigDict) -> SigregSpec:
  """The SIGReg settings of an objective config (checked: ValueError naming the field)."""
  result = SigregSpec(
      weight=float(config.sigreg_weight),
      num_slices=int(config.sigreg_slices),
      num_knots=int(config.sigreg_knots),
      t_max=float(config.sigreg_t_max),
      flatten=bool(config.sigreg_flatten),
  )
  _check("sigreg_weight", result.weight, result.weight >= 0, ">= 0")
  _check("sigreg_slices", result.num_slices, result.num_slices >= 1, "a positive integer")
  _check("sigreg_knots", result.num_knots, result.num_knots >= 2, "an integer >= 2")
  _check("sigreg_t_max", result.t_max, result.t_max > 0, "positive")
  return result


def create_objective(config: ml_collections.ConfigDict, model: models.Autoencoder) -> Objective:
  """Builds the objective `config.name` for `model` from its `config.objective` fields.

  `config` is a whole objective config (the base config's `objective`, every
  field with its default); each objective reads the fields its spec lists.
  Bad values raise ValueError naming the field.
  """
  entry = spec(config.name)
  judge = ema_decay = None
  if entry.judged:
    judge, ema_decay = config.judge, float(config.ema_decay)
    if judge not in JUDGES:
      raise ValueError(f"Unknown objective.judge {judge!r}; valid: {', '.join(JUDGES)}.")
    if not 0.0 <= ema_decay < 1.0:
      raise ValueError(f"objective.ema_decay must lie in [0, 1), got {ema_decay}.")
  eval_ratio = mask_ratio(config, "eval_mask_ratio") if entry.masked else None
  return Objective(entry.name, entry.build(config, model), judge, ema_decay, eval_ratio)


def _bind(fn: Callable[..., Any], model: models.Autoencoder, **kw: Any) -> LossFn:
  return lambda *args, **more: fn(model, *args, **kw, **more)


@register("self_teaching", judged=True, masked=False,
          reads=("views", "view_weights", "view_args", "plain_weight", "sigreg_on",
                 "judge_updates_norm") + _SIGREG_FIELDS)
def _self_teaching(config: ml_collections.ConfigDict, model: models.Autoencoder) -> LossFn:
  views, plain_weight = parse_views(config, model.modality), float(config.plain_weight)
  _check("plain_weight", plain_weight, plain_weight >= 0, ">= 0")
  if not views and plain_weight <= 0:
    raise ValueError("objective 'self_teaching' needs objective.views or a positive objective.plain_weight.")
  if config.sigreg_on not in SIGREG_ON:
    raise ValueError(f"Unknown objective.sigreg_on {config.sigreg_on!r}; valid: {', '.join(SIGREG_ON)}.")
  return _bind(self_teaching_loss, model, views=views, plain_weight=plain_weight,
               sigreg=sigreg_spec(config), sigreg_on=config.sigreg_on,
               judge_updates_norm=bool(config.judge_updates_norm))


@register("masked_self_teaching", judged=True, masked=True,
          reads=("crop_view", "view_args", "masked_updates_norm") + _SIGREG_FIELDS)
def _masked_self_teaching(config: ml_collections.ConfigDict, model: models.Autoencoder) -> LossFn:
  mask = views_lib.get_view("inpaint", modality=model.modality, mask_ratio=mask_ratio(config))
  crop = _view(config.crop_view, config.view_args, "objective.crop_view", model.modality)
  return _bind(masked_self_teaching_loss, model, crop=crop, mask=mask, sigreg=sigreg_spec(config),
               masked_updates_norm=bool(config.masked_updates_norm))


@register("mse", judged=False, masked=False, reads=_SIGREG_FIELDS)
def _mse_baseline(config: ml_collections.ConfigDict, model: models.Autoencoder) -> LossFn:
  return _bind(mse_loss, model, sigreg=sigreg_spec(config))


@register("masked_mse", judged=False, masked=True, reads=_SIGREG_FIELDS)
def _masked_mse_baseline(config: ml_collections.ConfigDict, model: models.Autoencoder) -> LossFn:
  mask = views_lib.get_view("inpaint", modality=model.modality, mask_ratio=mask_ratio(config))
  return _bind(masked_mse_loss, model, mask=mask, sigreg=sigreg_spec(config))


#: The registered objectives (see `register`).
OBJECTIVES = tuple(names())
