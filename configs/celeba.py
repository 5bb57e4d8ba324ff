"""CelebA ordinary autoencoding at 6×: step-frozen crop-resize, the blog's recommended recipe.

CelebA's aligned 178×218 faces, centre-cropped to 128×128 without resizing (as
published); the 2.13 M model (hidden 128, 16×16×32 code); crop ratio 0.15
(19 px crops); AdamW at a constant 1e-4 (1e-3 was unstable for the large conv
models), batch 128, 50 epochs, SIGReg 0.03. The run script of the published 6×
run was never committed: this is the reference README's recommendation
("autoencoder with step frozen judge latents from crop resized images");
`--config.objective.plain_weight=1` adds the plain term of its closest
committed run (a crop + plain 1:1 agreement).
"""

from leae_jax import base_config


def get_config(arg=None):
  c = base_config.get_base_config()
  c.dataset = "celeb_a"
  c.image_size = 128
  c.model.hidden = 128
  c.objective.view_args.crop_resize.crop_ratio = (0.15, 0.15)  # fixed r = 0.15
  c.num_workers = 8
  c.eval_every_steps = 5000
  c.eval_batches = 40
  return base_config.apply_variants(c, arg)
