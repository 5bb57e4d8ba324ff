"""Pretrained model folders (`leae_jax.pretrained`): save a run, load it bit for bit, refuse bad folders."""

import json
import os

import numpy as np
import pytest

import helpers
from leae_jax import cli
from leae_jax import data
from leae_jax import evaluate
from leae_jax import models
from leae_jax import pretrained
from leae_jax import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A 4-step shapes run (tiny model) and its saved folder."""
  root = tmp_path_factory.mktemp("pretrained")
  workdir = str(root / "run")
  config = helpers.tiny_config(num_train_steps=4, checkpoint_every_steps=2)
  train.train_and_evaluate(config, workdir)
  folder = pretrained.save(workdir, str(root / "model"), metrics={"psnr": 12.5},
                           metrics_command="python -m leae_jax.evaluate --workdir=run",
                           train_command="python -m leae_jax.main ...", data="toy shapes")
  return workdir, folder


def test_a_loaded_model_computes_what_the_saved_run_computes(run):
  workdir, folder = run
  config = evaluate.load_config(workdir)
  trainer = train.Trainer(config)
  state = evaluate.restore_state(workdir, config, trainer)
  images = np.random.default_rng(0).uniform(size=(5, *trainer.model.input_shape)).astype(np.float32)
  codes, _ = models.encode(trainer.model, state.params["encoder"], state.batch_stats, images,
                           train=False)
  recon = models.decode(trainer.model, state.params["decoder"], codes)
  loaded = pretrained.load(folder)
  np.testing.assert_array_equal(np.asarray(loaded.encode(images)), np.asarray(codes))
  np.testing.assert_array_equal(np.asarray(loaded.reconstruct(images)), np.asarray(recon))
  # uint8 images are scaled as training scales them (x · float32(1/255), `models.unit_range`).
  as_uint8 = (images * 255).round().astype(np.uint8)
  scaled = as_uint8.astype(np.float32) * np.float32(1.0 / 255.0)
  np.testing.assert_array_equal(np.asarray(loaded.encode(as_uint8)),
                                np.asarray(loaded.encode(scaled)))
  assert loaded.config.dataset == "shapes" and loaded.info["step"] == 4
  assert loaded.info["num_params"] == models.count_params(state.params)


def test_the_folder_is_self_describing(run):
  _, folder = run
  assert sorted(os.listdir(folder)) == sorted(pretrained.FILES)
  info = json.load(open(os.path.join(folder, "model.json")))
  assert info["format"] == pretrained.FORMAT and info["objective"] == "self_teaching"
  assert info["metrics"] == {"psnr": 12.5} and info["seed"] == 0
  card = open(os.path.join(folder, "README.md")).read()
  assert "toy shapes" in card and "| psnr | 12.5 |" in card
  assert "python -m leae_jax.evaluate --workdir=run" in card and "4 steps" in card


def test_a_state_saves_as_a_workdir_does(run, tmp_path):
  workdir, folder = run
  config = evaluate.load_config(workdir)
  state = evaluate.restore_state(workdir, config, train.Trainer(config))
  config.prepared_dir = "/data/on/the/training/machine"
  again = pretrained.save((config, state), str(tmp_path / "again"))
  assert (open(os.path.join(again, "model.msgpack"), "rb").read()
          == open(os.path.join(folder, "model.msgpack"), "rb").read())
  # The training machine's data locations stay behind; the run's config is unchanged.
  saved = json.load(open(os.path.join(again, "config.json")))
  assert [saved[f] for f in pretrained.LOCATION_FIELDS] == [None, None, None]
  assert config.prepared_dir == "/data/on/the/training/machine"


def test_bad_folders_are_refused_with_one_line(run, tmp_path):
  _, folder = run
  with pytest.raises(ValueError, match="no such model folder, and not a shipped model's name"):
    pretrained.load(str(tmp_path / "nowhere"))
  copy = tmp_path / "copy"
  copy.mkdir()
  for name in pretrained.FILES:
    (copy / name).write_bytes(open(os.path.join(folder, name), "rb").read())
  # One flipped byte in the weights: the sha256 recorded in model.json differs.
  weights = bytearray((copy / "model.msgpack").read_bytes())
  weights[len(weights) // 2] ^= 0xFF
  (copy / "model.msgpack").write_bytes(bytes(weights))
  with pytest.raises(ValueError, match=r"model.msgpack: damaged weights .*sha256") as err:
    pretrained.load(str(copy))
  assert "\n" not in str(err.value)
  # A folder of another format version.
  info = json.load(open(os.path.join(folder, "model.json")))
  (copy / "model.json").write_text(json.dumps(dict(info, format="leae_jax.pretrained/99")))
  with pytest.raises(ValueError, match="this leae_jax reads 'leae_jax.pretrained/1'"):
    pretrained.load(str(copy))
  # Weights of another model (the config says a wider one).
  (copy / "model.json").write_text(json.dumps(info))
  (copy / "model.msgpack").write_bytes(open(os.path.join(folder, "model.msgpack"), "rb").read())
  config = json.load(open(os.path.join(folder, "config.json")))
  config["model"]["hidden"] = 16
  (copy / "config.json").write_text(json.dumps(config))
  with pytest.raises(ValueError, match="damaged weights of this shapes model"):
    pretrained.load(str(copy))
  os.remove(copy / "config.json")
  with pytest.raises(ValueError, match="config.json is missing"):
    pretrained.load(str(copy))


def test_examples_travel_with_the_model_and_are_checked(run, tmp_path):
  workdir, _ = run
  config = evaluate.load_config(workdir)
  state = evaluate.restore_state(workdir, config, train.Trainer(config))
  images, labels = data.load_arrays("shapes", "test", 6, image_size=config.image_size)
  images = (images * 255).round().astype(np.uint8)  # the toy shapes come as floats in [0, 1]
  folder = pretrained.save((config, state), str(tmp_path / "m"), examples=(images, labels))
  # A count reads the same first test images from the run's data.
  by_count = pretrained.load(pretrained.save((config, state), str(tmp_path / "n"), examples=6))
  np.testing.assert_array_equal(by_count.examples, images)
  np.testing.assert_array_equal(by_count.example_labels, labels)
  loaded = pretrained.load(folder)
  np.testing.assert_array_equal(loaded.examples, images)
  np.testing.assert_array_equal(loaded.example_labels, labels)
  assert loaded.info["examples"]["count"] == 6
  assert "`examples.msgpack` (6 test images" in open(os.path.join(folder, "README.md")).read()
  # Saved again without examples: the old file goes, it would describe another model.
  pretrained.save((config, state), folder)
  assert not os.path.exists(os.path.join(folder, pretrained.EXAMPLES))
  assert pretrained.load(folder).examples is None
  pretrained.save((config, state), folder, examples=(images, labels))
  stored = bytearray(open(os.path.join(folder, pretrained.EXAMPLES), "rb").read())
  stored[-3] ^= 0xFF
  open(os.path.join(folder, pretrained.EXAMPLES), "wb").write(bytes(stored))
  with pytest.raises(ValueError, match=r"examples.msgpack: damaged example images"):
    pretrained.load(folder)
  side = config.image_size
  with pytest.raises(ValueError, match=rf"uint8 images of shape \(N, {side}, {side}, 1\) expected"):
    pretrained.save((config, state), folder, examples=(images.astype(np.float32), labels))


def test_the_command_line_saves_a_workdir(run, tmp_path):
  """`python -m leae_jax.pretrained`: the newest step, the card's metrics from a JSON, examples."""
  workdir, _ = run
  measured = tmp_path / "eval.json"
  measured.write_text(json.dumps({"step": 4, "psnr": 11.25, "ssim": 0.5, "loss": 3.0}))
  out = tmp_path / "model"
  proc = helpers.run_module("leae_jax.pretrained", f"--workdir={workdir}", f"--out={out}",
                            f"--metrics={measured}", "--examples=3",
                            "--metrics_command=python -m leae_jax.evaluate --workdir=W")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"saved step 4 of {workdir} into {out} (2 metrics on its card)" in proc.stdout
  loaded = pretrained.load(str(out))
  assert loaded.info["metrics"] == {"psnr": 11.25, "ssim": 0.5}  # the card's metrics only
  side = loaded.config.image_size
  assert loaded.info["step"] == 4 and loaded.examples.shape == (3, side, side, 1)
  # Metrics of another step than the one saved are refused.
  measured.write_text(json.dumps({"step": 2, "psnr": 11.25}))
  proc = helpers.run_module("leae_jax.pretrained", f"--workdir={workdir}", f"--out={out}",
                            f"--metrics={measured}")
  assert proc.returncode == cli.EXIT_USAGE
  assert proc.stderr.strip() == (f"error: --metrics={measured}: measured step 2, but the saved "
                                 "checkpoint is step 4.")


LOCAL_DATA = {"cifar10": {"data_dir": helpers.CIFAR10_FOLDER}}


@pytest.mark.parametrize("name", pretrained.names())
def test_a_shipped_model_reconstructs_as_its_card_says(name):
  from leae_jax import metrics
  model = pretrained.load(name)  # the sha256 in model.json checks the weights
  assert model.info["metrics"]["psnr"] > 15
  # A shipped config names no data location; the development machines' copies are here.
  options = {**data.config_options(model.config), **LOCAL_DATA.get(model.config.dataset, {})}
  try:
    images, _ = data.load_arrays(model.config.dataset, "test", 500, to_float=True, **options)
  except data.DatasetUnavailableError:
    pytest.skip(f"no {model.config.dataset} on this machine")
  if model.examples is not None:  # the shipped examples are the first test images, as read here
    as_read, labels = data.load_arrays(model.config.dataset, "test", len(model.examples),
                                       **options)
    np.testing.assert_array_equal(model.examples, as_read)
    np.testing.assert_array_equal(model.example_labels, labels)
  psnr = float(np.mean(metrics.per_image_psnr(model.reconstruct(images), images)))
  # The card's PSNR is over the whole test split; 500 images agree within half a dB.
  assert abs(psnr - model.info["metrics"]["psnr"]) < 0.5, (psnr, model.info["metrics"])
