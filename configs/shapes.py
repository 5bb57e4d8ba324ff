"""Toy grayscale shapes (DESIGN.md §3): pixel-mask self-teaching, the offline default.

10 000 procedurally generated 32×32 images of filled circles, rings and squares.
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
  c.objective.view_args = {"pixel_mask": {"ratio": 0.7}, "crop_resize": {"crop_ratio": (0.1, 0.5)}}
  c.objective.sigreg_weight = 0.1
  c.learning_rate = 1e-3
  c.batch_size = 128
  # 5 epochs (390 steps) keep the default run under 5 minutes on a 2-core CPU;
  # the published toy ran 10 (`--config.num_epochs=10`, +0.3 dB here).
  c.num_epochs = 5
  c.warmup_steps = 50
  c.log_every_steps = 25
  c.eval_every_steps = 130
  c.eval_batch_size = 500
  return base_config.apply_variants(c, arg)
