"""Trained models in a portable folder: `save` a run, `load` it in one line.

    model = pretrained.load("path/to/folder")      # or a shipped model's name (`names()`)
    codes = model.encode(images)                   # (N, S, S, C) floats in [0, 1] or uint8
    recon = model.reconstruct(images)

A folder holds, in the layout a model hub expects (publishing it is one
upload of the folder):

* `config.json`: the resolved config of the run (`base_config.from_saved`
  reads it back with today's defaults for any field it lacks), without the
  training machine's data locations (`LOCATION_FIELDS`; `model.json`'s
  `data` says what the data were);
* `model.msgpack`: `{'params': {'encoder', 'decoder'}, 'batch_stats'}` — the
  parameters and the code norm's running statistics — as Flax msgpack;
* `model.json`: the format, the versions that wrote it, the msgpack's
  sha256, the step, the parameter count, the test metrics and the commands
  that produced and measured them;
* `README.md`: the model card;
* `examples.msgpack` (optional): a few test images of the model's data with
  their labels (`Pretrained.examples`), so a notebook shows the model at work
  in seconds on a machine that has none of its data.

From a training run's workdir, on the command line:

    python -m leae_jax.pretrained --workdir=WORKDIR --out=FOLDER \
        [--step=N] [--metrics=eval_N.json] [--examples=16] [--data="..."]

Flax msgpack rather than safetensors: it is Flax's own serialisation (no
further dependency), restores the nested parameter tree exactly, and is what
the shipped Fréchet nets use; the sha256 in `model.json` catches a damaged
file, and a tree that is not the config's model is refused (`weights`).
Loading needs only CPU; the arrays go to JAX's default device.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import importlib.metadata
import json
import os
import subprocess
from typing import Any

from absl import flags
import jax
import ml_collections
import numpy as np

from leae_jax import base_config
from leae_jax import cli
from leae_jax import models
from leae_jax import weights

FORMAT = "leae_jax.pretrained/1"
#: Models shipped inside the package, one folder each (`names()`).
SHIPPED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained_models")
FILES = ("config.json", "model.msgpack", "model.json", "README.md")
#: The config's fields that locate the data on the machine that trained it; saved as None.
LOCATION_FIELDS = ("data_dir", "idx_dir", "prepared_dir")
EXAMPLES = "examples.msgpack"  # optional: a few test images (`save(examples=...)`)
#: The metrics a model card shows, where the evaluation measured them.
CARD_METRICS = ("psnr", "ssim", "spectral_power_b3", "frechet_distance", "saturation_ratio",
                "chroma_psnr", "probe_accuracy", "latent_effective_rank")

PyTree = Any


@dataclasses.dataclass(frozen=True)
class Pretrained:
  """A loaded model: its config, the Flax module, its variables and how it was made (`info`)."""

  config: ml_collections.ConfigDict
  model: Any
  variables: dict[str, PyTree]
  info: dict[str, Any]
  #: A few test images of the model's data, uint8 `(N, *input_shape)`, and their labels
  #: (`(N,)` int32), where the folder ships them; else None.
  examples: np.ndarray | None = None
  example_labels: np.ndarray | None = None

  def encode(self, images: jax.Array) -> jax.Array:
    """Images (floats in [0, 1], or uint8) → codes, with the running statistics (inference)."""
    return _encode(self.model, self.variables, images)

  def decode(self, codes: jax.Array) -> jax.Array:
    """Codes → images in [0, 1]."""
    return _decode(self.model, self.variables, codes)

  def reconstruct(self, images: jax.Array) -> jax.Array:
    return self.decode(self.encode(images))


# Jitted once per model (the module is a static, hashable argument): a notebook's
# repeated calls reuse the compiled function instead of tracing a new lambda each time.
@functools.partial(jax.jit, static_argnums=0)
def _encode(model, variables, images):
  return models.encode(model, variables["params"]["encoder"], variables["batch_stats"],
                       models.unit_range(images), train=False)[0]


@functools.partial(jax.jit, static_argnums=0)
def _decode(model, variables, codes):
  return models.decode(model, variables["params"]["decoder"], codes)


def names() -> list[str]:
  """The shipped models' names (folders of `SHIPPED_DIR`)."""
  if not os.path.isdir(SHIPPED_DIR):
    return []
  return sorted(n for n in os.listdir(SHIPPED_DIR)
                if os.path.exists(os.path.join(SHIPPED_DIR, n, "model.json")))


def _version() -> str:
  try:
    return importlib.metadata.version("leae_jax")
  except importlib.metadata.PackageNotFoundError:
    return "unknown"


def _commit() -> str:
  """The checkout's commit (with `+changes` when the package's code has uncommitted changes),
  or 'unknown'."""
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True,
                          text=True, timeout=10, check=True).stdout.strip()
    # Only the package's code counts (not results beside it, nor the model folders it writes).
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                            ":(exclude)pretrained_models"], cwd=here,
                           capture_output=True, text=True, timeout=10, check=True).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return "unknown"
  return head + ("+changes" if dirty else "")


def _describe_objective(config: ml_collections.ConfigDict) -> dict[str, Any]:
  from leae_jax import objectives  # pylint: disable=g-import-not-at-top  (only for saving)

  o, spec = config.objective, objectives.spec(config.objective.name)
  return {"objective": o.name, "judge": o.judge if spec.judged else None,
          "views": o.views if "views" in spec.reads else None,
          "sigreg_weight": float(o.sigreg_weight)}


def save(source: str | tuple[ml_collections.ConfigDict, Any], out_dir: str, *,
         step: int | None = None, metrics: dict[str, float] | None = None,
         metrics_command: str = "", train_command: str = "", data: str = "",
         examples: int | tuple[np.ndarray, np.ndarray] | None = None) -> str:
  """Writes the portable folder of a trained model; returns `out_dir`.

  Args:
    source: a training run's workdir (its newest checkpoint, or `step`), or
      `(config, state)`: a resolved config and a `train.TrainState`.
    out_dir: the folder to write (created; its four files are replaced).
    step: the workdir's checkpoint to save (default: the newest).
    metrics: test metrics to put on the model card (e.g. `evaluate`'s JSON).
    metrics_command: the command that measured `metrics`.
    train_command: the command that trained the run.
    data: a note on the data (e.g. "CIFAR-10 (JPEG q75) image folder").
    examples: a few test images stored as `examples.msgpack` (`Pretrained.examples`):
      a count N (the first N test images of the config's data, as its loaders read
      them) or `(images, labels)`, uint8 `(N, *input_shape)` and int `(N,)`.
  """
  if isinstance(source, str):
    from leae_jax import evaluate  # pylint: disable=g-import-not-at-top  (heavy; not for loading)
    from leae_jax import train  # pylint: disable=g-import-not-at-top

    config = evaluate.load_config(source)
    state = evaluate.restore_state(source, config, train.Trainer(config, trains=False), step)
  else:
    config, state = source
  if isinstance(examples, int):  # read while the config still says where the data are
    examples = _first_test_images(config, examples) if examples else None
  # Where the data lay is the training machine's business, not the model's: a folder that
  # names another machine's paths would send `evaluate` or a loader looking there.
  config = config.copy_and_resolve_references()
  with config.unlocked():
    for field in LOCATION_FIELDS:
      config[field] = None
  variables = {"params": jax.device_get(state.params),
               "batch_stats": jax.device_get(state.batch_stats)}
  payload = weights.to_bytes(variables)
  info = {
      "format": FORMAT,
      "leae_jax_version": _version(),
      "jax_version": jax.__version__,
      "commit": _commit(),
      "written": datetime.date.today().isoformat(),
      "step": int(jax.device_get(state.step)),
      "seed": int(config.seed),
      "dataset": config.dataset,
      "data": data or config.dataset,
      "modality": config.get("modality", "image"),
      "input_shape": list(_input_shape(config)),
      **_describe_objective(config),
      "num_params": models.count_params(variables["params"]),
      "metrics": {k: float(v) for k, v in (metrics or {}).items()},
      "metrics_command": metrics_command,
      "train_command": train_command,
      "weights": "model.msgpack",
      "sha256": weights.sha256(payload),
  }
  os.makedirs(out_dir, exist_ok=True)
  if examples is not None:
    info["examples"] = _write_examples(out_dir, *examples, shape=info["input_shape"])
  elif os.path.exists(os.path.join(out_dir, EXAMPLES)):
    os.remove(os.path.join(out_dir, EXAMPLES))  # a stale one would describe another model
  weights.write_atomic(os.path.join(out_dir, "model.msgpack"), payload)
  weights.write_atomic(os.path.join(out_dir, "config.json"),
                       (json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n").encode())
  weights.write_atomic(os.path.join(out_dir, "model.json"),
                       (json.dumps(info, indent=2, ensure_ascii=False) + "\n").encode())
  weights.write_atomic(os.path.join(out_dir, "README.md"), model_card(info).encode())
  return out_dir


def _first_test_images(config: ml_collections.ConfigDict, count: int
                       ) -> tuple[np.ndarray, np.ndarray]:
  """The first `count` test images of a run's data (uint8) and their labels."""
  from leae_jax import data  # pylint: disable=g-import-not-at-top  (only for saving)

  images, labels = data.load_arrays(config.dataset, "test", count, **data.config_options(config))
  if images.dtype != np.uint8:  # procedural data comes as floats in [0, 1]
    images = np.round(np.clip(images, 0, 1) * 255).astype(np.uint8)
  return images, labels


def _write_examples(out_dir: str, images: np.ndarray, labels: np.ndarray, *,
                    shape: list[int]) -> dict[str, Any]:
  """Writes `examples.msgpack`; returns its entry of `model.json`."""
  images, labels = np.asarray(images), np.asarray(labels, np.int32)
  if images.dtype != np.uint8 or list(images.shape[1:]) != list(shape):
    raise ValueError(f"examples: uint8 images of shape (N, {', '.join(map(str, shape))}) expected, "
                     f"got {images.dtype} {images.shape}.")
  if labels.shape != images.shape[:1]:
    raise ValueError(f"examples: {len(images)} images but labels of shape {labels.shape}.")
  payload = weights.to_bytes({"images": images, "labels": labels})
  weights.write_atomic(os.path.join(out_dir, EXAMPLES), payload)
  return {"file": EXAMPLES, "count": int(len(images)), "sha256": weights.sha256(payload),
          "what": "the first test images of the data, as the model's evaluation reads them"}


def _input_shape(config: ml_collections.ConfigDict) -> tuple[int, ...]:
  size, channels = int(config.image_size), int(config.image_channels)
  if config.get("modality", "image") == "sequence":
    return (size, channels)
  return (size, size, channels)


def model_card(info: dict[str, Any]) -> str:
  """The folder's README.md: what the model is, how it was trained and measured."""
  shape = "×".join(str(d) for d in info["input_shape"])
  method = info["objective"] + (f", {info['judge']} judge" if info.get("judge") else "") + (
      f", views `{info['views']}`" if info.get("views") else "")
  lines = [
      f"# leae_jax model: {info['data']}, {info['objective']}",
      "",
      f"A `leae_jax` autoencoder ({info['num_params']:,} parameters, input {shape}) trained on "
      f"{info['data']} with the objective {method} (SIGReg weight {info['sigreg_weight']}), "
      f"seed {info['seed']}, {info['step']} steps; written by leae_jax {info['leae_jax_version']} "
      f"at commit `{info['commit']}` on {info['written']}.",
      "",
      "```python",
      "from leae_jax import pretrained",
      "model = pretrained.load(\"<this folder>\")  # or its shipped name",
      "recon = model.reconstruct(images)  # (N, ...) floats in [0, 1] or uint8",
      "```",
      "",
  ]
  if info.get("train_command"):
    lines += ["Trained by:", "", "```bash", info["train_command"], "```", ""]
  if info.get("metrics"):
    lines += ["| test metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4g} |" for k, v in sorted(info["metrics"].items())]
    lines += [""]
    if info.get("metrics_command"):
      lines += ["Measured by:", "", "```bash", info["metrics_command"], "```", ""]
  lines += ["Files: `config.json` (the resolved config), `model.msgpack` (parameters and the code "
            "norm's running statistics, Flax msgpack), `model.json` (format, versions, sha256, "
            "metrics)" + (f", `{EXAMPLES}` ({info['examples']['count']} test images and their "
                          "labels: `model.examples`, `model.example_labels`)"
                          if info.get("examples") else "") + ".", ""]
  return "\n".join(lines)


def _folder(name_or_dir: str) -> str:
  if os.path.isdir(name_or_dir):
    return name_or_dir
  shipped = os.path.join(SHIPPED_DIR, name_or_dir)
  if os.sep not in name_or_dir and os.path.isdir(shipped):
    return shipped
  valid = ", ".join(names()) or "none shipped"
  raise ValueError(f"{name_or_dir}: no such model folder, and not a shipped model's name "
                   f"(shipped: {valid}).")


def load(name_or_dir: str) -> Pretrained:
  """A saved model folder (or a shipped model's name) as a `Pretrained`.

  Raises ValueError, one line naming the file, for a missing folder or file, a
  folder of another format, or damaged weights.
  """
  folder = _folder(name_or_dir)
  json_path = os.path.join(folder, "model.json")
  try:
    with open(json_path, encoding="utf-8") as f:
      info = json.load(f)
    if not isinstance(info, dict):
      raise ValueError("not a JSON object")
    if info.get("format") != FORMAT:
      raise ValueError(f"format {info.get('format')!r}; this leae_jax reads {FORMAT!r}")
    digest = str(info["sha256"])
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
      config = base_config.from_saved(json.load(f))
  except FileNotFoundError as err:
    raise ValueError(f"{folder}: not a saved model folder ({os.path.basename(err.filename)} is "
                     f"missing; {', '.join(FILES)} are written by pretrained.save).") from None
  except (OSError, ValueError, KeyError, TypeError) as err:
    raise ValueError(f"{json_path}: not a model this leae_jax can load "
                     f"({type(err).__name__}: {err}).") from None
  from leae_jax import modalities  # pylint: disable=g-import-not-at-top

  model = modalities.get(config.get("modality", "image")).create_model(
      config.model, int(config.image_size), int(config.image_channels))
  template = jax.eval_shape(lambda: models.init_variables(model, jax.random.key(0)))
  variables = weights.read_checked(os.path.join(folder, "model.msgpack"), digest,
                                   {"params": template["params"],
                                    "batch_stats": template["batch_stats"]},
                                   what=f"weights of this {config.dataset} model",
                                   recorded_in="model.json")
  examples = labels = None
  if info.get("examples"):
    entry = info["examples"]
    count, shape = int(entry["count"]), tuple(info["input_shape"])
    stored = weights.read_checked(
        os.path.join(folder, entry["file"]), str(entry["sha256"]),
        {"images": jax.ShapeDtypeStruct((count, *shape), np.uint8),
         "labels": jax.ShapeDtypeStruct((count,), np.int32)},
        what="example images", recorded_in="model.json")
    examples, labels = np.asarray(stored["images"]), np.asarray(stored["labels"])
  return Pretrained(config=config, model=model, variables=variables, info=info,
                    examples=examples, example_labels=labels)


FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("workdir", None, "The training run's workdir.")
  flags.DEFINE_string("out", None, "The model folder to write.")
  flags.DEFINE_integer("step", None, "The checkpoint to save (default: the newest).")
  flags.DEFINE_string("metrics", None, "A JSON of test metrics for the card: `evaluate`'s "
                      "eval_<step>.json or a ladder result (default: <workdir>/eval_<step>.json "
                      "if it exists).")
  flags.DEFINE_string("metrics_command", "", "The command that measured --metrics.")
  flags.DEFINE_string("train_command", "", "The command that trained the run.")
  flags.DEFINE_string("data", "", "A note on the data for the card (default: the dataset's name).")
  flags.DEFINE_integer("examples", 16, "Test images to store in the folder (0: none).")
  flags.mark_flags_as_required(["workdir", "out"])


def _card_metrics(path: str, step: int) -> dict[str, float]:
  try:
    with open(path, encoding="utf-8") as f:
      measured = json.load(f)
    found = {k: float(measured[k]) for k in CARD_METRICS if k in measured}
    measured_step = int(measured.get("step", step))
  except (OSError, ValueError, TypeError, AttributeError) as err:
    raise cli.UserError(f"--metrics={path}: not a JSON of metrics ({cli.first_line(err)}).") from err
  if not found:
    raise cli.UserError(f"--metrics={path}: holds none of {', '.join(CARD_METRICS)}.")
  if measured_step != step:
    raise cli.UserError(f"--metrics={path}: measured step {measured['step']}, but the saved "
                        f"checkpoint is step {step}.")
  return found


def main(argv):
  """`python -m leae_jax.pretrained`: a workdir's checkpoint as a model folder."""
  del argv  # cli.run rejects positional arguments
  # Training's modules only here: loading a model stays light.
  from leae_jax import evaluate  # pylint: disable=g-import-not-at-top
  from leae_jax import train  # pylint: disable=g-import-not-at-top

  if FLAGS.examples < 0:
    raise cli.UserError(f"--examples={FLAGS.examples} is not valid: it must be >= 0.")

  try:
    config = evaluate.load_config(FLAGS.workdir)
    state = evaluate.restore_state(FLAGS.workdir, config, train.Trainer(config, trains=False),
                                   FLAGS.step)
  except (FileNotFoundError, ValueError) as err:  # no run, no such step, a config it cannot use
    raise cli.UserError(err) from err
  step = int(jax.device_get(state.step))
  metrics_path = FLAGS.metrics or os.path.join(FLAGS.workdir, f"eval_{step}.json")
  card = (_card_metrics(metrics_path, step)
          if FLAGS.metrics or os.path.exists(metrics_path) else None)
  out = cli.check_writable_dir(FLAGS.out, "--out")
  save((config, state), out, metrics=card, data=FLAGS.data,
       metrics_command=FLAGS.metrics_command if card else "",
       train_command=FLAGS.train_command, examples=FLAGS.examples)
  print(f"saved step {step} of {FLAGS.workdir} into {out}"
        + (f" ({len(card)} metrics on its card)" if card else " (no metrics: none measured)"))


if __name__ == "__main__":
  define_flags()
  from leae_jax import train as _train  # pylint: disable=g-import-not-at-top

  cli.run(main, config_flags=(), user_errors=_train.USER_ERRORS)
