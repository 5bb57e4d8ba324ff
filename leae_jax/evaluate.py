"""Evaluate a trained run: `python -m leae_jax.evaluate --workdir=DIR [--step=N]`.

Restores the run's config (`config.json`) and a checkpoint (the newest by
default), evaluates on the whole test split, prints one JSON object and writes
it to `DIR/eval_<step>.json`.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from absl import app
from absl import flags
import jax
import ml_collections

from leae_jax import base_config
from leae_jax import checkpoints
from leae_jax import train


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config a run saved in its workdir."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: is {workdir} the --workdir of a training run?")
  with open(path) as f:
    return base_config.resolve(ml_collections.ConfigDict(json.load(f)))


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
  return jax.device_put(restored.state, trainer.replicated)


def evaluate_workdir(workdir: str, step: int | None = None, *, max_batches: int = -1) -> dict[str, Any]:
  """Evaluates a run's checkpoint on the test split; writes and returns the results."""
  config = load_config(workdir)
  trainer = train.Trainer(config)
  state = restore_state(workdir, config, trainer, step)
  results, _ = trainer.evaluate(state, max_batches=max_batches)
  results = dict(results, step=int(jax.device_get(state.step)), dataset=config.dataset,
                 objective=config.objective.name)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, f"eval_{results['step']}.json"), "w") as f:
      json.dump(results, f, indent=2, sort_keys=True)
  return results


FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Workdir of a training run.")
flags.DEFINE_integer("step", -1, "Checkpoint step to evaluate (-1: the newest).")
flags.DEFINE_integer("eval_batches", -1, "Evaluate only this many test batches (-1: all).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  try:
    results = evaluate_workdir(FLAGS.workdir, None if FLAGS.step < 0 else FLAGS.step,
                               max_batches=FLAGS.eval_batches)
  except (FileNotFoundError, ValueError) as err:
    sys.exit(f"error: {err}")
  print(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  app.run(main)
