"""Command line: reconstruct your own images with a trained model.

    python -m leae_jax.reconstruct --model=NAME_OR_DIR[,NAME_OR_DIR...] --images=FILE_OR_DIR --out=DIR

`--model` is a folder written by `pretrained.save` or a shipped model's name
(`pretrained.names()`), or several (same input size) to see them side by
side. Each image (`.jpg`, `.jpeg`, `.png`, any case; a folder's files in name
order) is fitted to the models' input as evaluation would see a photo: its
**central square** is cropped and **resized** (Pillow, bicubic with
antialiasing) to the model's side, and converted to its channels (RGB or
grey). `DIR` then holds, per image, `<name>.png`: input | each model's
reconstruction, for a masked model (`masked_self_teaching`, `masked_mse`)
followed by | masked input | masked reconstruction (a square hole of `--mask`
of the area, default the model's evaluation ratio, filled with the image's
mean, as in training); `sheet.png`, every image's row one under another; and
`reconstruct.json` with the columns and each image's PSNR per model (and the
PSNR of the masked reconstruction and inside the hole).
"""

from __future__ import annotations

import json
import os
from typing import Any

from absl import flags
import jax
import numpy as np

from leae_jax import cli

FLAGS = flags.FLAGS
EXTENSIONS = (".jpg", ".jpeg", ".png")


def define_flags() -> None:
  flags.DEFINE_list("model", None, "A saved model folder or a shipped model's name; several "
                    "(comma-separated, same input size) are shown side by side, in order.")
  flags.DEFINE_string("images", None, "An image file, or a folder of images (.jpg, .jpeg, .png).")
  flags.DEFINE_string("out", None, "Folder for the side-by-side PNGs and reconstruct.json.")
  flags.DEFINE_float("mask", None, "Masked models: the hole's area ratio (default: each model's "
                     "evaluation ratio). Refused where no model is masked.")
  flags.DEFINE_integer("scale", 4, "Each picture's pixels drawn as scale×scale blocks.")
  flags.DEFINE_integer("seed", 0, "Where the holes fall (masked models).")
  flags.mark_flags_as_required(["model", "images", "out"])


def image_files(path: str) -> list[str]:
  """The image files `path` names: itself, or a folder's images in name order."""
  if os.path.isfile(path):
    return [path]
  if not os.path.isdir(path):
    raise cli.UserError(f"--images={path}: no such file or folder.")
  found = sorted(os.path.join(path, n) for n in os.listdir(path)
                 if n.lower().endswith(EXTENSIONS) and not n.startswith("."))
  if not found:
    raise cli.UserError(f"--images={path}: the folder holds no {', '.join(EXTENSIONS)} files.")
  return found


def fit(path: str, size: int, channels: int) -> np.ndarray:
  """An image file as `(size, size, channels)` floats in [0, 1]: central square, resized."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  try:
    with Image.open(path) as image:
      image = image.convert("RGB" if channels == 3 else "L")
      w, h = image.size
      side = min(w, h)
      left, top = (w - side) // 2, (h - side) // 2
      image = image.crop((left, top, left + side, top + side)).resize(
          (size, size), Image.Resampling.BICUBIC)
      pixels = np.asarray(image, np.float32) / 255.0
  except (OSError, ValueError) as err:
    raise cli.UserError(f"{path} cannot be read as an image ({cli.first_line(err)}).") from err
  return pixels[:, :, None] if pixels.ndim == 2 else pixels


def reconstruct(model, images: np.ndarray, *, mask: float | None, seed: int
                ) -> dict[str, np.ndarray]:
  """Rows of the picture and per-image metrics for `images` `(N, S, S, C)` in [0, 1]."""
  from leae_jax import metrics  # pylint: disable=g-import-not-at-top
  from leae_jax import views  # pylint: disable=g-import-not-at-top

  recon = np.asarray(model.reconstruct(images))
  out = {"images": images, "reconstruction": recon,
         "psnr": np.asarray(metrics.per_image_psnr(recon, images))}
  if mask is not None:
    hole_view = views.get_view("inpaint", mask_ratio=mask)
    params = hole_view.sample(jax.random.key(seed), images.shape)
    masked = np.asarray(hole_view.transform(params, images))
    masked_recon = np.asarray(model.reconstruct(masked))
    out.update(masked_input=masked, masked_reconstruction=masked_recon,
               masked_psnr=np.asarray(metrics.per_image_psnr(masked_recon, images)),
               hole_psnr=np.asarray(metrics.per_image_psnr(masked_recon, images, params["hole"])))
  return out


def _picture(rows: list[np.ndarray], scale: int) -> np.ndarray:
  """One image's panels side by side, 2 px white gaps, each pixel a `scale`×`scale` block."""
  panels = [np.repeat(np.repeat(np.clip(r, 0, 1), scale, 0), scale, 1) for r in rows]
  gap = np.ones((panels[0].shape[0], 2, panels[0].shape[2]), np.float32)
  joined = [panels[0]]
  for p in panels[1:]:
    joined += [gap, p]
  return (np.concatenate(joined, axis=1) * 255).round().astype(np.uint8)


def _load(names: list[str], mask: float | None) -> list[tuple[str, Any, float | None]]:
  """`(name, model, hole ratio or None)` per `--model`; checks they can share one picture."""
  from leae_jax import objectives  # pylint: disable=g-import-not-at-top
  from leae_jax import pretrained  # pylint: disable=g-import-not-at-top

  loaded = []
  for name in names:
    try:
      model = pretrained.load(name)
    except ValueError as err:
      raise cli.UserError(f"--model={name}: {err}") from err
    if len(model.model.input_shape) != 3:
      raise cli.UserError(f"--model={name} reconstructs series, not images.")
    ratio = None
    if objectives.spec(model.config.objective.name).masked:
      ratio = float(model.config.objective.eval_mask_ratio if mask is None else mask)
      if not 0.0 < ratio < 1.0:
        raise cli.UserError(f"--mask={mask} is not valid: the hole's area ratio must be in (0, 1).")
    loaded.append((name, model, ratio))
  if mask is not None and all(ratio is None for _, _, ratio in loaded):
    which = (f"this model ({loaded[0][1].config.objective.name}) was not trained to inpaint"
             if len(loaded) == 1 else "none of these models was trained to inpaint")
    raise cli.UserError(f"--mask={mask}: {which}; --mask applies to masked_self_teaching and "
                        "masked_mse models.")
  shapes = {name: tuple(model.model.input_shape) for name, model, _ in loaded}
  if len(set(shapes.values())) > 1:
    listed = ", ".join(f"{n} {'×'.join(map(str, s))}" for n, s in shapes.items())
    raise cli.UserError(f"--model={','.join(names)}: models shown side by side must take the "
                        f"same input; these take {listed}.")
  return loaded


def main(argv):
  del argv  # cli.run rejects positional arguments
  from PIL import Image  # pylint: disable=g-import-not-at-top

  if FLAGS.scale < 1:
    raise cli.UserError(f"--scale={FLAGS.scale} is not valid: it must be >= 1.")
  if not FLAGS.model:
    raise cli.UserError("--model is empty: name one or more saved model folders or shipped models.")
  files = image_files(FLAGS.images)
  loaded = _load(FLAGS.model, FLAGS.mask)
  shape = loaded[0][1].model.input_shape
  images = np.stack([fit(f, shape[0], shape[2]) for f in files])
  out = cli.check_writable_dir(FLAGS.out, "--out")
  results = {name: reconstruct(model, images, mask=ratio, seed=FLAGS.seed)
             for name, model, ratio in loaded}
  report, pictures = [], []
  for i, path in enumerate(files):
    name = os.path.splitext(os.path.basename(path))[0]
    panels = [images[i]]
    entry: dict[str, Any] = {"image": path, "picture": f"{name}.png", "psnr": {}}
    for model_name, _, ratio in loaded:
      result = results[model_name]
      panels.append(result["reconstruction"][i])
      entry["psnr"][model_name] = float(result["psnr"][i])
      if ratio is not None:
        panels += [result["masked_input"][i], result["masked_reconstruction"][i]]
        entry.setdefault("masked_psnr", {})[model_name] = float(result["masked_psnr"][i])
        entry.setdefault("hole_psnr", {})[model_name] = float(result["hole_psnr"][i])
    picture = _picture(panels, FLAGS.scale)
    pictures.append(picture)
    Image.fromarray(picture.squeeze(-1) if picture.shape[-1] == 1 else picture).save(
        os.path.join(out, f"{name}.png"))
    report.append(entry)
  if len(pictures) > 1:  # every image's row, one under another
    gap = np.full((2, *pictures[0].shape[1:]), 255, np.uint8)
    sheet = np.concatenate([p for picture in pictures for p in (picture, gap)][:-1])
    Image.fromarray(sheet.squeeze(-1) if sheet.shape[-1] == 1 else sheet).save(
        os.path.join(out, "sheet.png"))
  means = {n: float(np.mean(results[n]["psnr"])) for n, _, _ in loaded}
  summary = {"models": [n for n, _, _ in loaded],
             "columns": ["input"] + [c for n, _, ratio in loaded for c in (
                 [n] if ratio is None else [n, f"{n} masked input", f"{n} masked"])],
             "fit": "central square, bicubic resize", "side": shape[0],
             "mask_ratio": {n: ratio for n, _, ratio in loaded if ratio is not None} or None,
             "images": report, "mean_psnr": means}
  with open(os.path.join(out, "reconstruct.json"), "w") as f:
    json.dump(summary, f, indent=1)
  listed = ", ".join(f"{n} {v:.2f} dB" for n, v in means.items())
  print(f"reconstructed {len(files)} image(s) into {out} (mean PSNR at {shape[0]} px: {listed})")


if __name__ == "__main__":
  define_flags()
  cli.run(main, config_flags=())
