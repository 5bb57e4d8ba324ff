"""Command line: `python -m leae_jax.main --config=configs/cifar.py[:variant] --workdir=DIR`.

Any config field can be overridden, e.g. `--config.batch_size=64
--config.num_train_steps=200 --config.objective.judge=live`.

Several hosts: on TPU pods and under SLURM the distributed runtime starts by
itself; elsewhere pass `--coordinator_address=HOST:PORT --num_processes=N
--process_id=I` to every process (see launch/ and the README).
"""

import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from leae_jax import base_config
from leae_jax import checkpoints
from leae_jax import data
from leae_jax import distributed
from leae_jax import train

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for metrics, images and checkpoints.")
config_flags.DEFINE_config_file(
    "config", None, "Config file, e.g. configs/cifar.py or configs/cifar.py:pixel_mask.",
    lock_config=True)
flags.DEFINE_enum("distributed", "auto", list(distributed.MODES),
                  "Start jax.distributed: auto = when the flags below are given or a "
                  "TPU pod / SLURM / Open MPI job is detected.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process runs).")
flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process runs).")
flags.DEFINE_integer("process_id", None, "This process's index (multi-process runs).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  try:
    distributed.initialize(FLAGS.distributed, coordinator_address=FLAGS.coordinator_address,
                           num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
    config = base_config.resolve(FLAGS.config)
  except ValueError as err:  # bad names or shapes: one line, no traceback
    sys.exit(f"error: {err}")
  try:
    train.train_and_evaluate(config, FLAGS.workdir)
  except (data.DatasetUnavailableError, train.NonFiniteLossError,
          checkpoints.IncompatibleCheckpointError) as err:
    sys.exit(f"error: {err}")


if __name__ == "__main__":
  app.run(main)
