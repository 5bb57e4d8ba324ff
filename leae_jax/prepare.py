"""Command line: `python -m leae_jax.prepare --config=configs/celeba.py --out=DIR`.

Writes the config's dataset, already fitted to its `image_size` (centre crop,
resize or pad, as training would), as uint8 prepared records in `DIR`
(`data.prepared`); then train with `--config.prepared_dir=DIR`: the input
workers only copy bytes, and batches stay uint8 until the device.

    python -m leae_jax.prepare --config=configs/celeba.py --out=/data/celeba128 --workers=8
    python -m leae_jax.main --config=configs/celeba.py --config.prepared_dir=/data/celeba128 ...

The dataset itself must be readable first: an image folder or a prepared
TFDS ArrayRecord copy under `--config.data_dir` (see the README), e.g. the
CIFAR-10 JPEGs:

    python -m leae_jax.prepare --config=configs/cifar.py --config.data_dir=DIR --out=/data/cifar10_32
"""

from absl import flags
from ml_collections import config_flags

from leae_jax import cli
from leae_jax import data
from leae_jax import train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/celeba.py.",
                                lock_config=True)
flags.DEFINE_string("out", None, "Directory to write the prepared records to.")
flags.DEFINE_list("splits", ["train", "test"], "Splits to prepare.")
flags.DEFINE_integer("workers", 0, "grain worker processes reading and fitting images (0: threads).")
flags.DEFINE_integer("num_shards", 0, "Shards per split (0: about 1 GiB each).")
flags.mark_flags_as_required(["config", "out"])


def main(argv):
  del argv  # cli.run rejects positional arguments
  for split in FLAGS.splits:
    if split not in ("train", "test"):
      raise cli.UserError(f"--splits={','.join(FLAGS.splits)}: {split!r} is not a split; "
                          "valid: train, test.")
  for name in ("workers", "num_shards"):
    if FLAGS[name].value < 0:
      raise cli.UserError(f"--{name}={FLAGS[name].value} is not valid: it must be >= 0.")
  if FLAGS.config.prepared_dir is not None:
    raise cli.UserError(f"config.prepared_dir={FLAGS.config.prepared_dir!r}: the config to "
                        "prepare from must read the dataset itself; leave prepared_dir unset here.")
  try:
    config = train.resolve(FLAGS.config)
  except ValueError as err:
    raise cli.UserError(err) from err
  if config.dataset == "shapes":
    raise cli.UserError("dataset='shapes' is generated as float32 at any size and needs no "
                        "preparation; prepared records hold uint8 datasets.")
  if data.dataset_info(config.dataset).modality != "image":
    raise cli.UserError(f"dataset={config.dataset!r} holds float series; prepared records hold "
                        "uint8 images (image datasets only).")
  out = cli.check_writable_dir(FLAGS.out, "--out")
  cli.log_to_workdir(out, "prepare")
  options = {k: v for k, v in data.config_options(config).items()
             if k not in ("image_size", "prepared_dir")}
  data.prepared.prepare(config.dataset, out, splits=FLAGS.splits, image_size=config.image_size,
                        num_shards=FLAGS.num_shards or None, worker_count=FLAGS.workers,
                        log=print, **options)
  print(f"prepared {config.dataset} at {config.image_size}px in {out}: train with "
        f"--config.prepared_dir={out}")


if __name__ == "__main__":
  cli.run(main, user_errors=train.USER_ERRORS)
