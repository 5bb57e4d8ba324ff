"""Shared test helpers: tiny configs, small Fashion-MNIST IDX files, hand-derived objectives."""

import gzip
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from leae_jax import base_config
from leae_jax import sigreg as sigreg_lib
from leae_jax import views


def objective_config(**fields) -> ml_collections.ConfigDict:
  """The base config's `objective` with `fields` changed (values of any type)."""
  base = base_config.get_base_config().objective.to_dict()
  return ml_collections.ConfigDict(base_config.merge(base, fields))


def model_config(**fields) -> ml_collections.ConfigDict:
  """The base config's `model` with `fields` changed."""
  base = base_config.get_base_config().model.to_dict()
  return ml_collections.ConfigDict(base_config.merge(base, fields))


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
  # Constant (the published schedule): every step, the first included, moves
  # the params, so tests that take a few steps see the state really change.
  c.lr_schedule = "constant"
  c.warmup_steps = 0
  c.log_every_steps = 5
  c.eval_every_steps = 0
  c.checkpoint_every_steps = 1000
  c.progress_bar = False
  c.update_from_flattened_dict(overrides)
  return c



def load_config(name: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """`configs/<name>.py`'s `get_config(arg)` (no argument when `arg` is None), unresolved."""
  return base_config.load(name if arg is None else f"{name}:{arg}")


def write_idx(directory, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
  """Writes `<prefix>-images-idx3-ubyte.gz` / `<prefix>-labels-idx1-ubyte.gz` (28×28 uint8)."""
  with gzip.open(os.path.join(directory, f"{prefix}-images-idx3-ubyte.gz"), "wb") as f:
    f.write(np.array([0x803, len(images), 28, 28], ">i4").tobytes() + images.astype(np.uint8).tobytes())
  with gzip.open(os.path.join(directory, f"{prefix}-labels-idx1-ubyte.gz"), "wb") as f:
    f.write(np.array([0x801, len(labels)], ">i4").tobytes() + labels.astype(np.uint8).tobytes())


def idx_splits(directory, train: int = 64, test: int = 32, seed: int = 0) -> str:
  """A small Fashion-MNIST-format IDX directory (random 28×28 images, labels i mod 10)."""
  os.makedirs(directory, exist_ok=True)
  rng = np.random.default_rng(seed)
  for prefix, n in (("train", train), ("t10k", test)):
    write_idx(directory, prefix, rng.integers(0, 256, (n, 28, 28)), np.arange(n) % 10)
  return str(directory)


# ---------------------------------------------------------------------------
# Independent derivations of the objectives, written with `model.apply` only
# (never the loss functions under test). They reuse the library's key schedule
# (`split(key)` → SIGReg and view keys, `fold_in(k_views, i)` per view), its
# views and its SIGReg statistic, which have tests of their own, so that the
# random draws match; the method itself — which codes are compared, which
# sides carry gradient, which statistics move — is spelled out here.


def apply_encode(model, params, stats, images):
  """Training-mode encoder output (x's own batch statistics), update discarded."""
  return model.apply({"params": params, "batch_stats": stats}, images, train=True,
                     method=model.encode, mutable=["batch_stats"])[0]


def apply_decode(model, params, codes):
  return model.apply({"params": params}, codes, method=model.decode)


def judge_of(judge, params, ema=None):
  """The judge's full params (its encoder; the decoder is never used by a judge)."""
  enc = {"step_frozen": jax.lax.stop_gradient(params["encoder"]),
         "live": params["encoder"], "live_stop_target": params["encoder"],
         "ema": None if ema is None else jax.lax.stop_gradient(ema)}[judge]
  return {"encoder": enc, "decoder": params["decoder"]}


def hand_self_teaching(model, params, stats, images, key, *, judge, crop_ratio, sigreg_weight,
                       num_slices, sigreg_on="code", ema=None):
  """One crop-resize view: MSE(J(c(x)), J(c(D(E(x))))) + λ SIGReg, as the method defines it.

  The target J(c(x)) is detached except under the published `live` judge;
  SIGReg is on E(x) (`code`) or on both sides' judge codes (`views`).
  """
  k_sigreg, k_views = jax.random.split(key)
  crop = views.get_view("crop_resize", crop_ratio=crop_ratio)
  box = crop.sample(jax.random.fold_in(k_views, 0), images.shape)  # ONE draw for both sides
  codes = apply_encode(model, params, stats, images)
  recon = apply_decode(model, params, codes)
  jp = judge_of(judge, params, ema)
  target = apply_encode(model, jp, stats, crop.transform(box, images))
  judged = apply_encode(model, jp, stats, crop.transform(box, recon))
  kept = target if judge == "live" else jax.lax.stop_gradient(target)
  agreement = jnp.mean((kept - judged) ** 2)
  sr = lambda z, k: sigreg_lib.sigreg(z, k, num_slices=num_slices)
  if sigreg_on == "code":
    sig = sr(codes, k_sigreg)
  else:
    sig = sr(target, jax.random.fold_in(k_sigreg, 0)) + sr(judged, jax.random.fold_in(k_sigreg, 1))
  return agreement + sigreg_weight * sig


def hand_masked_self_teaching(model, params, stats, images, key, *, judge, crop_ratio,
                              mask_ratio, sigreg_weight, num_slices, ema=None):
  """(‖J(x̂_c) − J(x̂_m)‖² + ‖sg J(c(x)) − J(c(x̂_c))‖² + ‖sg J(c(x)) − J(c(x̂_m))‖²)/3 + λ/2 (SR(z_c) + SR(z_m)).

  Both branches of the consistency term carry gradient; the two SIGReg terms
  use different directions.
  """
  k_mask, k_crop, k_sigreg = jax.random.split(key, 3)
  hole = views.get_view("inpaint", mask_ratio=mask_ratio)
  masked = hole.transform(hole.sample(k_mask, images.shape), images)
  z_c = apply_encode(model, params, stats, images)
  z_m = apply_encode(model, params, stats, masked)
  r_c, r_m = apply_decode(model, params, z_c), apply_decode(model, params, z_m)
  jp = judge_of(judge, params, ema)
  j = lambda x: apply_encode(model, jp, stats, x)
  crop = views.get_view("crop_resize", crop_ratio=crop_ratio)
  box = crop.sample(k_crop, images.shape)
  target = j(crop.transform(box, images))
  if judge != "live":
    target = jax.lax.stop_gradient(target)
  mse = lambda a, b: jnp.mean((a - b) ** 2)
  agreement = (mse(j(r_c), j(r_m)) + mse(target, j(crop.transform(box, r_c)))
               + mse(target, j(crop.transform(box, r_m)))) / 3
  k1, k2 = jax.random.split(k_sigreg)
  sr = lambda z, k: sigreg_lib.sigreg(z, k, num_slices=num_slices)
  return agreement + sigreg_weight * 0.5 * (sr(z_c, k1) + sr(z_m, k2))


def assert_trees_close(got, want, *, rtol=1e-4, atol_frac=1e-5, name=""):
  """Leaf by leaf: |got − want| <= atol + rtol·|want|, atol a fraction of the leaf's scale.

  Gradients of a float32 loss computed along two paths agree to rounding, not
  bitwise; a per-leaf absolute floor keeps near-zero entries from failing.
  """
  paths = jax.tree_util.tree_leaves_with_path(want)
  got_leaves = jax.tree_util.tree_leaves(got)
  assert len(paths) == len(got_leaves), (name, len(paths), len(got_leaves))
  for (path, w), g in zip(paths, got_leaves):
    w, g = np.asarray(w, np.float64), np.asarray(g, np.float64)
    scale = float(np.abs(w).max()) if w.size else 0.0
    np.testing.assert_allclose(g, w, rtol=rtol, atol=atol_frac * scale + 1e-12,
                               err_msg=f"{name}{jax.tree_util.keystr(path)}")


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_on_devices(script: str, devices: int, timeout: int = 600) -> dict:
  """Runs `tests/<script>` with `devices` simulated CPU devices; returns its last stdout line (JSON).

  The device count must be set before JAX starts, hence a fresh process.
  """
  import json
  import subprocess
  import sys

  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]))
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "tests", script)],
                        env=env, capture_output=True, text=True, timeout=timeout)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def write_image_folder(root, files: dict, seed: int = 0) -> dict:
  """Writes an image folder: `files` maps 'split/class/name.png' to (height, width, mode).

  PNG is lossless, so the pixels written are the pixels a loader must return:
  returns {relative path: the uint8 array written}.
  """
  from PIL import Image

  rng = np.random.default_rng(seed)
  written = {}
  for relative, (height, width, mode) in files.items():
    path = os.path.join(os.fspath(root), relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode).save(path)
    written[relative] = pixels
  return written


#: The real CIFAR-10 files (JPEG q75) of the development machines and CI; absent on users' machines.
CIFAR10_FOLDER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.pardir,
                              "shared", "data", "cifar10")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck")


def cifar10_subset(root, train_per_class: int = 12, test_per_class: int = 4) -> str:
  """A copy of the first files of every class of the real CIFAR-10 folder (hard links where the
  file system allows): the real JPEGs, few enough for fast tests."""
  import shutil

  for split, count in (("train", train_per_class), ("test", test_per_class)):
    for name in CIFAR10_CLASSES:
      source = os.path.join(CIFAR10_FOLDER, split, name)
      target = os.path.join(os.fspath(root), split, name)
      os.makedirs(target, exist_ok=True)
      for file_name in sorted(os.listdir(source))[:count]:
        try:
          os.link(os.path.join(source, file_name), os.path.join(target, file_name))
        except OSError:
          shutil.copy(os.path.join(source, file_name), os.path.join(target, file_name))
  return os.fspath(root)


def run_module(module: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
  """`python -m module args...` from the checkout, as a user would run it (output captured)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return subprocess.run([sys.executable, "-m", module, *args], cwd=root, capture_output=True,
                        text=True, timeout=timeout)
