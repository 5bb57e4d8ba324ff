"""Toy grayscale shapes: the published toy recipe, the offline default.

12 000 procedurally generated 28×28 images of one filled circle, ring or
square (radius 3–8, intensity 0.3–1.0) on black, as published, padded to 32×32
for the model; 10 000 train / 2 000 test. The toy's objective as published:
pixel mask 0.7 judged by the live encoder (gradient through both sides), SIGReg
0.1 on the judge's codes of both masked images, Adam (no weight decay) at a
constant 1e-3, batch 64, 10 epochs; every encode (image, masked image, masked
reconstruction) moves the running statistics, as the toy's did. The toy run used the reference's first
architecture (transposed-convolution decoder, per-element code norm); we train
the published later one, which every other run uses (`docs/fidelity.md`).

`python -m leae_jax.main --config=configs/shapes.py --workdir=/tmp/shapes`
Variants: any of base_config.VARIANTS, e.g. `configs/shapes.py:mse`.
"""

from leae_jax import base_config


def get_config(arg=None):
  c = base_config.get_base_config()
  c.dataset = "shapes"
  c.model.hidden = 32
  c.model.latent_channels = 16
  c.objective.views = "pixel_mask"
  c.objective.view_args = {"pixel_mask": {"ratio": 0.7}, "crop_resize": {"crop_ratio": 0.3}}
  c.objective.judge = "live"
  c.objective.sigreg_on = "views"
  c.objective.judge_updates_norm = True  # all three encodes ran in training mode
  c.objective.sigreg_weight = 0.1
  c.learning_rate = 1e-3
  c.weight_decay = 0.0  # plain Adam
  c.batch_size = 64
  c.num_epochs = 10
  c.log_every_steps = 50
  c.eval_every_steps = 520
  c.eval_batch_size = 500
  return base_config.apply_variants(c, arg)
