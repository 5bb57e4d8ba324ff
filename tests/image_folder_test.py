"""Image folders (`data.image_folder`): order, labels, pixels, sizes, modes, bad input; and the
real CIFAR-10 files (JPEG q75, `../shared/data/cifar10`), which are skipped where absent."""

import hashlib
import logging
import os

import numpy as np
from PIL import Image
import pytest

import helpers
from leae_jax import data
from leae_jax import train
from leae_jax.data import image_folder

ONE_SHARD = dict(shard_index=0, shard_count=1)


def _small_folder(root, *, size=(8, 8), extra=None):
  """Two classes 'b_dog' and 'a_cat' (sorted: a_cat = 0), 3 + 2 train and 1 + 1 test PNGs."""
  h, w = size
  files = {f"train/b_dog/{n}.png": (h, w, "RGB") for n in ("10", "02", "1")}
  files.update({f"train/a_cat/{n}.png": (h, w, "RGB") for n in ("z", "y")})
  files.update({"test/a_cat/0.png": (h, w, "RGB"), "test/b_dog/0.png": (h, w, "RGB")})
  files.update(extra or {})
  return helpers.write_image_folder(root, files)


def test_order_labels_and_pixels_follow_the_documented_rule(tmp_path):
  written = _small_folder(tmp_path)
  source = data.get_source("image_folder", "train", data_dir=tmp_path)
  # Labels from the sorted class folders; records by the BLAKE2b digest of '<class>/<file>'.
  paths = ["a_cat/y.png", "a_cat/z.png", "b_dog/02.png", "b_dog/1.png", "b_dog/10.png"]
  order = sorted(paths, key=lambda p: hashlib.blake2b(p.encode(), digest_size=8).digest())
  assert len(source) == 5 and list(source.index.files) == order
  for i, name in enumerate(order):
    record = source[i]
    assert record["label"] == (0 if name.startswith("a_cat") else 1)
    assert record["image"].dtype == np.uint8
    np.testing.assert_array_equal(record["image"], written[f"train/{name}"])
  info = data.describe("image_folder", data_dir=tmp_path)
  assert (info.image_size, info.channels, info.num_classes) == (8, 3, 2)
  assert (info.num_train, info.num_test, info.class_names) == (5, 2, ("a_cat", "b_dog"))
  images, labels = data.load_arrays("image_folder", "train", 3, data_dir=tmp_path)
  assert images.shape == (3, 8, 8, 3)
  assert list(labels) == [0 if p.startswith("a_cat") else 1 for p in order[:3]]
  np.testing.assert_array_equal(images[2], written[f"train/{order[2]}"])


def test_record_order_mixes_the_classes_and_survives_added_files():
  # 10 classes of 100 files, listed class by class: every class appears in the
  # first 100 records (a folder order would give the first class only), with
  # no class holding more than a quarter of them.
  paths = [f"class{c}/{i:04d}.png" for c in range(10) for i in range(100)]
  order = image_folder.record_order(paths)
  assert sorted(order.tolist()) == list(range(1000))
  counts = np.bincount([int(paths[i][5]) for i in order[:100]], minlength=10)
  assert counts.min() >= 1 and counts.max() <= 25, counts
  # Adding files keeps the others in their relative order.
  more = paths + [f"class3/new{i}.png" for i in range(50)]
  kept = [more[i] for i in image_folder.record_order(more) if i < len(paths)]
  assert kept == [paths[i] for i in order]


def test_a_run_takes_size_channels_and_split_sizes_from_the_folder(tmp_path):
  _small_folder(tmp_path, size=(16, 16))
  config = train.resolve(helpers.tiny_config(**{"dataset": "image_folder",
                                                 "data_dir": str(tmp_path), "batch_size": 2,
                                                 "num_train_steps": -1, "num_epochs": 2}))
  assert (config.image_size, config.image_channels) == (16, 3)
  assert config.num_train_steps == 2 * 3  # 'partial' epochs: ⌈5 / 2⌉ steps each


def test_grey_and_rgba_images_are_converted_into_an_rgb_set(tmp_path, caplog):
  written = _small_folder(tmp_path, extra={"train/a_cat/grey.png": (8, 8, "L"),
                                           "train/a_cat/alpha.png": (8, 8, "RGBA")})
  with caplog.at_level(logging.WARNING):
    info = data.describe("image_folder", data_dir=tmp_path)
  assert info.channels == 3
  assert "1 L, 1 RGBA images converted to RGB (alpha dropped)" in caplog.text
  source = data.get_source("image_folder", "train", data_dir=tmp_path)
  by_name = {name: source[i]["image"] for i, name in enumerate(source.index.files)}
  grey = written["train/a_cat/grey.png"]
  np.testing.assert_array_equal(by_name["a_cat/grey.png"], np.repeat(grey, 3, axis=-1))
  np.testing.assert_array_equal(by_name["a_cat/alpha.png"], written["train/a_cat/alpha.png"][..., :3])


def test_an_all_grey_set_has_one_channel(tmp_path):
  helpers.write_image_folder(tmp_path, {"train/x/0.png": (8, 8, "L"), "test/x/0.png": (8, 8, "L")})
  assert data.describe("image_folder", data_dir=tmp_path).channels == 1
  assert data.get_source("image_folder", "test", data_dir=tmp_path)[0]["image"].shape == (8, 8, 1)


def test_images_of_several_sizes_need_an_image_size_and_are_then_fitted(tmp_path):
  _small_folder(tmp_path, extra={"train/a_cat/wide.png": (12, 20, "RGB")})
  with pytest.raises(data.DatasetUnavailableError) as info:
    data.describe("image_folder", data_dir=tmp_path)
  message = str(info.value)
  assert "images differ in size" in message and "train/a_cat/wide.png is 12×20" in message
  assert "--config.image_size=S" in message and "\n" not in message
  images, _ = data.load_arrays("image_folder", "train", None, data_dir=tmp_path, image_size=8)
  assert images.shape == (6, 8, 8, 3)
  # The 12×20 image: its centred 12×12 square, resized to 8×8 (`fit` auto = resize here).
  wide = data.get_source("image_folder", "train", data_dir=tmp_path, image_size=8)[2]
  assert data.FitImage(8).ops(12, 20)[0].__class__ is data.CenterCropSquare
  fitted = data.FitImage(8).map(dict(wide))["image"]
  np.testing.assert_array_equal(images[2], fitted)


@pytest.mark.parametrize("case, expected", [
    ("missing_root", "image folder {root}/nowhere does not exist"),
    ("no_test_split", "has no test/ folder"),
    ("split_folder_given", "holds class folders of images itself: give the folder above it"),
    ("no_classes", "holds no class folders"),
    ("empty_class", "{root}/train/c holds no images (.jpg, .jpeg, .png)"),
    ("different_classes", "the class folders of train/ and test/ differ (only in train/: c; only "
                          "in test/: d)"),
    ("not_an_image", "{root}/train/a/bad.png cannot be decoded as an image"),
    ("sixteen_bit", "{root}/train/a/deep.png is a 'I;16' image"),
])
def test_bad_folders_are_one_line_naming_the_path(tmp_path, case, expected):
  root = tmp_path
  good = {"train/a/0.png": (4, 4, "RGB"), "test/a/0.png": (4, 4, "RGB")}
  data_dir = root
  if case == "missing_root":
    data_dir = root / "nowhere"
  elif case == "no_test_split":
    helpers.write_image_folder(root, {"train/a/0.png": (4, 4, "RGB")})
  elif case == "split_folder_given":
    helpers.write_image_folder(root, good)
    data_dir = root / "train"
  elif case == "no_classes":
    (root / "train").mkdir()
    (root / "test").mkdir()
    (root / "train" / "stray.png").write_bytes(b"")
  elif case == "empty_class":
    helpers.write_image_folder(root, good)
    (root / "train" / "c").mkdir()
    (root / "train" / "c" / "notes.txt").write_text("not an image")
  elif case == "different_classes":
    helpers.write_image_folder(root, {**good, "train/c/0.png": (4, 4, "RGB"),
                                      "test/d/0.png": (4, 4, "RGB")})
  elif case == "not_an_image":
    helpers.write_image_folder(root, good)
    (root / "train" / "a" / "bad.png").write_bytes(b"these bytes are no image")
  elif case == "sixteen_bit":
    helpers.write_image_folder(root, good)
    Image.fromarray(np.full((4, 4), 60000, np.uint16)).save(root / "train" / "a" / "deep.png")
  if case == "split_folder_given":  # a data_dir that does not look like an image folder
    with pytest.raises(data.DatasetUnavailableError) as info:
      data.describe("image_folder", data_dir=data_dir)
  else:
    with pytest.raises(data.DatasetUnavailableError) as info:
      data.get_source("image_folder", "train", data_dir=data_dir)
  message = str(info.value)
  assert expected.format(root=root) in message, message
  assert "\n" not in message


def test_a_truncated_image_names_its_file_when_read(tmp_path):
  _small_folder(tmp_path)
  path = tmp_path / "train" / "a_cat" / "y.png"
  path.write_bytes(path.read_bytes()[:60])  # the header survives, the pixels do not
  source = data.get_source("image_folder", "train", data_dir=tmp_path)
  with pytest.raises(data.CorruptDataError, match=f"{path} cannot be decoded"):
    source[source.index.files.index("a_cat/y.png")]


def test_a_changed_folder_is_scanned_again(tmp_path):
  _small_folder(tmp_path)
  assert data.describe("image_folder", data_dir=tmp_path).num_train == 5
  helpers.write_image_folder(tmp_path, {"train/b_dog/new.png": (8, 8, "RGB")}, seed=1)
  assert data.describe("image_folder", data_dir=tmp_path).num_train == 6


def test_cifar10_refuses_a_folder_of_other_classes(tmp_path):
  _small_folder(tmp_path, size=(32, 32))
  with pytest.raises(data.DatasetUnavailableError, match="has the class folders a_cat, b_dog, but "
                     "cifar10 has the classes airplane, "):
    data.get_source("cifar10", "train", data_dir=tmp_path)


def test_cifar10_reads_what_data_dir_holds_an_image_folder_or_a_tfds_copy(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  folder = {f"{split}/{name}/0.png": (32, 32, "RGB")
            for split in ("train", "test") for name in helpers.CIFAR10_CLASSES}
  written = helpers.write_image_folder(tmp_path / "folder", folder)
  source = data.get_source("cifar10", "train", data_dir=tmp_path / "folder")
  assert isinstance(source, data.image_folder.ImageFolderSource) and len(source) == 10
  cat = source.index.files.index("cat/0.png")
  np.testing.assert_array_equal(source[cat]["image"], written["train/cat/0.png"])
  assert source[cat]["label"] == 3
  (tmp_path / "tfds").mkdir()
  with tfds.testing.mock_data(num_examples=6):  # stands in for a TFDS copy in that folder
    source = data.get_source("cifar10", "train", data_dir=tmp_path / "tfds")
    assert not isinstance(source, data.image_folder.ImageFolderSource) and len(source) == 6


def test_prepared_records_from_an_image_folder_hold_the_same_pixels_and_classes(tmp_path):
  written = _small_folder(tmp_path / "folder")
  out = tmp_path / "prepared"
  data.prepared.prepare("image_folder", out, data_dir=tmp_path / "folder")
  copy = data.get_source("image_folder", "train", prepared_dir=out)  # its size: the prepared one
  original = data.get_source("image_folder", "train", data_dir=tmp_path / "folder")
  assert len(copy) == len(original) == 5
  for i in range(5):
    np.testing.assert_array_equal(copy[i]["image"], original[i]["image"])
    assert copy[i]["label"] == original[i]["label"]
  ten = original.index.files.index("b_dog/10.png")
  np.testing.assert_array_equal(copy[ten]["image"], written["train/b_dog/10.png"])
  info = data.describe("image_folder", prepared_dir=out)
  assert (info.image_size, info.channels, info.num_train, info.num_test) == (8, 3, 5, 2)
  assert info.class_names == ("a_cat", "b_dog") and info.num_classes == 2


# --- the real CIFAR-10 files (JPEG q75) --------------------------------------------------

real = pytest.mark.skipif(not os.path.isdir(helpers.CIFAR10_FOLDER),
                          reason="no ../shared/data/cifar10 on this machine")


@pytest.fixture(scope="module")
def subset(tmp_path_factory):
  if not os.path.isdir(helpers.CIFAR10_FOLDER):
    pytest.skip("no ../shared/data/cifar10 on this machine")
  return helpers.cifar10_subset(tmp_path_factory.mktemp("cifar10_subset"))


@real
def test_the_whole_real_folder_is_cifar10():
  info = data.describe("cifar10", data_dir=helpers.CIFAR10_FOLDER)
  assert (info.num_train, info.num_test, info.image_size, info.channels) == (50_000, 10_000, 32, 3)
  assert info.class_names == helpers.CIFAR10_CLASSES


@real
def test_real_files_give_the_pixels_and_labels_of_an_independent_decode(subset):
  source = data.get_source("cifar10", "test", data_dir=subset)
  assert len(source) == 40
  expected = []  # built here from the folders, without the loader's code
  for label, name in enumerate(sorted(os.listdir(os.path.join(subset, "test")))):
    for file_name in os.listdir(os.path.join(subset, "test", name)):
      expected.append((f"{name}/{file_name}", label))
  expected.sort(key=lambda e: hashlib.blake2b(e[0].encode(), digest_size=8).digest())
  expected = [(os.path.join(subset, "test", rel), label) for rel, label in expected]
  for i, (path, label) in enumerate(expected):
    record = source[i]
    with Image.open(path) as image:
      assert image.mode == "RGB" and image.size == (32, 32)
      np.testing.assert_array_equal(record["image"], np.asarray(image))
    assert record["label"] == label == helpers.CIFAR10_CLASSES.index(os.path.basename(
        os.path.dirname(path)))


@real
def test_real_files_shard_over_processes_and_resume_exactly(subset):
  options = dict(data_dir=subset, batch_size=8, seed=3, epoch_end="partial")
  whole = list(data.create_train_loader("cifar10", stop_step=20, **options, **ONE_SHARD))
  assert whole[0]["image"].shape == (8, 32, 32, 3) and whole[0]["image"].dtype == np.float32
  # Two processes read the two halves of every global batch.
  halves = [list(data.create_train_loader("cifar10", stop_step=20, shard_index=p, shard_count=2,
                                          **options)) for p in (0, 1)]
  for step, batch in enumerate(whole):
    for key in ("image", "label"):
      np.testing.assert_array_equal(
          batch[key], np.concatenate([halves[0][step][key], halves[1][step][key]]))
  # A loader started at step 13 (a resumed run) reads what the uninterrupted one read there.
  resumed = list(data.create_train_loader("cifar10", start_step=13, stop_step=20, **options,
                                          **ONE_SHARD))
  for batch, want in zip(resumed, whole[13:]):
    np.testing.assert_array_equal(batch["image"], want["image"])
  # Evaluation over 3 devices x 2 processes: every test record exactly once, in order.
  eval_rows = [list(data.create_eval_loader("cifar10", "test", batch_size=16, multiple=6,
                                            data_dir=subset, shard_index=p, shard_count=2))
               for p in (0, 1)]
  labels = np.concatenate([np.concatenate([a["label"][a["valid"]], b["label"][b["valid"]]])
                           for a, b in zip(*eval_rows)])
  source = data.get_source("cifar10", "test", data_dir=subset)
  np.testing.assert_array_equal(labels, [helpers.CIFAR10_CLASSES.index(f.split("/")[0])
                                         for f in source.index.files])
  assert len(labels) == 40


@real
def test_the_benchmark_names_an_image_folder_source(subset):
  from leae_jax import bench

  config = train.resolve(helpers.tiny_config(**{"dataset": "cifar10", "data_dir": subset,
                                                 "image_size": -1, "batch_size": 8}))
  result = bench.measure_input(config, batches=2, warmup=1)
  assert result["input_source"] == "image_folder" and result["input_images_per_s"] > 0


@real
def test_real_files_in_grain_worker_processes(subset):
  batch = next(iter(data.create_train_loader("cifar10", batch_size=8, seed=0, data_dir=subset,
                                             stop_step=1, worker_count=1, **ONE_SHARD)))
  want = next(iter(data.create_train_loader("cifar10", batch_size=8, seed=0, data_dir=subset,
                                            stop_step=1, **ONE_SHARD)))
  np.testing.assert_array_equal(batch["image"], want["image"])


@real
def test_the_headline_command_and_prepare_run_on_real_files(subset, tmp_path):
  import json
  import subprocess
  import sys

  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  tiny = ["--config.model.hidden=8", "--config.model.latent_channels=4",
          "--config.objective.sigreg_slices=16", "--config.batch_size=16",
          "--config.eval_batch_size=20", "--config.num_train_steps=2",
          "--config.eval_every_steps=2", "--config.progress_bar=false", "--config.num_workers=0"]
  workdir = tmp_path / "run"
  proc = subprocess.run([sys.executable, "-m", "leae_jax.main", "--config=configs/cifar.py",
                         f"--config.data_dir={subset}", f"--workdir={workdir}", *tiny],
                        cwd=root, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "cifar10 32px" in proc.stdout and "chroma PSNR" in proc.stdout
  evals = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()
           if '"eval/psnr"' in l]
  metrics = evals[-1]
  assert metrics["eval/num_images"] == 40
  for key in ("eval/chroma_psnr", "eval/luma_psnr", "eval/saturation_ratio",
              "eval/spectral_power_b0", "eval/spectral_power_b3"):
    assert np.isfinite(metrics[key]), key
  out = tmp_path / "prepared"
  proc = subprocess.run([sys.executable, "-m", "leae_jax.prepare", "--config=configs/cifar.py",
                         f"--config.data_dir={subset}", f"--out={out}"],
                        cwd=root, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  manifest = json.loads((out / "prepared.json").read_text())
  assert manifest["splits"]["train"]["num_records"] == 120
  assert manifest["described"]["class_names"] == list(helpers.CIFAR10_CLASSES)
  copy = data.get_source("cifar10", "test", prepared_dir=out)
  original = data.get_source("cifar10", "test", data_dir=subset)
  for i in (0, 17, 39):
    np.testing.assert_array_equal(copy[i]["image"], original[i]["image"])
