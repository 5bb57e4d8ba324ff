"""Evaluates one state on 1, 3 and 8 simulated CPU devices and prints the results as JSON.

Not a test module itself: `eval_padding_test.py` runs it in a subprocess with
`XLA_FLAGS=--xla_force_host_platform_device_count=8` (the device count is
fixed when JAX starts) and compares the numbers. The test split is cut to 23
shapes records and evaluated in batches of 10 (10 + 10 + 3), which divide
neither 3 nor 8 devices: the global batches are padded to 12 and 16 slots.
The state is trained one step on one device first, so that the parameters
and the running statistics are not the initial ones, then placed on each
mesh. The objective is `masked_self_teaching`, whose evaluation has every
per-image metric (MSE, PSNR, SSIM, masked and hole PSNR) and objective parts
that depend on batch statistics.
"""

import dataclasses
import json

import jax
import numpy as np

jax.config.update("jax_threefry_partitionable", False)

from leae_jax import data
from leae_jax import evaluation
from leae_jax import train

import helpers

NUM_TEST = 23
EVAL_BATCH_SIZE = 10
DEVICE_COUNTS = (1, 3, 8)
data._REGISTRY["shapes"] = dataclasses.replace(  # pylint: disable=protected-access
    data.dataset_info("shapes"), num_test=NUM_TEST)


def main():
  assert jax.device_count() == 8, jax.device_count()
  config = train.resolve(helpers.tiny_config(**{
      "objective.name": "masked_self_teaching", "batch_size": 24,
      "eval_batch_size": EVAL_BATCH_SIZE, "eval_batches": -1, "num_grid_images": 12}))
  reference = train.Trainer(config, devices=jax.devices()[:1])
  state = reference.init_state()
  images = np.random.default_rng(0).uniform(size=(24, 32, 32, 1)).astype(np.float32)
  state, _ = reference.train_step(state, reference.global_batch(images))
  host_state = jax.device_get(state)
  source = data.get_source("shapes", "test", image_size=32)
  out = {"split_labels": [int(source[i]["label"]) for i in range(NUM_TEST)],
         "split_images": np.stack([source[i]["image"] for i in range(EVAL_BATCH_SIZE)]).tolist()}
  for count in DEVICE_COUNTS:
    trainer = train.Trainer(config, devices=jax.devices()[:count])
    placed = jax.device_put(host_state, trainer.state_sharding)
    metrics, shown, codes, labels = trainer.evaluate(placed, collect_codes=True)
    split_codes, split_labels = evaluation.encode_split(trainer, placed, "test")
    first_codes, _ = evaluation.encode_split(trainer, placed, "test", max_examples=12)
    out[count] = {"metrics": metrics, "slots": data.eval_slots(EVAL_BATCH_SIZE, trainer.data_shards),
                  "codes": np.asarray(codes, np.float64).tolist(), "labels": labels.tolist(),
                  "split_codes": np.asarray(split_codes, np.float64).tolist(),
                  "split_labels": split_labels.tolist(),
                  "first_codes": np.asarray(first_codes, np.float64).tolist(),
                  "shown": {k: np.asarray(v, np.float64).tolist() for k, v in shown.items()}}
  print(json.dumps(out), flush=True)


if __name__ == "__main__":
  main()
