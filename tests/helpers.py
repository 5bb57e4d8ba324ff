"""Shared test helpers: tiny configs and small Fashion-MNIST IDX files."""

import gzip
import os

import ml_collections
import numpy as np

from leae_jax import base_config


def tiny_config(**overrides) -> ml_collections.ConfigDict:
  """A fast shapes config (tiny model, few steps); `overrides` use dotted keys."""
  c = base_config.get_base_config()
  c.dataset = "shapes"
  c.model.hidden = 8
  c.model.latent_channels = 4
  c.objective.sigreg_slices = 16
  c.batch_size = 8
  c.eval_batch_size = 16
  c.eval_batches = 1
  c.num_train_steps = 10
  c.learning_rate = 1e-3
  c.warmup_steps = 1
  c.log_every_steps = 5
  c.eval_every_steps = 0
  c.checkpoint_every_steps = 1000
  c.progress_bar = False
  c.update_from_flattened_dict(overrides)
  return c


def write_idx(directory, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
  """Writes `<prefix>-images-idx3-ubyte.gz` / `<prefix>-labels-idx1-ubyte.gz` (28×28 uint8)."""
  with gzip.open(os.path.join(directory, f"{prefix}-images-idx3-ubyte.gz"), "wb") as f:
    f.write(np.array([0x803, len(images), 28, 28], ">i4").tobytes() + images.astype(np.uint8).tobytes())
  with gzip.open(os.path.join(directory, f"{prefix}-labels-idx1-ubyte.gz"), "wb") as f:
    f.write(np.array([0x801, len(labels)], ">i4").tobytes() + labels.astype(np.uint8).tobytes())
