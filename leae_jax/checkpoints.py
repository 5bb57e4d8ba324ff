"""Checkpoints: the whole run state in `<workdir>/checkpoints`, saved asynchronously.

One checkpoint holds two items:

* `state`: the `TrainState` (params, optimizer state, normalisation
  statistics, EMA judge params, step, RNG), saved and restored collectively
  by every process, each writing/reading its own shards;
* `meta`: the config fields that fix the shapes of the state (model, image
  size, objective), checked before restoring so that an incompatible config
  fails in one line instead of deep inside orbax.

The data position is not an item: the training loader's batch of step `s` is
a function of the seed and `s` alone (`data.create_train_loader`, cut by
`data.BatchSchedule`), so a resumed run sees exactly the batches an
uninterrupted one would have — on any number of hosts or workers.

Saves happen every `checkpoint_every_steps` and at 0/20/40/60/80/100 % of
training; the newest `keep` checkpoints and all milestones are kept. orbax
writes into a temporary directory and renames it when complete, so a kill
mid-write never leaves a half checkpoint that looks finished; a finished one
that is later damaged (truncated files) is skipped on restore with a warning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Any

from absl import logging
import jax
import ml_collections
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from leae_jax import objectives
from leae_jax import outputs

CHECKPOINT_DIR = "checkpoints"
MILESTONE_FRACTIONS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


class IncompatibleCheckpointError(ValueError):
  """The checkpoint was written by a run whose state has a different structure."""


def milestone_steps(num_train_steps: int) -> list[int]:
  """Steps at 0/20/40/60/80/100 % of training."""
  return sorted({int(round(f * num_train_steps)) for f in MILESTONE_FRACTIONS})


def structure_fingerprint(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config fields that determine the checkpointed state's tree and shapes."""
  m = config.model
  model = {k: m[k] for k in ("hidden", "latent_channels", "latent", "pool", "pool_channels")
           if m.latent == "pooled" or k not in ("pool", "pool_channels")}
  # `arch` only when not the default, so checkpoints written before it existed still match.
  if m.arch != "residual":
    model["arch"] = m.arch
  # Likewise the kind of data, only when not images (`modalities.py`).
  if config.get("modality", "image") != "image":
    model["modality"] = config.modality
  return {
      "model": model,
      "image_size": int(config.image_size),
      "image_channels": int(config.image_channels),
      "ema_judge": (config.objective.judge == "ema"
                    and objectives.spec(config.objective.name).judged),
      "grad_clip": float(config.grad_clip_norm) > 0,  # adds a state to the optax chain
  }


def _describe_mismatch(saved: dict, wanted: dict, prefix: str = "") -> list[str]:
  diffs = []
  for k in sorted(set(saved) | set(wanted)):
    a, b = saved.get(k), wanted.get(k)
    if isinstance(a, dict) and isinstance(b, dict):
      diffs += _describe_mismatch(a, b, f"{prefix}{k}.")
    elif a != b:
      diffs.append(f"{prefix}{k}: checkpoint {a!r} vs config {b!r}")
  return diffs


@dataclasses.dataclass
class Restored:
  step: int
  state: Any
  skipped: list[int]


class Checkpointer:
  """Saves and restores a run's state, data position and structure metadata."""

  def __init__(self, workdir: str, config: ml_collections.ConfigDict, *, keep: int = 3,
               async_save: bool = True):
    self.directory = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
    self.fingerprint = structure_fingerprint(config)
    self.milestones = milestone_steps(int(config.num_train_steps))
    save_policy = checkpoint_managers.AnySavePolicy([
        checkpoint_managers.FixedIntervalPolicy(int(config.checkpoint_every_steps)),
        checkpoint_managers.SpecificStepsPolicy(self.milestones),
    ])
    keep_policy = checkpoint_managers.AnyPreservationPolicy([
        checkpoint_managers.LatestN(keep),
        checkpoint_managers.CustomSteps(self.milestones),
    ])
    options = ocp.CheckpointManagerOptions(
        save_decision_policy=save_policy,
        preservation_policy=keep_policy,
        enable_async_checkpointing=async_save,
        cleanup_tmp_directories=True,
        create=True,
    )
    self.manager = ocp.CheckpointManager(
        self.directory, options=options,
        handler_registry=_handler_registry())
    self._pending: int | None = None  # the step of the newest save started

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def should_save(self, step: int) -> bool:
    return self.manager.should_save(step)

  def save(self, step: int, state: Any, *, force: bool = False) -> bool:
    """Starts saving (asynchronously); returns whether a save was started.

    A failed write, this one's or an earlier asynchronous one's that surfaces
    now, raises `outputs.WriteError` naming the intact checkpoint to resume from.
    """
    items = {"state": ocp.args.StandardSave(state), "meta": ocp.args.JsonSave(self.fingerprint)}
    with self._writing(step):
      started = self.manager.save(step, args=ocp.args.Composite(**items), force=force)
    if started:
      self._pending = step
    return started

  def wait(self) -> None:
    """Blocks until pending saves are on disk (`outputs.WriteError` if one failed)."""
    with self._writing(self._pending):
      self.manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves, then releases the manager (`outputs.WriteError` if a save failed)."""
    try:
      self.wait()
    finally:
      with self._writing(self._pending):
        self.manager.close()

  def intact_steps(self) -> list[int]:
    """Finished checkpoints on disk (orbax renames a checkpoint into place only when complete)."""
    if not os.path.isdir(self.directory):
      return []
    return sorted(int(d) for d in os.listdir(self.directory)
                  if d.isdigit() and os.path.isdir(os.path.join(self.directory, d)))

  @contextlib.contextmanager
  def _writing(self, step: int | None):
    try:
      yield
    except Exception as err:  # orbax and tensorstore raise many types for one failed write
      on_disk = self.intact_steps()
      # orbax first waits for the save in flight: the error is that one's unless it finished.
      if self._pending is not None and self._pending not in on_disk:
        step = self._pending
      intact = [s for s in on_disk if s != step]
      resume = (f"the checkpoint of step {intact[-1]} is intact: free space (or fix the "
                "permissions) and rerun the same command to resume from it"
                if intact else "no checkpoint was written yet")
      raise outputs.WriteError(
          f"could not write the checkpoint of step {step} to {self.directory} "
          f"({_first_line(err)}); {resume}.") from err

  def check_compatible(self, step: int) -> None:
    """Raises IncompatibleCheckpointError if `step` was saved with another state structure."""
    saved = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    diffs = _describe_mismatch(saved, self.fingerprint)
    if diffs:
      raise IncompatibleCheckpointError(
          f"Checkpoint {self.directory} (step {step}) does not fit this config: {'; '.join(diffs)}. "
          "Use a new --workdir or the original settings.")

  def restore(self, template: Any, *, step: int | None = None) -> Restored | None:
    """Restores `step` (default: the newest loadable one) into the shapes of `template`.

    The restored arrays take `template`'s shardings, whatever the mesh that
    saved them. Damaged checkpoints are skipped (newest first) with a warning naming the
    step; a structure mismatch raises `IncompatibleCheckpointError`. Returns
    None when there is nothing to restore.
    """
    steps = [step] if step is not None else sorted(self.all_steps(), reverse=True)
    if step is not None and step not in self.all_steps():
      raise ValueError(f"No checkpoint for step {step} in {self.directory}; "
                       f"available: {self.all_steps() or 'none'}.")
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
    skipped = []
    for s in steps:
      try:
        self.check_compatible(s)
      except IncompatibleCheckpointError:
        raise
      except Exception as err:  # unreadable metadata: a damaged checkpoint
        if step is not None:
          raise
        logging.warning("Skipping damaged checkpoint at step %d: %s", s, _first_line(err))
        skipped.append(s)
        continue
      items = {"state": ocp.args.StandardRestore(abstract)}
      try:
        restored = self.manager.restore(s, args=ocp.args.Composite(**items))
      except Exception as err:  # truncated / corrupted files
        if step is not None:
          raise
        logging.warning("Skipping damaged checkpoint at step %d: %s", s, _first_line(err))
        skipped.append(s)
        continue
      return Restored(step=s, state=restored["state"], skipped=skipped)
    if skipped:
      logging.warning("No loadable checkpoint in %s (damaged: %s); starting from scratch.",
                      self.directory, skipped)
    return None


def _handler_registry() -> ocp.handlers.DefaultCheckpointHandlerRegistry:
  registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
  registry.add("state", ocp.args.StandardSave, ocp.StandardCheckpointHandler)
  registry.add("state", ocp.args.StandardRestore, ocp.StandardCheckpointHandler)
  registry.add("meta", ocp.args.JsonSave, ocp.JsonCheckpointHandler)
  registry.add("meta", ocp.args.JsonRestore, ocp.JsonCheckpointHandler)
  return registry


def _first_line(err: BaseException) -> str:
  text = str(err).strip().splitlines()
  return f"{type(err).__name__}: {text[0] if text else ''}"
