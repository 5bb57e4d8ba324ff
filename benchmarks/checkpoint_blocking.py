"""How long does a checkpoint save block the training loop?

`python benchmarks/checkpoint_blocking.py --config=configs/cifar.py [--repeats=5]`

Builds the config's real train state (params, AdamW state, statistics, EMA
judge where configured), runs a few real train steps on random images, then
times `Checkpointer.save` (the part the loop waits for: device-to-host copy
and dispatch of the asynchronous write) and the full write to disk. Prints
one JSON line.
"""

import json
import tempfile
import time

from absl import app
from absl import flags
import jax
import numpy as np
from ml_collections import config_flags

from leae_jax import checkpoints
from leae_jax import models
from leae_jax import train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/cifar.py", "Config to measure.")
flags.DEFINE_integer("repeats", 5, "Number of saves to time.")


def main(argv):
  del argv
  config = train.resolve(FLAGS.config)
  trainer = train.Trainer(config)
  state = trainer.init_state()
  rng = np.random.default_rng(0)
  shape = (config.batch_size, config.image_size, config.image_size, config.image_channels)
  blocking, total = [], []
  with tempfile.TemporaryDirectory() as workdir:
    ckpt = checkpoints.Checkpointer(workdir, config, keep=2)
    for i in range(FLAGS.repeats + 1):
      for _ in range(3):
        state, m = trainer.train_step(state, trainer.global_batch(rng.uniform(size=shape).astype(np.float32)))
      jax.block_until_ready(m)
      t0 = time.perf_counter()
      ckpt.save(1000 + i, state, force=True)
      t1 = time.perf_counter()
      ckpt.wait()
      t2 = time.perf_counter()
      if i:  # the first save also creates directories and compiles nothing: drop it
        blocking.append(t1 - t0)
        total.append(t2 - t0)
    ckpt.close()
  print(json.dumps({
      "config": config_flags.get_config_filename(FLAGS["config"]), "params": models.count_params(state.params),
      "state_bytes": int(sum(x.nbytes for x in jax.tree_util.tree_leaves(state))),
      "save_blocking_ms_median": round(1e3 * float(np.median(blocking)), 1),
      "save_blocking_ms_max": round(1e3 * float(np.max(blocking)), 1),
      "save_total_ms_median": round(1e3 * float(np.median(total)), 1),
      "device": jax.devices()[0].device_kind, "repeats": FLAGS.repeats}))


if __name__ == "__main__":
  app.run(main)
