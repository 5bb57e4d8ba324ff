"""Toy grayscale shapes: the published toy run (reference commit 5149a49), the offline default.

12 000 procedurally generated 28×28 images of one filled circle, ring or
square (radius 3–8, intensity 0.3–1.0) on black, as published, at the
published side 28; 10 000 train / 2 000 test. The reference's first
architecture (`model.arch='first'`: transposed-convolution decoder, batch norm
over each element of the flattened 4×4×16 code, the 32-px decoder output
resized bilinearly to 28; hidden 32, 0.164 M params). The toy's objective as
published: pixel mask 0.7 judged by the live encoder (gradient through both
sides), SIGReg 0.1 on the judge's codes of both masked images, each code
flattened to one 256-vector; Adam (no weight decay) at a constant 1e-3, batch
64, 10 epochs; every encode (image, masked image, masked reconstruction) moves
the running statistics, as the toy's did (`docs/fidelity.md`).

`python -m leae_jax.main --config=configs/shapes.py --workdir=/tmp/shapes`
Variants: any of base_config.VARIANTS, e.g. `configs/shapes.py:mse`, and
`residual_arch`: the later architecture of every other published run on the
canvas zero-padded to 32×32 (what this config trained before), SIGReg per code
position as in those runs (0.145 M params).
"""

from leae_jax import base_config


def _residual_arch(c):
  c.model.arch = "residual"
  c.image_size = 32  # the later architecture needs a side divisible by 8
  c.objective.sigreg_flatten = False


def get_config(arg=None):
  c = base_config.get_base_config()
  c.image_size = 28
  c.model.arch = "first"
  c.model.hidden = 32
  c.model.latent_channels = 16
  c.objective.views = "pixel_mask"
  c.objective.view_args.crop_resize.crop_ratio = (0.3, 0.3)  # fixed r = 0.3 (pixel_mask: 0.7, its default)
  c.objective.judge = "live"
  c.objective.sigreg_on = "views"
  c.objective.sigreg_flatten = True  # sigreg(z.flatten(1)) on the 256-vectors
  c.objective.judge_updates_norm = True  # all three encodes ran in training mode
  c.objective.sigreg_weight = 0.1
  c.learning_rate = 1e-3
  c.weight_decay = 0.0  # plain Adam
  c.batch_size = 64
  c.num_epochs = 10
  c.log_every_steps = 50
  c.eval_every_steps = 520
  c.eval_batch_size = 500
  return base_config.apply_variants(c, arg, extra={"residual_arch": _residual_arch})
