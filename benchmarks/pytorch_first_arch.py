"""PyTorch twin of the first architecture and of the toy train loss (`configs/shapes.py`), run by hand.

  /tmp/torchenv/bin/python benchmarks/pytorch_first_arch.py [--batch_size=16]

A PyTorch module of the reference's first architecture (commit 5149a49),
written here from its description in `docs/fidelity.md` (row 24), not copied:

  stem     Conv2d(C, h, 4, stride 2, padding 1) + SiLU
  down     2 x [Conv2d(3, s2, p1) + SiLU + Conv2d(3, p1)] + skip, SiLU of the sum;
           skip = pixel_unshuffle(2) of the input (odd sides zero-padded at the
           bottom / right), consecutive channel groups averaged down to the width
  norm     BatchNorm1d over the code flattened channel-major (c·4·4 features)
  up       2 x [ConvTranspose2d(4, s2, p1) + SiLU + Conv2d(3, p1)] + skip, SiLU of the sum;
           skip = pixel_shuffle(2), channels repeated as a block (`Tensor.repeat`)
  head     ConvTranspose2d(h, C, 4, s2, p1) + Sigmoid, then
           F.interpolate(bilinear, align_corners=False) to the image side

and the toy's loss (reference `main.py` at 5149a49), from its definition:

  z = E(x); x̂ = D(z); m = pixel mask (0.7)
  m_z = E(m·x); r_z = E(m·x̂)        (all three encodes in training mode, in this order)
  loss = MSE(flat(m_z), flat(r_z)) + 0.1 · (SIGReg(flat(m_z)) + SIGReg(flat(r_z)))

with SIGReg the sliced Epps–Pulley statistic over 256 directions of the
flattened 256-dimensional codes. The Flax model is built from
`configs/shapes.py` by `leae_jax` itself; its initial parameters are copied
into the twin, which then gets the same images, mask and SIGReg directions.
Printed (one JSON object; exit 1 on a mismatch beyond float32 rounding): the
parameter counts, the max abs differences of the training- and eval-mode
codes and reconstructions, the running statistics after a forward, the loss
and its parts, every gradient, and the running statistics after the loss's
three encodes. Needs jax and leae_jax importable (the torch venv is made with
--system-site-packages).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

NUM_PARAMS = 163_969  # hidden 32, latent 16, 1 channel (docs/fidelity.md row 24)
# float32 rounding; gradient tensors that nearly cancel (a bias before the
# code norm) are relatively noisier, hence a relative bound of 1e-3.
TOLERANCE = dict(code=1e-4, image=1e-5, stats=1e-5, loss=1e-5, grad_abs=1e-5, grad_rel=1e-3)

# ---------------------------------------------------------------------------
# The twin (NCHW). Attribute names mirror the Flax module names so that
# `encoder.down_0.Conv_1.weight` <-> params['encoder']['down_0']['Conv_1']['kernel'].


class DownBlock(nn.Module):
  def __init__(self, cin: int, cout: int):
    super().__init__()
    self.cout = cout
    self.Conv_0 = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
    self.Conv_1 = nn.Conv2d(cout, cout, 3, padding=1)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    h = self.Conv_1(F.silu(self.Conv_0(x)))
    s = F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))  # (left, right, top, bottom)
    s = F.pixel_unshuffle(s, 2)
    n, c, hh, ww = s.shape
    s = s.reshape(n, self.cout, c // self.cout, hh, ww).mean(dim=2)
    return F.silu(h + s)


class UpBlock(nn.Module):
  def __init__(self, cin: int, cout: int):
    super().__init__()
    self.cout = cout
    self.ConvTranspose_0 = nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)
    self.Conv_0 = nn.Conv2d(cout, cout, 3, padding=1)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    h = self.Conv_0(F.silu(self.ConvTranspose_0(x)))
    s = F.pixel_shuffle(x, 2)
    return F.silu(h + s.repeat(1, self.cout // s.shape[1], 1, 1))


class Encoder(nn.Module):
  def __init__(self, channels: int, hidden: int, latent: int, grid: int):
    super().__init__()
    self.latent, self.grid = latent, grid
    self.stem = nn.Conv2d(channels, hidden, 4, stride=2, padding=1)
    self.down_0 = DownBlock(hidden, 2 * hidden)
    self.down_1 = DownBlock(2 * hidden, latent)
    self.code_norm = nn.BatchNorm1d(latent * grid * grid)  # momentum 0.1, eps 1e-5

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    z = self.down_1(self.down_0(F.silu(self.stem(x))))
    return self.code_norm(z.flatten(1)).view(len(x), self.latent, self.grid, self.grid)


class Decoder(nn.Module):
  def __init__(self, channels: int, hidden: int, latent: int, size: int):
    super().__init__()
    self.size = size
    self.up_0 = UpBlock(latent, 2 * hidden)
    self.up_1 = UpBlock(2 * hidden, hidden)
    self.to_image = nn.ConvTranspose2d(hidden, channels, 4, stride=2, padding=1)

  def forward(self, z: torch.Tensor) -> torch.Tensor:
    x = torch.sigmoid(self.to_image(self.up_1(self.up_0(z))))
    if x.shape[-1] != self.size:
      x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
    return x


class Autoencoder(nn.Module):
  def __init__(self, channels: int = 1, hidden: int = 32, latent: int = 16, size: int = 28,
               grid: int = 4):
    super().__init__()
    self.encoder = Encoder(channels, hidden, latent, grid)
    self.decoder = Decoder(channels, hidden, latent, size)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.decoder(self.encoder(x))


def sigreg(flat: torch.Tensor, directions: torch.Tensor, knots: int = 17, t_max: float = 3.0) -> torch.Tensor:
  """Sliced Epps–Pulley statistic of `(N, D)` codes along `(D, K)` unit directions."""
  t = torch.linspace(0, t_max, knots)
  phi = torch.exp(-t.square() / 2)
  w = torch.full((knots,), 2 * t_max / (knots - 1))
  w[[0, -1]] = t_max / (knots - 1)
  xt = (flat @ directions).unsqueeze(-1) * t  # (N, K, knots)
  err = (xt.cos().mean(0) - phi).square() + xt.sin().mean(0).square()
  return ((err @ (w * phi)) * flat.shape[0]).mean()


def toy_loss(model: Autoencoder, x: torch.Tensor, keep: torch.Tensor, dirs: list[torch.Tensor],
             weight: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
  z = model.encoder(x)
  recon = model.decoder(z)
  m_z = model.encoder(x * keep).flatten(1)
  r_z = model.encoder(recon * keep).flatten(1)
  agree = F.mse_loss(m_z, r_z)
  sig = sigreg(m_z, dirs[0]) + sigreg(r_z, dirs[1])
  return agree + weight * sig, dict(latent_agreement=agree.detach(), sigreg=sig.detach())


# ---------------------------------------------------------------------------
# Flax <-> torch parameters.


def _flax_path(name: str) -> tuple[str, ...]:
  *path, leaf = name.split(".")
  leaf = {"weight": "scale" if path[-1] == "code_norm" else "kernel",
          "running_mean": "mean", "running_var": "var"}.get(leaf, leaf)
  return (*path, leaf)


def _get(tree, path):
  for k in path:
    tree = tree[k]
  return np.asarray(tree)


def to_torch_layout(a: np.ndarray) -> np.ndarray:
  # Conv: flax (kh, kw, in, out) -> torch (out, in, kh, kw). ConvTranspose with
  # transpose_kernel: flax (kh, kw, out, in) -> torch (in, out, kh, kw). Same permutation.
  return a.transpose(3, 2, 0, 1) if a.ndim == 4 else a


def to_flax_layout(a: np.ndarray) -> np.ndarray:
  return a.transpose(2, 3, 1, 0) if a.ndim == 4 else a


def load_flax(model: Autoencoder, params, batch_stats) -> None:
  with torch.no_grad():
    for name, p in model.named_parameters():
      p.copy_(torch.from_numpy(np.array(to_torch_layout(_get(params, _flax_path(name))))))
    for name, b in model.named_buffers():
      if not name.endswith("num_batches_tracked"):
        b.copy_(torch.from_numpy(np.array(_get(batch_stats, _flax_path(name)))))


def _max_abs(a, b) -> float:
  return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def _rel(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def _nchw(a) -> torch.Tensor:
  return torch.from_numpy(np.array(np.asarray(a).transpose(0, 3, 1, 2)))


def _nhwc(t: torch.Tensor) -> np.ndarray:
  return t.detach().numpy().transpose(0, 2, 3, 1)


def run_check(batch_size: int) -> int:
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  sys.path.insert(0, repo)  # for `configs`
  import jax
  from configs import shapes
  from leae_jax import data, models, objectives, train
  from leae_jax import sigreg as sigreg_lib

  config = shapes.get_config()
  config.batch_size = config.eval_batch_size = batch_size
  config = train.resolve(config)
  m = config.model
  model = models.create_model(m, image_size=config.image_size, image_channels=config.image_channels)
  variables = models.init_variables(model, jax.random.key(0))
  params, stats = variables["params"], variables["batch_stats"]
  source = data.get_source("shapes", "train", image_size=config.image_size)
  x = np.stack([source[i]["image"] for i in range(batch_size)]).astype(np.float32)

  twin = Autoencoder(config.image_channels, m.hidden, m.latent_channels, config.image_size,
                     model.latent_shape[0])
  load_flax(twin, params, stats)
  out: dict[str, object] = dict(
      config=dict(arch=m.arch, image_size=config.image_size, hidden=m.hidden,
                  latent_channels=m.latent_channels, batch=batch_size),
      params_flax=models.count_params(params),
      params_torch=sum(p.numel() for p in twin.parameters()))
  failures = [] if out["params_flax"] == out["params_torch"] == NUM_PARAMS else ["param count"]

  # Forward, training mode (batch statistics; running statistics move once).
  def encode_decode(mdl, images):
    z = mdl.encode(images, train=True)
    return z, mdl.decode(z)

  (codes, recon), upd = model.apply(variables, x, mutable=["batch_stats"], method=encode_decode)
  twin.train()
  with torch.no_grad():
    t_codes = twin.encoder(_nchw(x))
    t_recon = twin.decoder(t_codes)
  t_stats = {"mean": twin.encoder.code_norm.running_mean.numpy(),
             "var": twin.encoder.code_norm.running_var.numpy()}
  f_stats = upd["batch_stats"]["encoder"]["code_norm"]
  diffs = dict(train_code=_max_abs(codes, _nhwc(t_codes)),
               train_reconstruction=_max_abs(recon, _nhwc(t_recon)),
               running_mean=_max_abs(f_stats["mean"], t_stats["mean"]),
               running_var=_max_abs(f_stats["var"], t_stats["var"]))
  # Eval mode with those running statistics.
  eval_vars = {"params": params, "batch_stats": upd["batch_stats"]}
  e_recon = model.apply(eval_vars, x, train=False)
  twin.eval()
  with torch.no_grad():
    diffs["eval_reconstruction"] = _max_abs(e_recon, _nhwc(twin(_nchw(x))))
  out["forward_max_abs_diff"] = diffs
  for k, v in diffs.items():
    tol = TOLERANCE["code"] if "code" in k else TOLERANCE["stats" if "running" in k else "image"]
    if not v <= tol:
      failures.append(k)

  # The toy loss and its gradients, with the objective's own mask and directions.
  objective = objectives.create_objective(config.objective, model)
  key = jax.random.key(7)
  (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(params, stats, x, key)
  k_sigreg, k_views = jax.random.split(key)
  mask_view = objectives.parse_views(config.objective)[0][0]
  keep = mask_view.sample(jax.random.fold_in(k_views, 0), x.shape)
  dim = int(np.prod(model.latent_shape))
  dirs = [torch.from_numpy(np.array(sigreg_lib.random_directions(
      jax.random.fold_in(k_sigreg, i), dim, config.objective.sigreg_slices))) for i in (0, 1)]

  twin = Autoencoder(config.image_channels, m.hidden, m.latent_channels, config.image_size,
                     model.latent_shape[0])
  load_flax(twin, params, stats)
  twin.train()
  t_loss, t_parts = toy_loss(twin, _nchw(x), _nchw(keep), dirs, config.objective.sigreg_weight)
  t_loss.backward()
  parts = aux["parts"]
  t_loss = t_loss.detach()
  loss_diffs = dict(loss=abs(float(loss) - float(t_loss)),
                    latent_agreement=abs(float(parts["latent_agreement"]) - float(t_parts["latent_agreement"])),
                    sigreg=abs(float(parts["sigreg"]) - float(t_parts["sigreg"])))
  out["loss"] = dict(flax=float(loss), torch=float(t_loss), abs_diff=loss_diffs)
  grad_max, grad_rel = {}, {}
  for name, p in twin.named_parameters():
    g, t = _get(grads, _flax_path(name)), to_flax_layout(p.grad.numpy())
    grad_max[name], grad_rel[name] = _max_abs(g, t), _rel(g, t)
  out["grad_max_abs_diff"] = max(grad_max.values())
  out["grad_max_rel_diff"] = max(grad_rel.values())
  out["grad_worst_tensor"] = max(grad_rel, key=grad_rel.get)
  new = aux["batch_stats"]["encoder"]["code_norm"]
  out["stats_after_three_encodes_max_abs_diff"] = max(
      _max_abs(new["mean"], twin.encoder.code_norm.running_mean.numpy()),
      _max_abs(new["var"], twin.encoder.code_norm.running_var.numpy()))
  failures += [k for k, v in loss_diffs.items() if not v <= TOLERANCE["loss"] * max(1.0, float(loss))]
  if not (out["grad_max_rel_diff"] <= TOLERANCE["grad_rel"]
          and out["grad_max_abs_diff"] <= TOLERANCE["grad_abs"]):
    failures.append("gradients")
  if not out["stats_after_three_encodes_max_abs_diff"] <= TOLERANCE["stats"]:
    failures.append("running statistics after the loss")
  out["failures"] = failures
  print(json.dumps(out, indent=1))
  return 1 if failures else 0


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch_size", type=int, default=16)
  parser.add_argument("--threads", type=int, default=2)
  args = parser.parse_args()
  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  return run_check(args.batch_size)


if __name__ == "__main__":
  sys.exit(main())
