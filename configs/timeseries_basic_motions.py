"""UEA BasicMotions (real, labelled, 6 channels): the self-teaching objective on recorded motion.

40 training and 40 test recordings of a smart watch's 3-axis accelerometer
and gyroscope (10 s at 10 Hz) while standing, walking, running or playing
badminton, from the UEA multivariate archive as `sktime` ships it (installed
with `pip install -e ".[timeseries]"`, read from its files; nothing is
downloaded). The 100 steps are centre-cropped to 96, each channel normalised
with the training split's statistics (`data.series`). The 1-D residual
autoencoder (hidden 32, 12×8 code: 6× compression, 47 590 params),
step-frozen judge on crop-resize 0.1–0.5, SIGReg 0.03, AdamW at a constant 1e-3, batch 20 (two
steps an epoch), 1000 steps (about a minute on a 2-core CPU).

`python -m leae_jax.main --config=configs/timeseries_basic_motions.py --workdir=/tmp/leae/basic_motions`
Variants: as `configs/timeseries.py`.
"""

from leae_jax import base_config


def get_config(arg=None):
  c = base_config.get_base_config("sequence")
  c.dataset = "uea_basic_motions"
  c.model.hidden = 32
  c.model.latent_channels = 8
  c.learning_rate = 1e-3
  c.batch_size = 20
  c.num_train_steps = 1000
  c.log_every_steps = 50
  c.eval_every_steps = 500
  c.checkpoint_every_steps = 500
  c.eval_batch_size = 40
  c.num_grid_images = 4
  return base_config.apply_variants(c, arg, extra=base_config.SEQUENCE_VARIANTS)
