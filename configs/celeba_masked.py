"""CelebA 128×128 masked autoencoding with a globally pooled latent: the published symmetric runs.

`configs/celeba_masked.py` (latent 128: 11.15 M params, 384× compression) or
`:latent=512` (36.32 M, 96×); add the `masked_mse` variant for the published
masked-MSE baseline (`:latent=512,masked_mse`: trained with a 50 % hole,
evaluated at 35 %, no SIGReg). Symmetric clean/masked
objective with a step-frozen judge, one square hole of 35 % of the area, a
shared 0.15 crop, SIGReg 0.03 split over the clean and masked codes; AdamW at a
constant 1e-3, batch 128, 50 epochs.
"""

from leae_jax import base_config


def get_config(arg=None):
  named, variants = base_config.parse_arg(arg, latent=128)
  c = base_config.get_base_config()
  c.dataset = "celeb_a"
  c.image_size = 128
  c.model.hidden = 128
  c.model.latent = "pooled"  # pool: mlp, pool_channels: 128 (the base's)
  c.model.latent_channels = named["latent"]
  c.objective.name = "masked_self_teaching"
  c.objective.view_args.crop_resize.crop_ratio = (0.15, 0.15)  # fixed r = 0.15
  c.learning_rate = 1e-3
  c.num_workers = 8
  c.eval_every_steps = 5000
  c.eval_batches = 40
  return base_config.apply_variants(c, variants)
