"""The Fréchet feature net: training beats chance, save/load, damaged files, the command line."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from leae_jax import data
from leae_jax import frechet

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 32
OPTIONS = dict(num_records=256, image_size=SIZE)


@pytest.fixture(scope="module")
def trained():
  """40 steps of batch 32 on shapes; chance is 1/3.

  Seeds 0-3 reach 0.55-0.73 test accuracy under conftest's XLA settings (0.52-0.68 without).
  """
  return frechet.train("shapes", steps=40, batch_size=32, learning_rate=3e-3, seed=0,
                       log=lambda line: None, **OPTIONS)


def _images(n):
  batch = next(iter(data.create_eval_loader("shapes", "test", batch_size=n, **OPTIONS)))
  return jnp.asarray(batch["image"])


def test_param_count():
  params = frechet.init_params(jax.random.key(0), image_size=32, channels=3, num_classes=10)
  assert 100_000 <= frechet.param_count(params) <= 300_000


def test_training_beats_chance(trained):
  _, info = trained
  assert info["test_records"] == 256
  assert info["test_accuracy"] > 0.45, info
  assert (info["dataset"], info["image_size"], info["channels"], info["num_classes"],
          info["feature_dim"]) == ("shapes", SIZE, 1, 3, frechet.FEATURE_DIM)


def test_save_load_round_trip(trained, tmp_path):
  params, info = trained
  weights, described = frechet.save(params, {**info, "data": "shapes (procedural)",
                                             "command": "test"}, "shapes", str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == ["shapes.json", "shapes.msgpack"]
  record = json.loads(open(described).read())
  assert record["format"] == frechet.FORMAT and "not Inception" in record["note"]
  assert record["data"] == "shapes (procedural)" and record["steps"] == 40
  net = frechet.load("shapes", image_size=SIZE, channels=1, folder=str(tmp_path))
  assert net is not None and net.info["test_accuracy"] == info["test_accuracy"]
  images = _images(16)
  got = np.asarray(net.features(images))
  want = np.asarray(jax.jit(frechet.features_fn)(params, images))
  assert got.shape == (16, frechet.FEATURE_DIM) and got.dtype == np.float32
  np.testing.assert_array_equal(got, want)
  # Usable inside another jitted function.
  mean = jax.jit(lambda p, x: jnp.mean(frechet.features_fn(p, x), axis=0))(net.params, images)
  np.testing.assert_allclose(np.asarray(mean), want.mean(0), rtol=1e-5, atol=1e-6)
  assert os.path.exists(weights)


def test_load_none_without_net_or_on_mismatch(trained, tmp_path):
  params, info = trained
  assert frechet.load("cifar10", image_size=32, channels=3, folder=str(tmp_path)) is None
  assert frechet.load("shapes", image_size=32, channels=1,
                      folder=str(tmp_path / "does_not_exist")) is None
  frechet.save(params, info, "shapes", str(tmp_path))
  assert frechet.load("shapes", image_size=28, channels=1, folder=str(tmp_path)) is None
  assert frechet.load("shapes", image_size=SIZE, channels=3, folder=str(tmp_path)) is None


def test_damaged_files_raise_naming_the_file(trained, tmp_path):
  params, info = trained
  weights, described = frechet.save(params, info, "shapes", str(tmp_path))
  payload = bytearray(open(weights, "rb").read())
  payload[len(payload) // 2] ^= 0xFF
  open(weights, "wb").write(bytes(payload))
  with pytest.raises(ValueError, match="shapes.msgpack") as err:
    frechet.load("shapes", image_size=SIZE, channels=1, folder=str(tmp_path))
  assert "\n" not in str(err.value)
  # Undecodable bytes whose sha256 matches: still a clear error.
  open(weights, "wb").write(b"not msgpack")
  record = json.loads(open(described).read())
  import hashlib  # pylint: disable=g-import-not-at-top
  record["sha256"] = hashlib.sha256(b"not msgpack").hexdigest()
  open(described, "w").write(json.dumps(record))
  with pytest.raises(ValueError, match="shapes.msgpack"):
    frechet.load("shapes", image_size=SIZE, channels=1, folder=str(tmp_path))
  open(described, "w").write("{broken")
  with pytest.raises(ValueError, match="shapes.json"):
    frechet.load("shapes", image_size=SIZE, channels=1, folder=str(tmp_path))


def test_features_do_not_depend_on_the_batch(trained):
  params, _ = trained
  images = _images(24)
  features = jax.jit(frechet.features_fn)
  alone = np.asarray(features(params, images[:8]))
  others = jnp.concatenate([images[:8][::-1], images[16:24]])  # same images, other company
  mixed = np.asarray(features(params, others))[:8][::-1]
  np.testing.assert_allclose(mixed, alone, rtol=1e-5, atol=1e-6)
  single = np.stack([np.asarray(features(params, images[i:i + 1]))[0] for i in range(3)])
  np.testing.assert_allclose(single, alone[:3], rtol=1e-5, atol=1e-6)


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "leae_jax.frechet", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=300, check=False)


def test_command_line_end_to_end(tmp_path):
  out = tmp_path / "nets"
  run = _cli("--config=configs/shapes.py", "--steps=3", "--batch_size=32",
             "--data_note=toy shapes", f"--out={out}")
  assert run.returncode == 0, run.stderr
  assert "not Inception" in run.stdout and "test accuracy" in run.stdout
  assert "step 3/3" in run.stdout and str(out) in run.stdout
  assert sorted(os.listdir(out)) == ["shapes.json", "shapes.msgpack"]
  record = json.loads((out / "shapes.json").read_text())
  assert record["data"] == "toy shapes" and record["steps"] == 3
  assert record["image_size"] == 28 and "--steps=3" in record["command"]
  assert frechet.load("shapes", image_size=28, channels=1, folder=str(out)) is not None


def test_command_line_rejects_zero_steps(tmp_path):
  run = _cli("--config=configs/shapes.py", "--steps=0", f"--out={tmp_path}")
  assert run.returncode != 0
  lines = run.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error:") and "--steps" in lines[0], run.stderr
  assert not os.listdir(tmp_path)


def test_evaluation_reports_the_frechet_distance_of_its_net(trained, tmp_path, monkeypatch):
  """A run whose dataset has a net: evaluation's distance is the one computed by hand from the
  same test images, their eval-mode reconstructions and the net's features."""
  import helpers
  from leae_jax import metrics
  from leae_jax import models
  from leae_jax import train

  params, info = trained
  frechet.save(params, info, "shapes", str(tmp_path))
  monkeypatch.setattr(frechet, "DEFAULT_DIR", str(tmp_path))
  config = train.resolve(helpers.tiny_config(**{"image_size": SIZE, "eval_batch_size": 24,
                                                 "eval_batches": 1}))
  trainer = train.Trainer(config)
  assert trainer.feature_net is not None
  state = trainer.init_state()
  result = trainer.evaluate(state, max_batches=1)
  images, _ = data.load_arrays("shapes", "test", 24, image_size=SIZE, to_float=True)
  codes, _ = models.encode(trainer.model, state.params["encoder"], state.batch_stats,
                           jnp.asarray(images), train=False)
  recon = models.decode(trainer.model, state.params["decoder"], codes)
  want = metrics.frechet_distance(np.asarray(frechet.features_fn(params, images), np.float64),
                                  np.asarray(frechet.features_fn(params, recon), np.float64))
  np.testing.assert_allclose(result.metrics["frechet_distance"], want, rtol=1e-3)
  assert result.metrics["frechet_distance"] > 0
  # Shapes are grey: blur is measured, colour is not.
  assert "spectral_power_b3" in result.metrics and "chroma_psnr" not in result.metrics
  # Without a shipped net for the dataset and size, no distance is reported.
  monkeypatch.setattr(frechet, "DEFAULT_DIR", str(tmp_path / "none"))
  assert train.Trainer(config).feature_net is None


def test_reference_distances_put_the_floor_below_lost_detail(trained, tmp_path):
  params, info = trained
  frechet.save(params, info, "shapes", str(tmp_path))
  # Computed once, through the command line (`frechet.reference_distances` on the stored net),
  # over the whole splits (2000 test images, 2000 of the training ones): with fewer samples than
  # a few times the 128 features, the covariances' sampling error would dominate the floor.
  proc = _cli("--config=configs/shapes.py", "--config.image_size=32", "--references",
              f"--out={tmp_path}", "--config.num_workers=0")
  assert proc.returncode == 0, proc.stderr[-2000:]
  stored = json.loads((tmp_path / "shapes.json").read_text())
  refs = stored["references"]
  assert set(refs) == {"train_vs_test", "test_vs_half_resolution"}
  assert "--references" in stored["references_command"]
  # Two samples of one distribution are closer than the test split and its blurred copy.
  assert 0 <= refs["train_vs_test"] < refs["test_vs_half_resolution"], refs
  # The weights are untouched: the net still loads (its checksum still holds).
  assert frechet.load("shapes", image_size=SIZE, channels=1, folder=str(tmp_path)) is not None
