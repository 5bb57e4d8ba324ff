"""`python -m leae_jax.reconstruct`: a saved model on the user's own image files."""

import json
import os

import numpy as np
from PIL import Image
import pytest

import helpers
from leae_jax import metrics
from leae_jax import pretrained
from leae_jax import reconstruct
from leae_jax import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("reconstruct")
  workdir = str(root / "run")
  train.train_and_evaluate(helpers.tiny_config(num_train_steps=2), workdir)
  return pretrained.save(workdir, str(root / "model"))


def _cli(*args):
  return helpers.run_module("leae_jax.reconstruct", *args)


def test_fit_takes_the_central_square_and_resizes_it(tmp_path):
  # 60×30: a red central 30×30 square between blue sides.
  pixels = np.zeros((30, 60, 3), np.uint8)
  pixels[:, :, 2] = 255
  pixels[:, 15:45] = (255, 0, 0)
  Image.fromarray(pixels).save(tmp_path / "wide.png")
  fitted = reconstruct.fit(str(tmp_path / "wide.png"), 8, 3)
  assert fitted.shape == (8, 8, 3)
  np.testing.assert_allclose(fitted, np.broadcast_to([1.0, 0.0, 0.0], (8, 8, 3)), atol=1e-6)
  grey = reconstruct.fit(str(tmp_path / "wide.png"), 8, 1)
  assert grey.shape == (8, 8, 1) and np.allclose(grey, 76 / 255, atol=1 / 255)  # L of pure red


def test_reconstructs_a_folder_of_photos(model_dir, tmp_path):
  photos = tmp_path / "photos"
  photos.mkdir()
  rng = np.random.default_rng(0)
  for name, size in (("a.jpg", (48, 40)), ("b.PNG", (20, 64))):
    Image.fromarray(rng.integers(0, 255, (*size, 3), np.uint8)).save(photos / name)
  (photos / "notes.txt").write_text("not an image")
  out = tmp_path / "out"
  result = _cli(f"--model={model_dir}", f"--images={photos}", f"--out={out}", "--scale=2")
  assert result.returncode == 0, result.stderr
  assert "reconstructed 2 image(s)" in result.stdout
  report = json.load(open(out / "reconstruct.json"))
  assert [os.path.basename(e["image"]) for e in report["images"]] == ["a.jpg", "b.PNG"]
  assert all(np.isfinite(e["psnr"][model_dir]) for e in report["images"])
  assert report["columns"] == ["input", model_dir]
  # input | reconstruction, each 32 px drawn at ×2, with a 2 px gap; one grey channel.
  picture = np.asarray(Image.open(out / "a.png"))
  assert picture.shape == (64, 2 * 64 + 2)
  # The sheet: both rows, one under the other, 2 px apart.
  sheet = np.asarray(Image.open(out / "sheet.png"))
  assert sheet.shape == (2 * 64 + 2, 2 * 64 + 2)
  np.testing.assert_array_equal(sheet[:64], picture)


def test_several_models_side_by_side(model_dir, tmp_path):
  """Two models: input | first | second; each model's PSNR is what it alone gives."""
  photo = tmp_path / "p.png"
  Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 40, 3), np.uint8)).save(photo)
  alone, both = tmp_path / "alone", tmp_path / "both"
  assert _cli(f"--model={model_dir}", f"--images={photo}", f"--out={alone}").returncode == 0
  result = _cli(f"--model={model_dir},{model_dir}", f"--images={photo}", f"--out={both}")
  assert result.returncode == 0, result.stderr
  one = json.load(open(alone / "reconstruct.json"))["images"][0]["psnr"][model_dir]
  report = json.load(open(both / "reconstruct.json"))
  assert report["columns"] == ["input", model_dir, model_dir]
  assert report["images"][0]["psnr"] == {model_dir: one}
  picture = np.asarray(Image.open(both / "p.png"))
  assert picture.shape == (128, 3 * 128 + 4)
  np.testing.assert_array_equal(picture[:, 130:258], picture[:, 260:])  # same model, same panel


@pytest.mark.parametrize("args,message", [
    (["--images={missing}"], "no such file or folder"),
    (["--images={bad}"], "cannot be read as an image"),
    (["--images={empty}"], "holds no .jpg, .jpeg, .png files"),
    (["--images={good}", "--model=no_such_model"], "not a shipped model's name"),
    (["--images={good}", "--mask=0.3"], "was not trained to inpaint"),
    (["--images={good}", "--model=fashion_mnist_mse,cifar10_mse"],
     "models shown side by side must take the same input; these take fashion_mnist_mse 32×32×1, "
     "cifar10_mse 32×32×3"),
])
def test_bad_input_gets_one_line(model_dir, tmp_path, args, message):
  (tmp_path / "bad.png").write_bytes(b"not a png")
  (tmp_path / "empty").mkdir()
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "good.png")
  paths = dict(missing=tmp_path / "nope", bad=tmp_path / "bad.png", empty=tmp_path / "empty",
               good=tmp_path / "good.png")
  argv = [a.format(**paths) for a in args]
  if not any(a.startswith("--model=") for a in argv):
    argv.append(f"--model={model_dir}")
  result = _cli(*argv, f"--out={tmp_path / 'out'}")
  assert result.returncode == 2, result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines


# Photographs nobody here made: scikit-image ships these files inside its package.
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png")


def test_a_shipped_colour_model_reconstructs_photographs(tmp_path):
  skimage_data = pytest.importorskip("skimage.data")
  colour = [n for n in pretrained.names() if pretrained.load(n).config.image_channels == 3]
  if not colour:
    pytest.skip("no colour model shipped")
  folder = os.path.dirname(skimage_data.__file__)
  photos = tmp_path / "photos"
  photos.mkdir()
  for name in PHOTOS:
    (photos / name).write_bytes(open(os.path.join(folder, name), "rb").read())
  out = tmp_path / "out"
  result = _cli(f"--model={colour[0]}", f"--images={photos}", f"--out={out}")
  assert result.returncode == 0, result.stderr
  report = json.load(open(out / "reconstruct.json"))
  assert len(report["images"]) == len(PHOTOS)
  # A model trained on natural 32 px images reconstructs natural photos fitted to 32 px: each
  # beats the photo's own mean colour (a flat image: 11-19 dB here) by more than 2 dB.
  for entry in report["images"]:
    fitted = reconstruct.fit(entry["image"], 32, 3)
    flat = np.broadcast_to(fitted.mean(axis=(0, 1)), fitted.shape)
    floor = float(metrics.per_image_psnr(flat[None], fitted[None])[0])
    assert entry["psnr"][colour[0]] > floor + 2, (entry, floor)
  picture = np.asarray(Image.open(out / "astronaut.png"))
  assert picture.shape == (128, 2 * 128 + 2, 3)


def test_a_masked_model_adds_the_masked_input_and_its_reconstruction(model_dir, tmp_path):
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(helpers.tiny_config(num_train_steps=2,
                                               **{"objective.name": "masked_self_teaching"}),
                           workdir)
  masked_dir = pretrained.save(workdir, str(tmp_path / "masked"))
  photo = tmp_path / "p.png"
  Image.fromarray(np.random.default_rng(2).integers(0, 255, (40, 40, 3), np.uint8)).save(photo)
  out = tmp_path / "out"
  result = _cli(f"--model={model_dir},{masked_dir}", f"--images={photo}", f"--out={out}",
                "--mask=0.25", "--scale=1")
  assert result.returncode == 0, result.stderr
  report = json.load(open(out / "reconstruct.json"))
  assert report["columns"] == ["input", model_dir, masked_dir, f"{masked_dir} masked input",
                               f"{masked_dir} masked"]
  assert report["mask_ratio"] == {masked_dir: 0.25}
  entry = report["images"][0]
  assert set(entry["hole_psnr"]) == {masked_dir} and np.isfinite(entry["hole_psnr"][masked_dir])
  picture = np.asarray(Image.open(out / "p.png"))
  assert picture.shape == (32, 5 * 32 + 4 * 2)
  # The masked input panel: a quarter of its area is one flat value (the image's mean).
  masked_input = picture[:, 3 * 34:3 * 34 + 32].astype(np.float32)
  values, counts = np.unique(masked_input, return_counts=True)
  assert counts.max() >= 0.2 * masked_input.size
