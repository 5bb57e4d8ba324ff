"""Prepared records: the same pixels as the dataset's own pipeline, uint8 to the device."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from leae_jax import data
from leae_jax import train
from leae_jax.models import layers
from leae_jax.data import prepared

import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def fmnist(tmp_path_factory):
  """Small IDX splits, their prepared copy, and the source options reading the IDX files."""
  root = tmp_path_factory.mktemp("prepared")
  (root / "tfds").mkdir()  # an empty TFDS dir: fashion_mnist falls back to the IDX files
  options = dict(idx_dir=helpers.idx_splits(root / "idx", train=40, test=20),
                 data_dir=str(root / "tfds"))
  out = root / "fmnist32"
  # Two shards, so reads cross a shard boundary.
  manifest = prepared.prepare("fashion_mnist", out, num_shards=2, **options)
  return options, str(out), manifest


def test_prepared_records_are_the_fitted_uint8_images(fmnist):
  options, out, manifest = fmnist
  assert manifest["splits"]["train"]["num_records"] == 40
  assert len(manifest["splits"]["train"]["files"]) == 2
  original = data.get_source("fashion_mnist", "train", **options)
  copy = data.get_source("fashion_mnist", "train", prepared_dir=out)
  assert len(copy) == 40 and copy.fitted
  for i in (0, 19, 20, 39):  # both shards
    want = np.pad(original[i]["image"], ((2, 2), (2, 2), (0, 0)))  # 28 → 32, centred
    got = copy[i]
    assert got["image"].dtype == np.uint8 and got["image"].shape == (32, 32, 1)
    np.testing.assert_array_equal(got["image"], want)
    assert got["label"] == original[i]["label"] and got["label"].dtype == np.int32


def test_uint8_batches_scale_on_device_to_the_same_floats(fmnist):
  options, out, _ = fmnist
  kw = dict(batch_size=16, seed=3, stop_step=4, shard_index=0, shard_count=1)
  want = list(data.create_train_loader("fashion_mnist", **kw, **options))
  got = list(data.create_train_loader("fashion_mnist", **kw, uint8_images=True, prepared_dir=out))
  assert len(got) == len(want) == 4
  for g, w in zip(got, want):
    assert g["image"].dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(layers.unit_range(g["image"])), w["image"])
    np.testing.assert_array_equal(g["label"], w["label"])
  # Evaluation reads float batches from the prepared copy too.
  want = list(data.create_eval_loader("fashion_mnist", "test", batch_size=8, **options))
  got = list(data.create_eval_loader("fashion_mnist", "test", batch_size=8, prepared_dir=out))
  for g, w in zip(got, want):
    np.testing.assert_array_equal(g["image"], w["image"])


def test_training_on_prepared_records_is_training_on_the_dataset(fmnist, tmp_path):
  options, out, _ = fmnist
  config = helpers.tiny_config(dataset="fashion_mnist", num_train_steps=3, image_size=32, **options)
  runs = {}
  for name, overrides in (("source", {}), ("prepared", {"prepared_dir": out})):
    c = config.copy_and_resolve_references()
    c.update_from_flattened_dict(overrides)
    trainer = train.Trainer(train.resolve(c))
    assert trainer.uint8_images == (name == "prepared")
    state = trainer.init_state()
    for batch in trainer.train_loader():
      state, _ = trainer.train_step(state, trainer.global_batch(batch["image"]))
      if int(state.step) == 3:
        break
    runs[name] = jax.device_get(state.params)
  helpers.assert_trees_close(runs["prepared"], runs["source"], rtol=0, atol_frac=0)


def test_celeba_prepared_is_the_centre_window(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
    out = tmp_path / "celeba128"
    prepared.prepare("celeb_a", out, splits=("test",))
    want = list(data.create_eval_loader("celeb_a", "test", batch_size=6))
  got = list(data.create_eval_loader("celeb_a", "test", batch_size=6, prepared_dir=str(out)))
  assert got[0]["image"].shape == (6, 128, 128, 3)
  for g, w in zip(got, want):
    np.testing.assert_array_equal(g["image"], w["image"])
    np.testing.assert_array_equal(g["label"], -1)


def test_unprepared_mismatched_or_corrupt_directories_are_refused(fmnist, tmp_path):
  options, out, _ = fmnist
  with pytest.raises(data.PreparedDataError, match="holds no prepared.json"):
    data.get_source("fashion_mnist", "train", prepared_dir=str(tmp_path))
  with pytest.raises(data.PreparedDataError, match="holds fashion_mnist at 32px, but the config "
                     "trains fashion_mnist at 64px"):
    data.get_source("fashion_mnist", "train", prepared_dir=out, image_size=64)
  with pytest.raises(data.PreparedDataError, match="holds fashion_mnist at 32px, but the config "
                     "trains cifar10"):
    data.get_source("cifar10", "train", prepared_dir=out)
  # An interrupted preparation of a split leaves it unlisted, and so unreadable.
  only_test = tmp_path / "only_test"
  prepared.prepare("fashion_mnist", only_test, splits=("test",), **options)
  with pytest.raises(data.PreparedDataError, match="has no 'train' split"):
    data.get_source("fashion_mnist", "train", prepared_dir=str(only_test))
  # Preparing another split keeps the first.
  prepared.prepare("fashion_mnist", only_test, splits=("train",), **options)
  assert set(prepared.read_manifest(only_test)["splits"]) == {"train", "test"}
  manifest_path = only_test / prepared.MANIFEST
  manifest = json.loads(manifest_path.read_text())
  manifest["splits"]["train"]["num_records"] = 41
  manifest_path.write_text(json.dumps(manifest))
  with pytest.raises(data.PreparedDataError, match="hold 40 records, the manifest says 41"):
    data.get_source("fashion_mnist", "train", prepared_dir=str(only_test))
  manifest["format"] = "something else"
  manifest_path.write_text(json.dumps(manifest))
  with pytest.raises(data.PreparedDataError, match="format 'something else'"):
    data.get_source("fashion_mnist", "train", prepared_dir=str(only_test))
  with pytest.raises(data.PreparedDataError, match="dataset 'shapes' gives float32 images"):
    prepared.prepare("shapes", tmp_path / "shapes", splits=("test",), num_records=4)


def test_prepare_command_then_train_on_it(fmnist, tmp_path):
  options, _, _ = fmnist
  out, workdir = tmp_path / "out", tmp_path / "run"
  fields = [f"--config.idx_dir={options['idx_dir']}", f"--config.data_dir={options['data_dir']}"]
  proc = subprocess.run(
      [sys.executable, "-m", "leae_jax.prepare", "--config=configs/fashion_mnist.py", f"--out={out}",
       *fields], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.splitlines()
  assert lines[0].startswith("fashion_mnist train: 40 records at 32px in 1 shard(s)"), lines
  assert lines[-1].endswith(f"train with --config.prepared_dir={out}"), lines
  assert proc.stderr == ""
  proc = subprocess.run(
      [sys.executable, "-m", "leae_jax.main", "--config=configs/fashion_mnist.py",
       f"--workdir={workdir}", f"--config.prepared_dir={out}", "--config.num_train_steps=2",
       "--config.model.hidden=8", "--config.model.latent_channels=4", "--config.batch_size=8",
       "--config.eval_batch_size=10", "--config.objective.sigreg_slices=8"],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  saved = json.loads((workdir / "config.json").read_text())
  assert saved["prepared_dir"] == str(out)


def test_bench_measures_prepared_records_and_a_uint8_step(fmnist):
  from leae_jax import bench

  options, out, _ = fmnist
  config = helpers.tiny_config(dataset="fashion_mnist", image_size=32, prepared_dir=out, **options)
  result = bench.run(config, steps=1, input_batches=2)
  assert result["input_source"] == "prepared" and result["input_images_per_s"] > 0
  assert result["loss_finite"] and result["bound"] in ("input", "compute")
  only_input = bench.run(config, input_batches=2, measure_step=False)
  assert "step_ms" not in only_input and only_input["bound"] is None
