"""Input pipeline throughput: the dataset's own grain pipeline vs its prepared records.

    PYTHONPATH=. python benchmarks/input_pipeline.py [--configs=cifar,celeba] [--batches=30]

For each config, the training loader (`data.create_train_loader`, the one
training reads) is timed over `--batches` global batches after 3 warm-up
batches, at one and two read threads in this process and with one and two
grain worker processes:

* `source`: the dataset's own pipeline (TFDS records, cropped/resized/scaled
  in the workers), float32 batches;
* `prepared`: the same records written once by `data.prepared.prepare`
  (uint8 at training size), uint8 batches.

Without `--data_dir`, CIFAR-10 and CelebA read TFDS mock records of the real
shapes (`tfds.testing.mock_data`): the source pipeline then skips the
PNG/JPEG decoding real records need, so its figures are an upper bound. With
`--data_dir=DIR` (an image folder, e.g. the real CIFAR-10 JPEGs), the source
pipeline decodes the first `--records` real files of DIR:

    PYTHONPATH=. python benchmarks/input_pipeline.py --configs=cifar \
        --data_dir=../shared/data/cifar10

One read thread is one core: its images/s is the per-core rate.
Prints a markdown table and writes JSON with `--json`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time

from absl import app
from absl import flags

from leae_jax import base_config
from leae_jax import bench
from leae_jax import data
from leae_jax import train

FLAGS = flags.FLAGS
flags.DEFINE_list("configs", ["cifar", "celeba"], "base_config.load specs.")
flags.DEFINE_integer("batches", 30, "Timed batches per setting.")
flags.DEFINE_integer("records", 2048, "Mock records per dataset (prepared once).")
flags.DEFINE_string("json", None, "Also write the results here.")
flags.DEFINE_string("data_dir", None, "Read the configs' dataset from this image folder (or TFDS "
                    "copy) instead of mock records.")

SETTINGS = (("1 thread", dict(num_threads=1, worker_count=0)),
            ("2 threads", dict(num_threads=2, worker_count=0)),
            ("1 worker", dict(num_threads=1, worker_count=1)),
            ("2 workers", dict(num_threads=1, worker_count=2)))


def time_loader(config, batches: int, warmup: int = 3, **kw) -> float:
  """Images/s of the training loader over `batches` batches after `warmup`."""
  loader = data.create_train_loader(
      config.dataset, batch_size=config.batch_size, seed=0, epoch_end="continue",
      image_size=config.image_size, shard_index=0, shard_count=1, **kw)
  return bench.loader_images_per_s(loader, batches=batches, warmup=warmup)


def main(argv):
  del argv
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  rows = []
  real = dict(data_dir=FLAGS.data_dir, num_records=FLAGS.records) if FLAGS.data_dir else {}
  records = (contextlib.nullcontext() if real else tfds.testing.mock_data(
      num_examples=FLAGS.records, policy=tfds.testing.MockPolicy.USE_CODE))
  with tempfile.TemporaryDirectory() as tmp, records:
    for spec in FLAGS.configs:
      config = base_config.load(spec)
      if FLAGS.data_dir:
        config.data_dir = FLAGS.data_dir
      config = train.resolve(config)
      out = os.path.join(tmp, spec)
      t0 = time.perf_counter()
      data.prepared.prepare(config.dataset, out, splits=("train",), image_size=config.image_size,
                            **real)
      prepare_rate = FLAGS.records / (time.perf_counter() - t0)
      for name, kw in SETTINGS:
        for source in ("source", "prepared"):
          extra = dict(prepared_dir=out, uint8_images=True) if source == "prepared" else real
          rate = time_loader(config, FLAGS.batches, **kw, **extra)
          rows.append(dict(config=spec, image_size=int(config.image_size), setting=name,
                           source=source, images_per_s=round(rate, 1),
                           prepare_records_per_s=round(prepare_rate, 1)))
          print(json.dumps(rows[-1]), flush=True)
  print("\n| config | setting | source pipeline (images/s) | prepared records (images/s) | ratio |")
  print("|---|---|---|---|---|")
  for spec in FLAGS.configs:
    for name, _ in SETTINGS:
      got = {r["source"]: r["images_per_s"] for r in rows
             if r["config"] == spec and r["setting"] == name}
      print(f"| `{spec}` | {name} | {got['source']:,.0f} | {got['prepared']:,.0f} | "
            f"{got['prepared'] / got['source']:.1f}× |")
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  app.run(main)
