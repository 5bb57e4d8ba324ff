"""CIFAR-10, the headline recipe: step-frozen judge, crop-resize, SIGReg 0.03, 0.58 M params.

Variants for the ablation ladder (combine with commas): pixel_mask, patch_mask,
channel_mask, detail_stack, live, ema, plain (no transformation: the
private-language loophole), mse (pixel baseline).
"""

from leae_jax import base_config


def get_config(arg=None):
  c = base_config.get_base_config()
  c.dataset = "cifar10"
  c.model.hidden = 64
  c.model.latent_channels = 32  # 4×4×32 code: 6× compression
  c.objective.views = "crop_resize"
  c.objective.view_args = {"crop_resize": {"crop_ratio": (0.1, 0.5)}, "pixel_mask": {"ratio": 0.7},
                           "patch_mask": {"ratio": 0.7, "patch_size": 4},
                           "channel_mask": {"ratio": 0.7}}
  c.objective.judge = "step_frozen"
  c.objective.sigreg_weight = 0.03
  c.learning_rate = 1e-3
  c.batch_size = 128
  c.num_epochs = 50
  c.warmup_steps = 500
  c.num_workers = 2
  c.log_every_steps = 100
  c.eval_every_steps = 2000
  c.eval_batch_size = 500
  return base_config.apply_variants(c, arg)
