"""Fashion-MNIST (real data, offline-capable), padded to 32×32: step-frozen crop-resize.

Not a published run: the CIFAR recipe (step-frozen judge, crop ratio 0.3,
SIGReg 0.03, AdamW at a constant rate, PyTorch init) on grayscale clothing with
the toy-sized model (hidden 32, 4×4×16 code), at the toy's learning rate 1e-3.
Reads TFDS when prepared, otherwise the original IDX files of Debian's
`dataset-fashion-mnist`.
Variants: any of base_config.VARIANTS, e.g. `configs/fashion_mnist.py:mse`.
"""

from leae_jax import base_config


def get_config(arg=None):
  c = base_config.get_base_config()
  c.dataset = "fashion_mnist"
  c.model.hidden = 32
  c.model.latent_channels = 16
  c.objective.view_args.crop_resize.crop_ratio = (0.3, 0.3)  # fixed r = 0.3
  c.learning_rate = 1e-3
  c.num_epochs = 10
  c.log_every_steps = 50
  c.eval_every_steps = 500
  c.eval_batch_size = 500
  return base_config.apply_variants(c, arg)
