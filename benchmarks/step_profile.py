"""Per-part timings of the train step: where does a CIFAR step spend its time?

  python benchmarks/step_profile.py --config=configs/cifar.py [--trace_dir=/tmp/trace]

Times, each jitted on its own and run back to back (median of `--repeats`
blocks of `--iters` calls): the encoder forward and forward+backward, the
decoder forward and forward+backward, the crop-resize view pair with its
backward, the judge on the two views, SIGReg with its gradient, and the whole
train step. Prints one JSON line (milliseconds). `--trace_dir` also writes a
`jax.profiler` trace of a few full steps (open with TensorBoard or Perfetto).
"""

import functools
import json
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import config_flags

from leae_jax import models
from leae_jax import sigreg as sigreg_lib
from leae_jax import train
from leae_jax import views

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
flags.DEFINE_integer("iters", 5, "Calls per timed block.")
flags.DEFINE_integer("repeats", 5, "Timed blocks (the median is reported).")
flags.DEFINE_string("trace_dir", None, "Write a jax.profiler trace of 3 train steps here.")
flags.mark_flags_as_required(["config"])


def timed(fn, *args) -> float:
  """Median milliseconds per call of a jitted `fn(*args)`."""
  jax.block_until_ready(fn(*args))  # compile
  blocks = []
  for _ in range(FLAGS.repeats):
    t0 = time.perf_counter()
    for _ in range(FLAGS.iters):
      out = fn(*args)
    jax.block_until_ready(out)
    blocks.append((time.perf_counter() - t0) / FLAGS.iters * 1e3)
  return round(float(np.median(blocks)), 2)


def main(argv):
  del argv
  config = train.resolve(FLAGS.config)
  trainer = train.Trainer(config)
  model = trainer.model
  state = trainer.init_state()
  rng = np.random.default_rng(0)
  shape = (config.batch_size, config.image_size, config.image_size, config.image_channels)
  images = trainer.global_batch(rng.uniform(size=shape).astype(np.float32))
  key = jax.random.key(0)
  enc, dec, stats = state.params["encoder"], state.params["decoder"], state.batch_stats

  def encode(p, x):
    return models.encode(model, p, stats, x, train=True)[0]

  def decode(p, z):
    return models.decode(model, p, z)

  codes = jax.jit(encode)(enc, images)
  recon = jax.jit(decode)(dec, codes)
  crop = views.get_view("crop_resize", crop_ratio=(0.1, 0.5))

  def loss_of(f):
    return lambda *a: jnp.sum(f(*a) ** 2)

  results = {
      "encoder_fwd": timed(jax.jit(encode), enc, images),
      "encoder_fwd_bwd_params": timed(jax.jit(jax.grad(loss_of(encode))), enc, images),
      "judge_fwd_bwd_input": timed(jax.jit(jax.grad(loss_of(encode), argnums=1)), enc, recon),
      "decoder_fwd": timed(jax.jit(decode), dec, codes),
      "decoder_fwd_bwd": timed(jax.jit(jax.grad(loss_of(decode), argnums=(0, 1))), dec, codes),
      "crop_resize_pair_fwd_bwd": timed(
          jax.jit(jax.grad(lambda r: jnp.sum(crop.pair(key, images, r)[1] ** 2))), recon),
      "sigreg_fwd_bwd": timed(jax.jit(jax.grad(
          lambda z: sigreg_lib.sigreg(z, key, num_slices=config.objective.sigreg_slices))), codes),
  }
  step = jax.jit(functools.partial(
      train.train_step, objective=trainer.objective, optimizer=trainer.optimizer,
      schedule=trainer.schedule))
  results["train_step"] = timed(step, state, images)
  results["images_per_s"] = round(config.batch_size / results["train_step"] * 1e3, 1)
  if FLAGS.trace_dir:
    with jax.profiler.trace(FLAGS.trace_dir):
      for _ in range(3):
        state, m = step(state, images)
      jax.block_until_ready(m)
  print(json.dumps(results), flush=True)


if __name__ == "__main__":
  app.run(main)
