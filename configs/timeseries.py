"""Procedural multichannel series (offline): the self-teaching objective on time series.

Not a published run: the open question of the write-up, whether latent
agreement alone can keep dense numeric detail. `synthetic_series` (3
channels, 128 steps: sines, chirps, steps or spikes on a slow wave, with
noise; normalised per channel), the 1-D residual autoencoder (hidden 32,
16×4 code: 6× compression, 44 963 params), step-frozen judge, SIGReg 0.03 on
the code, AdamW at a constant 1e-3, batch 64, 1500 steps (a few minutes on a
2-core CPU). The view, crop-resize of windows of 0.1–0.5 of the series (the
sequence `crop_resize`'s default), was the best of the exploration in
docs/results_timeseries.md.

`python -m leae_jax.main --config=configs/timeseries.py --workdir=/tmp/leae/timeseries`
Variants: the judges, `mse` (the pixel-loss baseline, here a sample-wise MSE),
`plain`, `crop_resize`, `patch_mask`, `channel_mask`, `masked`, `masked_mse`
(base_config.VARIANTS) and the sequence views `time_mask`,
`amplitude_offset`, `random_band`, `filter_stack` (base_config.SEQUENCE_VARIANTS).
"""

from leae_jax import base_config


def get_config(arg=None):
  c = base_config.get_base_config("sequence")
  c.dataset = "synthetic_series"
  c.model.hidden = 32
  c.model.latent_channels = 4
  c.learning_rate = 1e-3
  c.batch_size = 64
  c.num_train_steps = 1500
  c.log_every_steps = 50
  c.eval_every_steps = 500
  c.checkpoint_every_steps = 500
  c.eval_batch_size = 500
  c.num_grid_images = 4
  return base_config.apply_variants(c, arg, extra=base_config.SEQUENCE_VARIANTS)
