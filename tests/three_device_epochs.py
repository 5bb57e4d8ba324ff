"""The smaller last batch of a 'partial' epoch on 3 devices (trimmed to split evenly).

Not a test module itself: `epoch_end_test.py` runs it in a subprocess with
`XLA_FLAGS=--xla_force_host_platform_device_count=3` (the device count is
fixed when JAX starts) and checks the JSON it prints. The training split is
20 shapes records; batches of 12 leave 8, trimmed to 6; batches of 9 leave 2,
trimmed to 0 (no smaller batch). The 6-image batch is split over the 3
devices as the train step receives it (the step itself, compiled once more
for that shape, is exercised on one device by `epoch_end_test`; that a split
step equals the one-device step is `sharding_test`'s check).
"""

import dataclasses
import json

import jax

jax.config.update("jax_threefry_partitionable", False)

from leae_jax import data
from leae_jax import train

import helpers

data._REGISTRY["shapes"] = dataclasses.replace(  # pylint: disable=protected-access
    data.dataset_info("shapes"), num_train=20)


def _config(batch_size: int):
  return train.resolve(helpers.tiny_config(
      batch_size=batch_size, eval_batch_size=batch_size, num_train_steps=-1, num_epochs=2))


def main():
  out = {"devices": jax.device_count()}
  partial = None
  for name, batch_size in (("trimmed", 12), ("skipped", 9)):
    config = _config(batch_size)
    trainer = train.Trainer(config)
    assert trainer.data_shards == 3
    loader = trainer.train_loader(0)
    iterator = iter(loader)
    batches = [next(iterator)["image"] for _ in range(4)]
    iterator.close()
    out[name] = {"num_train_steps": int(config.num_train_steps),
                 "sizes": [len(b) for b in batches],
                 "last_batch_size": loader.schedule.last_batch_size}
    if name == "trimmed":
      partial = (trainer, batches[1])
  trainer, images = partial
  # The smaller batch as the train step receives it: 6 images, 2 on each device.
  x = trainer.global_batch(images)
  out.update(global_shape=list(x.shape),
             shard_rows=sorted({s.data.shape[0] for s in x.addressable_shards}))
  print(json.dumps(out), flush=True)


if __name__ == "__main__":
  main()
