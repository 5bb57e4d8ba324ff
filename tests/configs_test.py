"""Every published config builds, initialises and trains two steps offline; every variant lowers.

CIFAR-10 and CelebA are download-only, so they run on `tfds.testing.mock_data`
with a tiny model width; the reference shapes and widths are checked too.
"""

import ast
import os

import numpy as np
import pytest

from leae_jax import base_config
from leae_jax import models
from leae_jax import outputs
from leae_jax import train

import helpers

CIFAR_VARIANTS = ["", "pixel_mask", "patch_mask", "channel_mask", "detail_stack", "live", "ema",
                  "plain", "mse", "plain,live"]


def _shrink(config, image_size=None):
  config.model.hidden = 4
  config.model.latent_channels = 4
  config.model.pool_channels = 4
  config.batch_size = 4
  config.eval_batch_size = 4
  config.eval_batches = 1
  config.num_train_steps = 2
  config.log_every_steps = 1
  config.eval_every_steps = 2
  config.num_workers = 0
  config.num_grid_images = 2
  config.progress_bar = False
  config.objective.sigreg_slices = 8
  if image_size:
    config.image_size = image_size
  return config


@pytest.mark.parametrize("name,arg,params", [
    ("shapes", None, 163_969),  # the first architecture at 28 px (tests/first_arch_test.py)
    ("shapes", "residual_arch", 144_929),
    ("cifar", None, 580_291),
    ("celeba", None, 2_126_083),
    ("celeba_masked", None, 11_153_155),
    ("celeba_masked", "latent=512", 36_320_131),
    ("celeba_masked", "latent=512,masked_mse", 36_320_131),
])
def test_published_configs_build_the_reference_models(name, arg, params):
  config = train.resolve(helpers.load_config(name, arg))
  for field in ("dataset", "batch_size", "num_train_steps", "learning_rate", "seed", "objective",
                "model", "log_every_steps", "eval_every_steps", "checkpoint_every_steps"):
    assert field in config, field
  model = models.create_model(config.model, image_size=config.image_size,
                              image_channels=config.image_channels)
  import jax
  shapes = jax.eval_shape(lambda: models.init_variables(model, jax.random.key(0)))
  assert models.count_params(shapes["params"]) == params


def test_variants_change_what_they_say():
  assert helpers.load_config("cifar", "plain,live").objective.judge == "live"
  assert helpers.load_config("cifar", "plain").objective.views == ""
  assert helpers.load_config("cifar", "mse").objective.name == "mse"
  assert helpers.load_config("cifar", "mse").objective.sigreg_weight == 0.0  # a plain autoencoder
  assert helpers.load_config("celeba_masked", "masked_mse").objective.sigreg_weight == 0.0
  assert helpers.load_config("celeba_masked", "latent=512,masked_mse").objective.name == "masked_mse"
  assert helpers.load_config("celeba_masked", "latent=512").model.latent_channels == 512
  with pytest.raises(ValueError, match="valid variants: .*pixel_mask"):
    helpers.load_config("cifar", "rotation")
  # Named arguments are named: a bare number says how to write it.
  with pytest.raises(ValueError, match="name it, e.g. latent=512; valid names: latent"):
    helpers.load_config("celeba_masked", "512")
  with pytest.raises(ValueError, match="Unknown config argument 'width'; valid: latent"):
    helpers.load_config("celeba_masked", "width=3")


def test_cifar_config_trains_two_steps_on_mock_data(tmp_path):
  import tensorflow_datasets as tfds
  config = _shrink(helpers.load_config("cifar"))
  with tfds.testing.mock_data(num_examples=8):
    result = train.train_and_evaluate(config, str(tmp_path))
  assert result["step"] == 2
  records = [r for r in outputs.read_metrics(str(tmp_path)) if "train/loss" in r]
  assert [r["step"] for r in records] == [1, 2] and all(np.isfinite(r["train/loss"]) for r in records)
  assert np.isfinite(result["loss"]) and os.path.exists(tmp_path / "eval_grid_00000002.png")


@pytest.mark.parametrize("variant", [v for v in CIFAR_VARIANTS if v])
def test_cifar_variants_resolve_and_their_train_step_lowers(variant):
  # Each variant through everything the CLI does before compiling: resolve, the
  # trainer (model, objective, optimiser, mesh, shardings), and the train step
  # traced and lowered at the CIFAR batch shape. What each variant computes is
  # pinned elsewhere (objectives_test, train_test, fidelity_test); compiling
  # and running ten near-identical tiny steps here would only cost minutes.
  import jax
  config = train.resolve(_shrink(helpers.load_config("cifar", variant)))
  trainer = train.Trainer(config)
  state = jax.eval_shape(trainer.init_state)
  batch = jax.ShapeDtypeStruct((config.batch_size, 32, 32, 3), np.float32,
                               sharding=trainer.data_sharding)
  lowered = trainer.train_step.lower(state, batch)
  _, metrics = lowered.out_info
  assert {"loss", "sigreg", "grad_norm"} <= set(metrics)
  assert all(m.shape == () for m in jax.tree_util.tree_leaves(metrics))


@pytest.mark.parametrize("name,arg", [("celeba", None), ("celeba_masked", None), ("celeba_masked", "latent=512,masked_mse")])
def test_celeba_configs_train_two_steps_on_mock_data(name, arg, tmp_path):
  import tensorflow_datasets as tfds
  config = _shrink(helpers.load_config(name, arg), image_size=32)
  with tfds.testing.mock_data(num_examples=8):
    result = train.train_and_evaluate(config, str(tmp_path))
  assert result["step"] == 2 and np.isfinite(result["loss"])
  if config.objective.name.startswith("masked"):
    assert np.isfinite(result["hole_psnr"])


@pytest.mark.parametrize("name", base_config.config_names())
def test_configs_state_only_what_differs_from_the_base(name):
  # Every literal assignment in get_config changes a base default: a config
  # that restates one hides which settings are the experiment's own.
  tree = ast.parse(open(os.path.join(base_config.CONFIG_DIR, f"{name}.py")).read())
  get_config = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "get_config")
  base = base_config.get_base_config()
  checked = 0
  for node in ast.walk(get_config):
    if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
      continue
    path, target = [], node.targets[0]
    while isinstance(target, ast.Attribute):
      path.insert(0, target.attr)
      target = target.value
    if not (isinstance(target, ast.Name) and target.id == "c" and path):
      continue
    try:
      value = ast.literal_eval(node.value)
    except ValueError:  # computed from an argument
      continue
    default = base
    for key in path:
      default = default[key]
    assert value != default, f"configs/{name}.py:{node.lineno} restates {'.'.join(path)}={value!r}"
    checked += 1
  assert checked
