"""Command line: `python -m leae_jax.main --config=configs/cifar.py[:variant] --workdir=DIR`.

Any config field can be overridden, e.g. `--config.batch_size=64
--config.num_train_steps=200 --config.objective.judge=live`.

Several hosts: on TPU pods and under SLURM the distributed runtime starts by
itself; elsewhere pass `--coordinator_address=HOST:PORT --num_processes=N
--process_id=I` to every process (see launch/ and docs/scaling.md).
"""

import sys

from absl import flags
import jax
from ml_collections import config_flags

from leae_jax import cli
from leae_jax import distributed
from leae_jax import train

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for metrics, images, logs and checkpoints.")
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
  del argv  # cli.run rejects positional arguments
  if not FLAGS.workdir:
    raise cli.UserError("--workdir is required.")
  try:
    distributed.initialize(FLAGS.distributed, coordinator_address=FLAGS.coordinator_address,
                           num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
  except ValueError as err:  # an incomplete set of --coordinator_address/--num_processes/...
    raise cli.UserError(err) from err
  try:  # every check that needs no compilation: bad names, values, shapes and data
    trainer = train.Trainer(train.resolve(FLAGS.config))
  except ValueError as err:
    raise cli.UserError(err) from err
  # A missing dataset stops here, before the workdir is created or written to.
  train.open_splits(trainer.config)
  cli.check_writable_dir(FLAGS.workdir)
  # Several processes share the workdir: one log per process.
  cli.log_to_workdir(FLAGS.workdir, "leae" if jax.process_count() == 1
                     else f"leae_process{jax.process_index()}")
  result = train.train_and_evaluate(None, FLAGS.workdir, trainer=trainer,
                                    name=cli.flag_value("config"))
  if result.get("interrupted"):
    sys.exit(cli.EXIT_INTERRUPTED)  # saved at the current step; the same command resumes


if __name__ == "__main__":
  cli.run(main, user_errors=train.USER_ERRORS)
