"""CelebA 128×128 (centre crop) ordinary autoencoding at 6×: 2.13 M params, crop_ratio 0.15, lr 1e-4."""

from leae_jax import base_config


def get_config(arg=None):
  c = base_config.get_base_config()
  c.dataset = "celeb_a"
  c.image_size = 128
  c.model.hidden = 128
  c.model.latent_channels = 32  # 16×16×32 code: 6× compression
  c.objective.views = "crop_resize"
  c.objective.view_args = {"crop_resize": {"crop_ratio": 0.15}}
  c.objective.judge = "step_frozen"
  c.objective.sigreg_weight = 0.03
  c.learning_rate = 1e-4  # 1e-3 was unstable for the large conv models
  c.batch_size = 128
  c.num_epochs = 50
  c.warmup_steps = 1000
  c.num_workers = 8
  c.log_every_steps = 100
  c.eval_every_steps = 5000
  c.eval_batch_size = 256
  c.eval_batches = 40
  return base_config.apply_variants(c, arg)
