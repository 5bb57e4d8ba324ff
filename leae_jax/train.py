"""Training and evaluation: train state, jitted steps, and the train-and-evaluate loop.

The per-step PRNG key is `fold_in(state.rng, state.step)`: views, masks and
SIGReg directions depend only on the seed and the step, identically on every
device and host, and a resumed run draws exactly what an uninterrupted one
would have.

(About 550 lines, past the ~500 of the other files: one concept, a run from
config to checkpoints — resolving the config, the state, the step, the
`Trainer` that builds and checks them, and the loop — whose parts change
together; the data, model, objective, checkpoint and console pieces it
drives each live in their own module.)
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import time
from typing import Any

from absl import logging
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from leae_jax import base_config
from leae_jax import checkpoints
from leae_jax import cli
from leae_jax import console
from leae_jax import data
from leae_jax import distributed
from leae_jax import evaluation
from leae_jax import frechet
from leae_jax import modalities
from leae_jax import models
from leae_jax import objectives
from leae_jax import outputs
from leae_jax import resume_check
from leae_jax import sharding
from leae_jax import views
from leae_jax import workdir_lock

PyTree = Any


def resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Returns a copy with derived fields filled in; raises ValueError on bad input.

  Fills `image_size` (dataset default when -1), `image_channels` and
  `num_train_steps` (from `num_epochs` when -1: `num_epochs · ⌈N/B⌉` with
  `epoch_end='partial'`, one step less an epoch where the smaller batch is
  trimmed away on many devices, `⌊num_epochs·N/B⌋` with 'continue'), after
  checking the scalar fields. Resolve once, at the entry point; the model,
  the objective and the mesh are checked where `Trainer` builds them.
  Resolving a resolved config changes nothing.
  """
  config = ml_collections.ConfigDict(config.to_dict())
  base_config.check_scalars(config)
  modality = modalities.get(config.modality)
  info = data.dataset_info(config.dataset)
  if config.fit not in data.FITS:
    raise ValueError(f"fit={config.fit!r} is not valid: it must be one of {', '.join(data.FITS)}.")
  if info.modality != modality.name:
    others = ", ".join(n for n in data.valid_names() if data.dataset_info(n).modality == modality.name)
    raise ValueError(f"dataset={config.dataset!r} is not valid for modality={modality.name!r}: it "
                     f"holds {info.modality} data; the "
                     f"{modality.name} datasets are {others}.")
  # What the data holds (an image folder's size, channels, classes, split sizes).
  info = data.describe(config.dataset, **data.config_options(config))
  if config.image_size in (-1, None):
    config.image_size = info.image_size
  config.image_channels = info.channels
  epoch_end = config.epoch_end
  if epoch_end not in data.EPOCH_ENDS:
    raise ValueError(f"Unknown epoch_end {epoch_end!r}; valid: {', '.join(data.EPOCH_ENDS)}.")
  # The mesh spans every device of every process (after jax.distributed.initialize).
  mesh_shape = sharding.mesh_shape(config.mesh, jax.device_count())
  # Training batches must split evenly; evaluation batches need not (they are
  # padded per device, see data.create_eval_loader), so any eval_batch_size works.
  sharding.check_batch_size("batch_size", config.batch_size, mesh_shape, jax.process_count())
  train_size = info.split_size("train")
  if train_size is not None:  # raises if 'partial' epochs would hold no batch at all
    schedule = data.BatchSchedule(train_size, config.batch_size, epoch_end,
                                  data_shards(mesh_shape, jax.process_count()))
  if config.num_train_steps in (-1, None):
    if train_size is None:
      raise ValueError(f"Set num_train_steps: the size of {config.dataset}'s train split is unknown.")
    config.num_train_steps = schedule.num_steps(config.num_epochs)
  return config


def open_splits(config: ml_collections.ConfigDict) -> None:
  """Opens both splits of the run's dataset: DatasetUnavailableError (one line) if it is missing
  or corrupt, before anything is written or compiled."""
  for split in ("train", "test"):
    data.get_source(config.dataset, split, **data.config_options(config))


def data_shards(mesh_shape: tuple[int, int], num_processes: int) -> int:
  """How many parts every batch is split into: one per device (and per process).

  A 'partial' epoch's smaller last batch is trimmed to a multiple of this.
  """
  return math.lcm(int(mesh_shape[0]) * int(mesh_shape[1]), int(num_processes))


class NonFiniteLossError(RuntimeError):
  """The training loss became NaN or infinite."""


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training (a pytree)."""

  step: jax.Array
  params: PyTree
  batch_stats: PyTree
  opt_state: PyTree
  ema_params: PyTree | None  # the EMA judge's encoder params; None unless judge='ema'
  rng: jax.Array  # raw uint32 key data of the run's base key


LR_SCHEDULES = base_config.LR_SCHEDULES  # checked by base_config.check_scalars


def create_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """The learning-rate schedule named by `config.lr_schedule`.

  `constant` (the published runs: PyTorch AdamW at a fixed rate from the first
  step) or `warmup_cosine` (linear warmup from 0 over `warmup_steps`, then
  cosine decay to `final_learning_rate_ratio` of the peak).
  """
  name = config.lr_schedule
  if name == "constant":
    return optax.constant_schedule(config.learning_rate)
  if name == "warmup_cosine":
    steps = int(config.num_train_steps)
    warmup = min(int(config.warmup_steps), steps // 2)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=config.learning_rate, warmup_steps=warmup,
        decay_steps=max(steps, warmup + 1),
        end_value=config.learning_rate * config.final_learning_rate_ratio)
  raise ValueError(f"Unknown lr_schedule {name!r}; valid: {', '.join(LR_SCHEDULES)}.")


def create_optimizer(config: ml_collections.ConfigDict) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """AdamW as PyTorch's defaults (β 0.9/0.999, ε 1e-8, decoupled decay on every parameter).

  optax's `adamw` computes `p − lr·(m̂/(√v̂ + ε) + wd·p)`, which is PyTorch's
  `p·(1 − lr·wd) − lr·m̂/(√v̂ + ε)` term for term. Optionally clipped by
  global norm (`grad_clip_norm` > 0; the published runs did not clip).
  """
  schedule = create_schedule(config)
  chain = []
  if config.grad_clip_norm > 0:
    chain.append(optax.clip_by_global_norm(config.grad_clip_norm))
  chain.append(optax.adamw(schedule, b1=0.9, b2=0.999, eps=1e-8, weight_decay=config.weight_decay))
  return optax.chain(*chain), schedule


def create_train_state(
    config: ml_collections.ConfigDict,
    model: models.Autoencoder,
    objective: objectives.Objective,
    optimizer: optax.GradientTransformation,
) -> TrainState:
  """Initial state from `config.seed` (params, statistics, optimizer, EMA judge)."""
  init_key, run_key = jax.random.split(jax.random.key(config.seed))
  variables = models.init_variables(model, init_key)
  params = variables["params"]
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats=variables["batch_stats"],
      opt_state=jax.jit(optimizer.init)(params),
      ema_params=objectives.init_ema(params) if objective.uses_ema else None,
      rng=jax.random.key_data(run_key),
  )


def step_key(state: TrainState) -> jax.Array:
  """The PRNG key of `state.step`."""
  return jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)


def train_step(
    state: TrainState,
    images: jax.Array,
    *,
    objective: objectives.Objective,
    optimizer: optax.GradientTransformation,
    schedule: optax.Schedule,
    nan_step: int = -1,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimisation step; returns the new state and scalar metrics (on device).

  `nan_step` >= 0 multiplies the loss by NaN at that step (a test hook for the
  non-finite-loss path).
  """

  images = models.unit_range(images)

  def loss_fn(params):
    loss, aux = objective(params, state.batch_stats, images, step_key(state), state.ema_params)
    if nan_step >= 0:
      poison = jnp.where(state.step == nan_step, jnp.nan, 1.0)
      loss = loss * poison
      aux = dict(aux, parts=dict(aux["parts"], loss=aux["parts"]["loss"] * poison))
    return loss, aux

  (_, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  ema = state.ema_params
  if objective.uses_ema:
    ema = objectives.update_ema(ema, params["encoder"], objective.ema_decay)
  step_metrics = dict(aux["parts"], grad_norm=optax.tree.norm(grads),
                      learning_rate=schedule(state.step))
  new_state = state.replace(step=state.step + 1, params=params, batch_stats=aux["batch_stats"],
                            opt_state=opt_state, ema_params=ema)
  return new_state, step_metrics


@contextlib.contextmanager
def shapes_checked(config: ml_collections.ConfigDict):
  """Turns a shape error raised while tracing (`ValueError` / `TypeError`) into one line
  naming the model, the input and the objective (before anything compiles)."""
  try:
    yield
  except (ValueError, TypeError) as err:
    m = config.model
    raise ValueError(
        f"model.arch={m.arch!r} with model.hidden={m.hidden}, model.latent_channels="
        f"{m.latent_channels} on "
        f"{modalities.get(config.modality).describe_input(config.image_size, config.image_channels)} "
        f"does not fit objective "
        f"{config.objective.name!r} (views {config.objective.views!r}): "
        f"{str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}") from err


def _under_mesh(mesh: jax.sharding.AbstractMesh, fn):
  """`fn` traced with `mesh` as the abstract mesh in context (for `models.split_batch`)."""

  @functools.wraps(fn)
  def run(*args, **kwargs):
    with jax.sharding.use_abstract_mesh(mesh):
      return fn(*args, **kwargs)

  return run


class Trainer:
  """Holds the pieces of a run: model, objective, optimizer, mesh and jitted steps.

  Kept small and explicit so a notebook can build one from a config and call
  `train_step` / `evaluate` itself. The steps are `jax.jit` with explicit
  shardings over the `('data', 'fsdp')` mesh of `config.mesh` (see
  `sharding.py`); `devices` restricts the mesh to some devices (default: all,
  across all processes). `trains=False` builds one that only restores and
  evaluates (`leae_jax.evaluate`, `pretrained`'s export, the ladders' samples):
  it skips the start-up trace of the train step it never runs (about 2 s of
  every evaluation's start), while the state's shapes are still checked.
  """

  def __init__(self, config: ml_collections.ConfigDict,
               devices: list[jax.Device] | None = None, *, trains: bool = True):
    self.config = config
    # The kind of data picks the model family, the views and the metrics (modalities.py).
    self.modality = modalities.get(config.modality)
    self.model = self.modality.create_model(config.model, config.image_size,
                                            config.image_channels)
    self.objective = objectives.create_objective(config.objective, self.model)
    self.optimizer, self.schedule = create_optimizer(config)
    # Prepared records are uint8 at training size; their batches stay uint8 on
    # the way (a quarter of the bytes) and the step scales them on the device.
    self.uint8_images = data.uint8_batches(config)
    # Evaluation holes have their own ratio: the published masked-MSE baseline
    # trained at 0.5 but was compared with the self-teaching model at 0.35.
    self.mask = (views.get_view("inpaint", modality=self.model.modality,
                                mask_ratio=self.objective.eval_mask_ratio)
                 if self.objective.masked else None)
    # The Fréchet distance's feature net, where one is shipped for this dataset, size and
    # channels (`frechet.load`; else evaluation reports no Fréchet distance).
    self.feature_net = (frechet.load(config.dataset, image_size=int(config.image_size),
                                     channels=int(config.image_channels))
                        if self.model.modality == "image" else None)
    mesh_config = config.mesh
    self.mesh = sharding.create_mesh(mesh_config, devices)
    self.data_sharding = sharding.batch_sharding(self.mesh)
    self.replicated = sharding.replicated(self.mesh)
    # Training batches must split evenly; evaluation pads its batches instead
    # (any eval_batch_size works, see `evaluate`).
    sharding.check_batch("batch_size", int(config.batch_size), self.mesh)
    # A 'partial' epoch's smaller last batch is trimmed to a multiple of this,
    # and evaluation batches are padded to a multiple of it.
    self.data_shards = data_shards((self.mesh.shape["data"], self.mesh.shape["fsdp"]),
                                   jax.process_count())
    create = functools.partial(create_train_state, config, self.model, self.objective,
                               self.optimizer)
    min_size = int(mesh_config.fsdp_min_size)
    with shapes_checked(config):
      abstract_state = jax.eval_shape(create)
    self.state_sharding = sharding.state_sharding(abstract_state, self.mesh, min_size)
    self._init_state = jax.jit(create, out_shardings=self.state_sharding)
    # Traced under the mesh, so that every layer keeps activations split over
    # the batch (`models.split_batch`).
    under_mesh = functools.partial(_under_mesh, self.mesh.abstract_mesh)
    self.train_step = jax.jit(
        under_mesh(functools.partial(train_step, objective=self.objective, optimizer=self.optimizer,
                                     schedule=self.schedule, nan_step=int(config.debug_nan_step))),
        in_shardings=(self.state_sharding, self.data_sharding),
        out_shardings=(self.state_sharding, self.replicated),
        donate_argnums=(0,))
    self.eval_step = jax.jit(
        under_mesh(functools.partial(
            evaluation.eval_step, model=self.model, objective=self.objective, mask=self.mask,
            num_real=int(config.eval_batch_size),
            features=(functools.partial(frechet.features_fn, self.feature_net.params)
                      if self.feature_net is not None else None))),
        in_shardings=(self.state_sharding, self.data_sharding, self.replicated))
    # Every shape the model and views need, checked in about a second, before anything
    # compiles (e.g. a width the skips cannot split fails in one line at start-up). The
    # trace is the jitted step's own: the first step reuses it instead of tracing again.
    if trains:
      with shapes_checked(config):
        self.train_step.trace(*self.abstract_step_args())

  def abstract_step_args(self) -> tuple[TrainState, jax.ShapeDtypeStruct]:
    """Shape-only `(state, images)` of `train_step`, with their shardings (to lower or export it)."""
    c = self.config
    state = jax.tree_util.tree_map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
        jax.eval_shape(self.init_state), self.state_sharding)
    shape = (c.batch_size, *self.model.input_shape)
    dtype = jnp.uint8 if self.uint8_images else jnp.float32
    return state, jax.ShapeDtypeStruct(shape, dtype, sharding=self.data_sharding)

  def init_state(self) -> TrainState:
    """The initial state, created directly in its shardings (no host copy)."""
    return self._init_state()

  def global_batch(self, local_images: np.ndarray) -> jax.Array:
    """This process's share of a batch → a global array split over the mesh."""
    return jax.make_array_from_process_local_data(self.data_sharding, local_images)

  def train_loader(self, start_step: int = 0) -> data.TrainLoader:
    """This process's rows of every step's global batch, from the batch of `start_step` on.

    The steps cut the seed's record order as `config.epoch_end` says
    (`data.BatchSchedule`): with 'partial', each epoch ends with a smaller
    batch, trimmed to a multiple of `data_shards` so that it splits evenly.
    """
    c = self.config
    return data.create_train_loader(
        c.dataset, batch_size=c.batch_size, seed=c.seed, epoch_end=c.epoch_end,
        multiple=self.data_shards, start_step=start_step, worker_count=c.num_workers,
        uint8_images=self.uint8_images, **data.config_options(c))

  def evaluate(self, state: TrainState, *, max_batches: int = -1,
               collect_codes: bool = False) -> evaluation.EvalResult:
    """`evaluation.evaluate` of this run's pieces (see there)."""
    return evaluation.evaluate(self, state, max_batches=max_batches, collect_codes=collect_codes)


def _check_finite(host: list[dict[str, Any]], first_step: int) -> None:
  for offset, m in enumerate(host):
    if not np.isfinite(m["loss"]):
      parts = ", ".join(f"{k}={float(v):.6g}" for k, v in sorted(m.items()))
      raise NonFiniteLossError(f"Non-finite loss at step {first_step + offset}: {parts}. "
                               "Stopping; lower the learning rate or enable grad_clip_norm.")


def _summarise(buffer: list[dict[str, jax.Array]], first_step: int) -> dict[str, float]:
  """Means of buffered step metrics; raises NonFiniteLossError naming the first bad step."""
  host = jax.device_get(buffer)
  _check_finite(host, first_step)
  return {k: float(np.mean([m[k] for m in host])) for k in host[0]}


#: Errors a user can fix (bad data, a diverged run, a config that does not fit
#: its checkpoint, a full disk): the command line prints their message alone.
USER_ERRORS = (data.DatasetUnavailableError, NonFiniteLossError,
               checkpoints.IncompatibleCheckpointError, outputs.WriteError,
               workdir_lock.WorkdirBusyError, resume_check.ResumeChangedError)


def train_and_evaluate(config: ml_collections.ConfigDict | None, workdir: str, *,
                       trainer: Trainer | None = None, name: str = "") -> dict[str, Any]:
  """Trains `config` in `workdir`, evaluating periodically; returns the final eval metrics.

  Resumes automatically from the newest loadable checkpoint in `workdir`.
  Holds the workdir's lock while it trains (`workdir_lock`): a second run on
  the same workdir raises `WorkdirBusyError` before writing anything.
  SIGTERM saves a checkpoint at the current step and returns early with
  `preempted=True`. A non-finite loss raises `NonFiniteLossError` before any
  checkpoint of the bad state is written; a failed write raises
  `outputs.WriteError` and leaves the earlier checkpoints intact.

  `config` is resolved here unless it already is (`resolve`); or pass
  `trainer`, a `Trainer` already built from the resolved config (the command
  line builds it first, so that every check runs before anything compiles),
  and `config=None`.

  The console gets a header (`name`, the config's gist, parameters, devices,
  workdir), the progress bar, a line per evaluation and a closing summary;
  the full resolved config and library logs go to the workdir.
  """
  if trainer is None:
    if "image_channels" not in config:  # not resolved yet (library use; the CLI resolves)
      config = resolve(config)
    trainer = Trainer(config)
  open_splits(trainer.config)  # a missing or corrupt dataset fails now, before anything compiles
  # One run per workdir: a second one stops here, before it writes anything
  # (process 0 holds the lock for a run of several processes).
  lock = (workdir_lock.WorkdirLock(workdir) if jax.process_index() == 0
          else contextlib.nullcontext())
  with lock:
    return _train_and_evaluate(trainer, workdir, name)


def _check_resume(workdir: str, resolved: dict[str, Any]) -> dict[str, list[Any]]:
  """The changes from the run stored in `workdir` (none for a new run); `resume_check.check`
  refuses those that change what is trained."""
  stored_path = os.path.join(workdir, "config.json")
  ckpt_dir = os.path.join(workdir, checkpoints.CHECKPOINT_DIR)
  has_steps = os.path.isdir(ckpt_dir) and any(n.isdigit() for n in os.listdir(ckpt_dir))
  if not (has_steps and os.path.exists(stored_path)):
    return {}
  with open(stored_path, encoding="utf-8") as f:
    # Fields added since the run was stored take today's defaults, as a resume reads them.
    stored = json.loads(base_config.from_saved(json.load(f)).to_json_best_effort())
  return resume_check.check(stored, resolved, resolved.get("allow_changes", ""), workdir)


def _train_and_evaluate(trainer: Trainer, workdir: str, name: str) -> dict[str, Any]:
  config = trainer.config
  is_main = jax.process_index() == 0
  resolved = json.loads(config.to_json_best_effort())
  changed = _check_resume(workdir, resolved)  # before config.json is overwritten
  if is_main:
    os.makedirs(workdir, exist_ok=True)
    logging.info("Resolved config:\n%s", config)

  logging.info("Process %d of %d loads %d images of every global batch of %d; mesh %s.",
               jax.process_index(), jax.process_count(), config.batch_size // jax.process_count(),
               config.batch_size, dict(trainer.mesh.shape))
  ckpt = checkpoints.Checkpointer(workdir, config, keep=int(config.checkpoints_to_keep))
  state = trainer.init_state()
  restored = ckpt.restore(state)
  if is_main:  # only once the stored state fits: a refused resume leaves the run's record alone
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  writer = outputs.MetricWriter(workdir, enabled=is_main)
  n_params = models.count_params(state.params)
  num_steps = int(config.num_train_steps)
  resuming = ""
  if restored is not None:
    state = restored.state  # already in trainer.state_sharding (the template's)
    if is_main:
      dropped = outputs.truncate_metrics(workdir, restored.step)
      skipped = f" (skipped damaged checkpoints at steps {restored.skipped})" if restored.skipped else ""
      resuming = f" · resuming at step {restored.step}{skipped}"
      if restored.skipped:
        logging.warning("Skipped damaged checkpoints at steps %s.", restored.skipped)
      logging.info("Dropped %d metrics records logged after step %d.", dropped, restored.step)
  elif is_main:
    writer.write_scalars(0, {"num_params": n_params})
  if is_main:
    resume_check.record(workdir, resolved, restored.step if restored is not None else 0, changed)
  mesh = dict(trainer.mesh.shape)
  devices = (f"{jax.device_count()} {jax.devices()[0].platform} device"
             f"{'s' if jax.device_count() > 1 else ''}"
             + (f" in {jax.process_count()} processes" if jax.process_count() > 1 else "")
             + (f" (mesh data {mesh['data']} × fsdp {mesh['fsdp']})" if mesh["fsdp"] > 1 else ""))
  header = (f"{name + ' · ' if name else ''}{console.describe(config)} · {n_params:,} params · "
            f"{devices} · {num_steps} steps of {config.batch_size} · workdir {workdir}{resuming}")
  logging.info("%s", header)

  start_step = int(jax.device_get(state.step))
  loader = trainer.train_loader(start_step)
  batches = loader.schedule
  logging.info("Epochs of %s steps (%d records, global batch %d, last batch %d, epoch_end=%s).",
               batches.steps_per_epoch, batches.num_records, batches.batch_size,
               batches.last_batch_size, batches.epoch_end)
  train_iter = iter(loader)
  if is_main:
    print(header, flush=True)
  progress = console.Progress(num_steps, start_step, enabled=is_main, bar=config.progress_bar)
  buffer: list[dict[str, jax.Array]] = []
  last_time, images_seen = time.perf_counter(), 0  # images since the last log (batches vary)
  started = time.perf_counter()
  eval_results: dict[str, Any] = {}
  preempted = interrupted = False
  grids: list[str] = []

  def run_eval(step: int) -> dict[str, Any]:
    results, shown, _, _ = trainer.evaluate(state, max_batches=config.eval_batches)
    writer.write_scalars(step, {f"eval/{k}": v for k, v in results.items()})
    if shown:
      grid = writer.write_image(step, "eval/grid",
                                trainer.modality.picture(evaluation.grid_rows(shown)))
      if grid:
        grids.append(grid)
    progress.write(f"eval @ {step}: {console.format_eval(results)}")
    return results

  def save(step: int, force: bool = False) -> None:
    # Never checkpoint a state whose loss went non-finite: check the losses of
    # the steps not yet logged first (one device sync, only at checkpoint
    # steps); if one is bad, fetch every part of those steps to name them.
    losses = jax.device_get([m["loss"] for m in buffer])
    if not np.all(np.isfinite(losses)):
      _check_finite(jax.device_get(buffer), step - len(buffer))
    ckpt.save(step, state, force=force)

  failed = True
  try:
    with distributed.StopRequest() as stop:
      if restored is None and ckpt.should_save(start_step):
        save(start_step)
      for step in range(start_step, num_steps):
        batch = next(train_iter)
        # The last batch of a 'partial' epoch is smaller: jit compiles the step
        # once more for its shape, on its first occurrence.
        images = trainer.global_batch(batch["image"])
        state, step_metrics = trainer.train_step(state, images)
        buffer.append(step_metrics)
        images_seen += images.shape[0]
        done = step + 1
        if done % config.log_every_steps == 0 or done == num_steps:
          # Each step weighs the same in the means, the smaller batch too: the
          # published runs logged step by step.
          summary = _summarise(buffer, done - len(buffer))
          now = time.perf_counter()
          summary["images_per_s"] = images_seen / max(now - last_time, 1e-9)
          summary["epoch"] = batches.epochs_done(done)
          last_time, images_seen, buffer = now, 0, []
          writer.write_scalars(done, {f"train/{k}": v for k, v in summary.items()})
          progress.update(done, summary)
        if stop.should_stop(done):
          save(done, force=True)
          ckpt.wait()
          interrupted = stop.interrupted
          progress.write(f"interrupted (Ctrl-C) at step {done}; saved; rerun the same command to "
                         "resume." if interrupted else
                         f"SIGTERM: saved a checkpoint at step {done}; rerun the same command to "
                         "resume.")
          preempted = True
          break
        if ckpt.should_save(done):
          save(done)
        if config.eval_every_steps > 0 and (done % config.eval_every_steps == 0 or done == num_steps):
          eval_results = run_eval(done)
          # Evaluation time is not training throughput.
          last_time, images_seen = time.perf_counter(), 0
    failed = False
  finally:
    progress.close()
    if hasattr(train_iter, "close"):  # stops read threads and worker processes now
      train_iter.close()
    try:
      ckpt.close()  # waits for pending (good) saves
    except outputs.WriteError:
      if not failed:
        raise
      # Already stopping for another error: that one is the message; this one is logged.
      logging.exception("A pending checkpoint save failed too.")
    if is_main:
      try:
        outputs.plot_curves(outputs.read_metrics(workdir), os.path.join(workdir, "loss_curves.png"))
      except OSError:
        if not failed:
          raise
        logging.exception("Could not write loss_curves.png.")
    try:
      writer.close()
    except OSError:
      if not failed:
        raise
      logging.exception("Could not close the TensorBoard writer.")
  final_step = int(jax.device_get(state.step))
  if is_main:
    # A library caller that set up no log file keeps its logs where it put them.
    log_dir = cli.log_dir()
    logs_here = log_dir is not None and (
        os.path.realpath(log_dir) == os.path.realpath(os.path.join(workdir, "logs")))
    print(console.closing_summary(workdir, final_step, time.perf_counter() - started, eval_results,
                          grids[-1] if grids else None, preempted, interrupted,
                          logs=logs_here), flush=True)
  return dict(eval_results, step=final_step, preempted=preempted, interrupted=interrupted)
