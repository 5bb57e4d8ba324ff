"""A small classifier this project trains itself, whose features measure a Fréchet distance.

Evaluation reports the Fréchet distance between the test images and their
reconstructions in the features of `FeatureNet`: a small CNN (about 0.16 M
parameters at 32×32×3, no batch norm) trained here, by `train`, on the
dataset's own training split. It is **not** Inception-FID: no downloaded
weights, a different network, different features, so its distances are not
comparable to published FID numbers, only to each other (same dataset, same
shipped net).

Shipped nets live in the package folder `frechet_nets/`: `<dataset>.msgpack`
(`flax.serialization.to_bytes` of the params) and `<dataset>.json` (how it was
made, its test accuracy, the sha256 of the msgpack). `load` returns None when
no net is shipped for a dataset at the evaluated size and channels (then no
Fréchet distance is reported), and raises ValueError for a damaged one.

    python -m leae_jax.frechet --config=configs/cifar.py --config.data_dir=DIR --steps=20000 \
        --data_note="CIFAR-10 (JPEG q75)"

trains the CIFAR-10 net and writes `leae_jax/frechet_nets/cifar10.{msgpack,json}`
(`--out=DIR` to write elsewhere).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
import time
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from leae_jax import cli
from leae_jax import data
from leae_jax import weights

PyTree = Any

#: Where the shipped nets live (package data).
DEFAULT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "frechet_nets")
#: The `format` of the json files this module writes and reads.
FORMAT = "leae_jax.frechet/1"
#: Width of the features (the penultimate dense layer).
FEATURE_DIM = 128
NOTE = ("A small CNN classifier (FeatureNet, no batch norm) trained by this project on the "
        "dataset's own training split; its penultimate-layer features (after ReLU) define the "
        "Fréchet distance reported by evaluation. It is not Inception-v3: these distances are "
        "not comparable to published FID numbers, only to each other with this same net.")


# ---------------------------------------------------------------------------
# The network.


class FeatureNet(nn.Module):
  """Small NHWC CNN: images float32 in [0, 1] `(N, S, S, C)` → logits `(N, num_classes)`.

  conv3×3 32, 32, 2×2 average pool, 64, 64, average pool, 128 (ReLU after
  each conv), global average pool, dense 128 + ReLU (the features,
  `FEATURE_DIM`), dense `num_classes` (the logits). No batch norm and no
  dropout: an image's features do not depend on the rest of its batch, and
  inference has no state. Any side ≥ 4 works (global pooling).
  """

  num_classes: int = 10

  def setup(self):
    self.convs = [nn.Conv(width, (3, 3), name=f"conv{i}")
                  for i, width in enumerate((32, 32, 64, 64, 128))]
    self.feature_dense = nn.Dense(FEATURE_DIM, name="features")
    self.head = nn.Dense(self.num_classes, name="head")

  def features(self, x: jax.Array) -> jax.Array:
    """`(N, FEATURE_DIM)` float32 features of images in [0, 1]."""
    if x.dtype == jnp.uint8:
      x = x.astype(jnp.float32) / 255.0
    x = x.astype(jnp.float32) - 0.5
    for i, conv in enumerate(self.convs):
      x = nn.relu(conv(x))
      if i in (1, 3):
        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = jnp.mean(x, axis=(1, 2))
    return nn.relu(self.feature_dense(x))

  def __call__(self, x: jax.Array, *, return_features: bool = False) -> jax.Array:
    features = self.features(x)
    return features if return_features else self.head(features)


def init_params(key: jax.Array, *, image_size: int, channels: int, num_classes: int) -> PyTree:
  """Fresh FeatureNet params for `(image_size, image_size, channels)` images."""
  x = jnp.zeros((1, image_size, image_size, channels), jnp.float32)
  return FeatureNet(num_classes).init(key, x)["params"]


def param_count(params: PyTree) -> int:
  return int(sum(np.size(p) for p in jax.tree.leaves(params)))


def features_fn(params: PyTree, images: jax.Array) -> jax.Array:
  """Pure features of `images` `(N, S, S, C)` in [0, 1]: `(N, FEATURE_DIM)` float32.

  jit-able and usable inside other jitted functions (the classifier head's
  width does not matter here, so any FeatureNet's params work).
  """
  return FeatureNet().apply({"params": params}, images, method=FeatureNet.features)


def logits_fn(params: PyTree, images: jax.Array) -> jax.Array:
  num_classes = params["head"]["bias"].shape[-1]
  return FeatureNet(num_classes).apply({"params": params}, images)


_features_jit = jax.jit(features_fn)


# ---------------------------------------------------------------------------
# Training.


def _flip(key: jax.Array, images: jax.Array) -> jax.Array:
  """Each image mirrored left-right with probability 1/2."""
  flip = jax.random.bernoulli(key, 0.5, (images.shape[0],))
  return jnp.where(flip[:, None, None, None], images[:, :, ::-1, :], images)


def _check_dataset(dataset: str, **source_options: Any) -> data.DatasetInfo:
  info = data.describe(dataset, **source_options)  # ValueError for unknown names
  if info.modality != "image":
    raise ValueError(f"dataset={dataset!r} holds {info.modality} data; Fréchet feature nets are "
                     "for image datasets.")
  if not info.has_labels or not info.num_classes:
    raise ValueError(f"dataset={dataset!r} has no class labels: a Fréchet feature net is a "
                     "classifier trained on labels.")
  return info


def train(dataset: str, *, steps: int, batch_size: int = 256, learning_rate: float = 1e-3,
          seed: int = 0, log: Callable[[str], Any] = print,
          **source_options: Any) -> tuple[PyTree, dict[str, Any]]:
  """Trains a FeatureNet classifier on `dataset`'s train split; returns `(params, info)`.

  Adam at a constant `learning_rate`, softmax cross-entropy, batches from
  `data.create_train_loader(epoch_end='continue')`, random horizontal flips
  (the only augmentation, drawn from `fold_in(key(seed), step)`). Then
  top-1 accuracy over the whole test split (`data.create_eval_loader`, its
  `valid` mask respected). `source_options` (`image_size`, `data_dir`,
  `download`, `idx_dir`, `num_records`, `shapes_seed`, `prepared_dir`) open
  both splits. `log` gets a header, a progress line every ~10 % of the steps
  and the test accuracy.

  `info` holds dataset, image_size, channels, num_classes, feature_dim,
  num_params, test_accuracy, test_records, final_loss, steps, batch_size,
  learning_rate and seed (`save` adds the rest).
  """
  if steps < 1:
    raise ValueError(f"steps must be >= 1, got {steps}.")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
  if not learning_rate > 0:
    raise ValueError(f"learning_rate must be > 0, got {learning_rate}.")
  info = _check_dataset(dataset, **source_options)
  num_classes = int(info.num_classes)
  image_size = int(source_options.get("image_size") or info.image_size)
  source_options = {**source_options, "image_size": image_size}
  loader = data.create_train_loader(dataset, batch_size=batch_size, seed=seed,
                                    epoch_end="continue", stop_step=steps, **source_options)

  key = jax.random.key(seed)
  init_key, flip_key = jax.random.split(key)
  params = init_params(init_key, image_size=image_size, channels=info.channels,
                       num_classes=num_classes)
  optimizer = optax.adam(learning_rate)
  opt_state = optimizer.init(params)
  num_params = param_count(params)
  log(f"Fréchet feature net (not Inception): {dataset} {image_size}x{image_size}x{info.channels}, "
      f"{num_classes} classes, {num_params:,} params; {steps} steps of batch {batch_size}, "
      f"Adam {learning_rate:g}, seed {seed}")

  def loss_fn(p, images, labels):
    logits = logits_fn(p, images)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  @jax.jit
  def train_step(p, state, images, labels, step_key):
    images = _flip(step_key, images)
    loss, grads = jax.value_and_grad(loss_fn)(p, images, labels)
    updates, state = optimizer.update(grads, state, p)
    return optax.apply_updates(p, updates), state, loss

  every = max(1, steps // 10)
  losses = []
  start, seen = time.perf_counter(), 0
  final_loss = float("nan")
  for step, batch in enumerate(loader):
    images = jnp.asarray(batch["image"])
    if images.shape[-1] != info.channels:
      raise ValueError(f"{dataset}: batches have {images.shape[-1]} channels, the registry says "
                       f"{info.channels}.")
    params, opt_state, loss = train_step(params, opt_state, images,
                                         jnp.asarray(batch["label"], jnp.int32),
                                         jax.random.fold_in(flip_key, step))
    losses.append(loss)
    seen += images.shape[0]
    if (step + 1) % every == 0 or step + 1 == steps:
      final_loss = float(jnp.mean(jnp.stack(losses)))
      if not np.isfinite(final_loss):
        raise FloatingPointError(f"step {step + 1}: the loss is {final_loss}.")
      elapsed = time.perf_counter() - start
      log(f"step {step + 1}/{steps}: loss {final_loss:.4f}, {seen / max(elapsed, 1e-9):,.0f} images/s")
      losses, start, seen = [], time.perf_counter(), 0

  accuracy, records = evaluate_accuracy(params, dataset, batch_size=batch_size, **source_options)
  log(f"test accuracy {accuracy:.4f} over {records} {dataset} test images "
      f"(chance {1 / num_classes:.4f})")
  return params, {
      "dataset": dataset, "image_size": image_size, "channels": int(info.channels),
      "num_classes": num_classes, "feature_dim": FEATURE_DIM, "num_params": num_params,
      "test_accuracy": accuracy, "test_records": records, "final_loss": final_loss,
      "steps": int(steps), "batch_size": int(batch_size), "learning_rate": float(learning_rate),
      "seed": int(seed)}


_predict = jax.jit(lambda params, images: jnp.argmax(logits_fn(params, images), axis=-1))


def evaluate_accuracy(params: PyTree, dataset: str, *, batch_size: int = 256,
                      split: str = "test", **source_options: Any) -> tuple[float, int]:
  """`(top-1 accuracy, records)` of the FeatureNet `params` over a whole split."""
  correct = total = 0
  for batch in data.create_eval_loader(dataset, split, batch_size=batch_size, **source_options):
    predicted = np.asarray(_predict(params, jnp.asarray(batch["image"])))
    valid = np.asarray(batch["valid"], bool)
    correct += int(np.sum((predicted == np.asarray(batch["label"]))[valid]))
    total += int(valid.sum())
  return correct / max(total, 1), total


# ---------------------------------------------------------------------------
# Shipped nets: save and load.


def _paths(dataset: str, folder: str) -> tuple[str, str]:
  return (os.path.join(folder, f"{dataset}.msgpack"), os.path.join(folder, f"{dataset}.json"))


def save(params: PyTree, info: dict[str, Any], dataset: str, folder: str = DEFAULT_DIR
         ) -> tuple[str, str]:
  """Writes `<dataset>.msgpack` and `<dataset>.json` in `folder` (each atomically); returns their paths.

  `info` is `train`'s, optionally with `command` (the command that made
  the net) and `data` (a free-text note on the data, e.g. "CIFAR-10 (JPEG
  q75)"; default the dataset name). The json adds the format version, the
  msgpack's sha256 and a note that this is no Inception network.
  """
  os.makedirs(folder, exist_ok=True)
  weights_path, json_path = _paths(dataset, folder)
  payload = weights.to_bytes(params)
  record = {
      "format": FORMAT,
      "dataset": dataset,
      "image_size": int(info["image_size"]),
      "channels": int(info["channels"]),
      "num_classes": int(info["num_classes"]),
      "feature_dim": int(info.get("feature_dim", FEATURE_DIM)),
      "num_params": param_count(params),
      "test_accuracy": float(info["test_accuracy"]),
      **{k: info[k] for k in ("test_records", "final_loss", "steps", "batch_size",
                              "learning_rate", "seed") if k in info},
      "command": info.get("command", ""),
      "data": info.get("data") or dataset,
      "weights": os.path.basename(weights_path),
      "sha256": weights.sha256(payload),
      "note": NOTE,
  }
  weights.write_atomic(weights_path, payload)
  weights.write_atomic(json_path, (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode())
  return weights_path, json_path


@dataclasses.dataclass(frozen=True)
class FeatureExtractor:
  """A loaded Fréchet feature net: `params`, its json `info`, and `features(images)`."""

  params: PyTree
  info: dict[str, Any]

  @property
  def feature_dim(self) -> int:
    return int(self.info["feature_dim"])

  def features(self, images: Any) -> jax.Array:
    """`(N, feature_dim)` float32 features of images `(N, S, S, C)` in [0, 1] (jitted)."""
    images = jnp.asarray(images)
    expected = (self.info["image_size"], self.info["image_size"], self.info["channels"])
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
      raise ValueError(f"{self.info['dataset']} feature net takes images (N, "
                       f"{', '.join(map(str, expected))}), got {tuple(images.shape)}.")
    return _features_jit(self.params, images)

  # For use inside other jitted functions: `FeatureExtractor.features_fn(extractor.params, x)`.
  features_fn = staticmethod(features_fn)


def load(dataset: str, *, image_size: int, channels: int, folder: str | None = None
         ) -> FeatureExtractor | None:
  """The shipped net for `dataset`, or None when there is none for this image size and channels.

  Raises ValueError (one line naming the file) for a damaged net: a json
  that does not parse or lacks fields, a missing msgpack, a sha256
  mismatch, weights that do not decode into a FeatureNet.
  """
  weights_path, json_path = _paths(dataset, DEFAULT_DIR if folder is None else folder)
  if not os.path.exists(json_path):
    if os.path.exists(weights_path):
      raise ValueError(f"{weights_path}: Fréchet feature net weights without their "
                       f"{os.path.basename(json_path)}; delete both or train again.")
    return None
  try:
    with open(json_path, "rb") as f:
      info = json.loads(f.read().decode("utf-8"))
    if not isinstance(info, dict):
      raise ValueError("not a JSON object")
    if info.get("format") != FORMAT:
      raise ValueError(f"format {info.get('format')!r}, expected {FORMAT!r}")
    size, chans = int(info["image_size"]), int(info["channels"])
    num_classes, feature_dim = int(info["num_classes"]), int(info["feature_dim"])
    digest = str(info["sha256"])
  except (OSError, ValueError, KeyError, TypeError) as err:
    raise ValueError(f"{json_path}: damaged Fréchet feature net description "
                     f"({type(err).__name__}: {err}).") from None
  if size != int(image_size) or chans != int(channels):
    return None
  template = jax.eval_shape(lambda: init_params(jax.random.key(0), image_size=size,
                                                channels=chans, num_classes=num_classes))

  def check(restored):
    del restored
    if feature_dim != FEATURE_DIM:
      raise ValueError(f"feature_dim {feature_dim}, this FeatureNet has {FEATURE_DIM}")

  params = weights.read_checked(weights_path, digest, template,
                                what="Fréchet feature net weights",
                                recorded_in=os.path.basename(json_path), check=check)
  return FeatureExtractor(params=params, info=info)


def reference_distances(net: FeatureExtractor, dataset: str, *, batch_size: int = 500,
                        **source_options: Any) -> dict[str, float]:
  """Fréchet distances that give a dataset's distances their scale, in `net`'s features.

  * `train_vs_test`: every 5th training image (spread over the split,
    whatever its order) against the whole test split: two samples of
    the same distribution, the floor a perfect model would reach;
  * `test_vs_half_resolution`: the test split against itself downsampled to
    half its side and back (bilinear): what losing the top octave of detail
    costs.
  """
  from leae_jax import metrics  # pylint: disable=g-import-not-at-top

  def features(images: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(net.features(images[i:i + batch_size]), np.float64)
                           for i in range(0, len(images), batch_size)])

  test, _ = data.load_arrays(dataset, "test", to_float=True, **source_options)
  count = len(data.get_source(dataset, "train", **source_options))
  train_images, _ = data.load_arrays(dataset, "train", indices=range(0, count, 5), to_float=True,
                                     **source_options)
  n, size = test.shape[0], test.shape[1]
  half = jax.image.resize(jnp.asarray(test), (n, size // 2, size // 2, test.shape[3]), "linear")
  blurred = np.asarray(jax.image.resize(half, test.shape, "linear"))
  test_features = features(test)
  return {"train_vs_test": metrics.frechet_distance(features(train_images), test_features),
          "test_vs_half_resolution": metrics.frechet_distance(test_features, features(blurred))}


# ---------------------------------------------------------------------------
# Command line.


def _define_flags():
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

  config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/cifar.py (its "
                                  "dataset, image_size and data options are used).",
                                  lock_config=True)
  flags.DEFINE_integer("steps", None, "Training steps.")
  flags.DEFINE_bool("references", False, "Instead of training: compute the shipped net's reference "
                    "distances (`reference_distances`) and add them to its json.")
  flags.DEFINE_integer("batch_size", 256, "Batch size.")
  flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
  flags.DEFINE_integer("seed", 0, "Seed of the init, the flips and the batch order.")
  flags.DEFINE_string("data_note", "", "Free-text note on the data, kept in the json "
                      "(e.g. \"CIFAR-10 (JPEG q75)\"); default the dataset name.")
  flags.DEFINE_string("out", DEFAULT_DIR, "Folder to write <dataset>.msgpack and .json to "
                      "(default: the package's shipped nets).")
  flags.mark_flags_as_required(["config"])
  return flags.FLAGS


def main(argv):
  del argv  # cli.run rejects positional arguments
  flags_ = FLAGS
  if flags_.references:
    _add_references(flags_.config, flags_.out)
    return
  if flags_.steps is None:
    raise cli.UserError("--steps is required (or --references).")
  if flags_.steps < 1:
    raise cli.UserError(f"--steps={flags_.steps} is not valid: it must be >= 1.")
  if flags_.batch_size < 1:
    raise cli.UserError(f"--batch_size={flags_.batch_size} is not valid: it must be >= 1.")
  if not flags_.learning_rate > 0:
    raise cli.UserError(f"--learning_rate={flags_.learning_rate} is not valid: it must be > 0.")
  if flags_.seed < 0:
    raise cli.UserError(f"--seed={flags_.seed} is not valid: it must be >= 0.")
  config = flags_.config  # its dataset and data fields; image_size -1: the data's own
  try:
    _check_dataset(config.dataset, **data.config_options(config))
  except ValueError as err:
    raise cli.UserError(err) from err
  out = cli.check_writable_dir(flags_.out, "--out")
  try:
    params, info = train(config.dataset, steps=flags_.steps, batch_size=flags_.batch_size,
                         learning_rate=flags_.learning_rate, seed=flags_.seed, log=print,
                         **data.config_options(config))
  except FloatingPointError as err:
    raise cli.UserError(f"{err} Lower --learning_rate.") from err
  info["command"] = shlex.join(["python", "-m", "leae_jax.frechet", *sys.argv[1:]])
  info["data"] = flags_.data_note or config.dataset
  try:
    weights_path, json_path = save(params, info, config.dataset, out)
  except OSError as err:
    raise cli.UserError(f"--out={out}: cannot write the net ({err.strerror or err}).") from err
  print(f"wrote {weights_path} and {json_path}")


def _add_references(config: Any, folder: str) -> None:
  """`--references`: the reference distances of `folder`'s net for the config's dataset."""
  options = data.config_options(config)
  info = data.describe(config.dataset, **options)
  try:
    net = load(config.dataset, image_size=options["image_size"] or info.image_size,
               channels=info.channels, folder=folder)
  except ValueError as err:
    raise cli.UserError(err) from err
  if net is None:
    raise cli.UserError(f"--out={folder} holds no Fréchet feature net for {config.dataset} at "
                        f"this size: train one first (--steps=N).")
  references = reference_distances(net, config.dataset, **options)
  _, json_path = _paths(config.dataset, folder)
  record = dict(net.info, references=references, references_command=shlex.join(
      ["python", "-m", "leae_jax.frechet", *sys.argv[1:]]))
  weights.write_atomic(json_path, (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode())
  print(json.dumps(references))


FLAGS = None

if __name__ == "__main__":
  FLAGS = _define_flags()
  cli.run(main, user_errors=(data.DatasetUnavailableError,))
