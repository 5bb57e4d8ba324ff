"""Command line: reconstruct your own images with a trained model.

    python -m leae_jax.reconstruct --model=NAME_OR_DIR --images=FILE_OR_DIR --out=DIR

`--model` is a folder written by `pretrained.save` or a shipped model's name
(`pretrained.names()`). Each image (`.jpg`, `.jpeg`, `.png`, any case; a
folder's files in name order) is fitted to the model's input as evaluation
would see a photo: its **central square** is cropped and **resized** (Pillow,
bicubic with antialiasing) to the model's side, and converted to its channels
(RGB or grey). `DIR` then holds, per image, `<name>.png`: input |
reconstruction, and for a masked model (`masked_self_teaching`,
`masked_mse`) also | masked input | masked reconstruction (a square hole of
`--mask` of the area, default the model's evaluation ratio, filled with the
image's mean, as in training); and `reconstruct.json` with each image's PSNR
(and the PSNR of the masked reconstruction and inside the hole).
"""

from __future__ import annotations

import json
import os

from absl import flags
import jax
import numpy as np

from leae_jax import cli

FLAGS = flags.FLAGS
EXTENSIONS = (".jpg", ".jpeg", ".png")


def define_flags() -> None:
  flags.DEFINE_string("model", None, "A saved model folder or a shipped model's name.")
  flags.DEFINE_string("images", None, "An image file, or a folder of images (.jpg, .jpeg, .png).")
  flags.DEFINE_string("out", None, "Folder for the side-by-side PNGs and reconstruct.json.")
  flags.DEFINE_float("mask", None, "Masked models: the hole's area ratio (default: the model's "
                     "evaluation ratio). Refused for other models.")
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


def main(argv):
  del argv  # cli.run rejects positional arguments
  from PIL import Image  # pylint: disable=g-import-not-at-top

  from leae_jax import objectives  # pylint: disable=g-import-not-at-top
  from leae_jax import pretrained  # pylint: disable=g-import-not-at-top

  if FLAGS.scale < 1:
    raise cli.UserError(f"--scale={FLAGS.scale} is not valid: it must be >= 1.")
  files = image_files(FLAGS.images)
  try:
    model = pretrained.load(FLAGS.model)
  except ValueError as err:
    raise cli.UserError(f"--model={FLAGS.model}: {err}") from err
  masked = objectives.spec(model.config.objective.name).masked
  if FLAGS.mask is not None and not masked:
    raise cli.UserError(f"--mask={FLAGS.mask}: this model ({model.config.objective.name}) was not "
                        "trained to inpaint; --mask applies to masked_self_teaching and masked_mse "
                        "models.")
  ratio = None
  if masked:
    ratio = float(model.config.objective.eval_mask_ratio if FLAGS.mask is None else FLAGS.mask)
    if not 0.0 < ratio < 1.0:
      raise cli.UserError(f"--mask={FLAGS.mask} is not valid: the hole's area ratio must be in "
                          "(0, 1).")
  shape = model.model.input_shape
  if len(shape) != 3:
    raise cli.UserError(f"--model={FLAGS.model} reconstructs series, not images.")
  images = np.stack([fit(f, shape[0], shape[2]) for f in files])
  out = cli.check_writable_dir(FLAGS.out, "--out")
  result = reconstruct(model, images, mask=ratio, seed=FLAGS.seed)
  rows = ["images", "reconstruction"] + (["masked_input", "masked_reconstruction"] if masked else [])
  report = []
  for i, path in enumerate(files):
    name = os.path.splitext(os.path.basename(path))[0]
    picture = _picture([result[r][i] for r in rows], FLAGS.scale)
    Image.fromarray(picture.squeeze(-1) if picture.shape[-1] == 1 else picture).save(
        os.path.join(out, f"{name}.png"))
    entry = {"image": path, "picture": f"{name}.png", "psnr": float(result["psnr"][i])}
    if masked:
      entry.update(masked_psnr=float(result["masked_psnr"][i]),
                   hole_psnr=float(result["hole_psnr"][i]))
    report.append(entry)
  summary = {"model": FLAGS.model, "fit": "central square, bicubic resize", "side": shape[0],
             "mask_ratio": ratio, "images": report,
             "mean_psnr": float(np.mean(result["psnr"]))}
  with open(os.path.join(out, "reconstruct.json"), "w") as f:
    json.dump(summary, f, indent=1)
  print(f"reconstructed {len(files)} image(s) into {out} (mean PSNR "
        f"{summary['mean_psnr']:.2f} dB at {shape[0]} px)")


if __name__ == "__main__":
  define_flags()
  cli.run(main, config_flags=())
