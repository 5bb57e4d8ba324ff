"""PyTorch (CPU) re-implementation of the CIFAR train step, for side-by-side throughput.

  /tmp/torchenv/bin/python benchmarks/pytorch_reference.py [--batch_size=128 --steps=20 --threads=2]
  /tmp/torchenv/bin/python benchmarks/pytorch_reference.py --check

The step is the one `leae_jax.train.train_step` runs for `configs/cifar.py`
(objective `self_teaching`, view `crop_resize` with a fixed crop ratio of 0.3,
i.e. 9-pixel crops of the 32-pixel image, judge `step_frozen`, SIGReg 0.03
over 256 directions x 17 knots on the 4x4x32 spatial code `sigreg_on='code'`,
PyTorch's default initialisation, AdamW at a constant 1e-4 with PyTorch's
defaults β 0.9/0.999, ε 1e-8 and weight decay 0.01):

  z = E(x) (code norm with the batch statistics of x, as torch's BatchNorm:
            biased batch variance to normalise, running mean/variance moved
            by 0.1 towards the batch mean and *unbiased* variance, from x only)
  x̂ = D(z)
  loss = mean((J(T(x)) − J(T(x̂)))²) + 0.03 · SIGReg(z)

where J is E with its parameters detached, normalising with the statistics
of the batch it judges and leaving the running statistics alone, and the
target side J(T(x)) carries no gradient. T is the crop_resize view: a square
crop of side max(1, floor(0.3 · 32)) = 9 at a uniform corner, resized back to
32x32 bilinearly (aligned corners, border clamp), the same box for x and x̂.

Timing mode (default) prints one JSON line: forward, backward and AdamW update
per step, after `--warmup` untimed steps, on one batch kept in memory (as
`leae_jax.bench` does), with torch's RNG drawing the initial parameters
(PyTorch's own default initialisation), the per-step crops and directions.

`--check` builds the JAX model's initial state with `leae_jax` itself (batch
16), checks that its initial parameters, like this model's own, follow
PyTorch's default initialisation, copies the parameters into this model and,
with the same images, crop boxes and SIGReg directions, compares the loss, its
parts, the gradients, and two full train steps (metrics, running statistics,
Adam moments, parameter updates) against JAX, as well as the config values
hard-coded here. It prints one JSON object and exits 1 on any mismatch. Needs jax and
leae_jax importable (the torch venv is made with --system-site-packages).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------
# The CIFAR config (configs/cifar.py over leae_jax/base_config.py). Hard-coded
# so the timing mode needs no JAX; `--check` asserts they still agree.

CIFAR = dict(
    image_size=32, image_channels=3, hidden=64, latent_channels=32, init="pytorch",
    crop_ratio=0.3, sigreg_weight=0.03, sigreg_slices=256, sigreg_knots=17,
    sigreg_t_max=3.0, sigreg_on="code", learning_rate=1e-4, lr_schedule="constant",
    weight_decay=0.01, num_epochs=50, train_size=50_000,
    bn_momentum=0.9, bn_epsilon=1e-5, norm_running_variance="unbiased",  # flax momentum convention
)
NUM_PARAMS = 580_291


# ---------------------------------------------------------------------------
# Model (NCHW). Attribute names mirror the Flax module names so parameters map
# one to one: `encoder.DownBlock_0.Conv_1.weight` <-> params['encoder']['DownBlock_0']['Conv_1']['kernel'].


class Conv(nn.Conv2d):
  """Conv2d whose parameters can be used detached (the step-frozen judge)."""

  def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1):
    # Same padding rule as models.layers.conv_layer: 1 for the 4x4/s2 stem, k//2 otherwise.
    # PyTorch's default init (model.init='pytorch'): kaiming_uniform(a=√5) kernels,
    # i.e. U(±1/√fan_in), and biases U(±1/√fan_in), fan_in = cin·k·k.
    pad = 1 if kernel == 4 else kernel // 2
    super().__init__(cin, cout, kernel, stride=stride, padding=pad)

  def forward(self, x: torch.Tensor, frozen: bool = False) -> torch.Tensor:
    if frozen:
      return self._conv_forward(x, self.weight.detach(), self.bias.detach())
    return self._conv_forward(x, self.weight, self.bias)


def space_to_depth(x: torch.Tensor) -> torch.Tensor:
  # pixel_unshuffle orders the output channels (c, dy, dx), as models.resample.space_to_depth does.
  return F.pixel_unshuffle(x, 2)


def match_channels(x: torch.Tensor, features: int) -> torch.Tensor:
  """Parameter-free channel change: mean of consecutive channel groups, or repeat each channel."""
  n, c, h, w = x.shape
  if c == features:
    return x
  if c % features == 0:
    return x.reshape(n, features, c // features, h, w).mean(dim=2)
  if features % c == 0:
    return x.repeat_interleave(features // c, dim=1)  # jnp.repeat: a, a, b, b
  raise ValueError(f"Cannot match {c} channels to {features} without parameters.")


def upsample(x: torch.Tensor) -> torch.Tensor:
  return F.interpolate(x, scale_factor=2, mode="nearest")


class DownBlock(nn.Module):
  """conv3x3/s2 → SiLU → conv3x3, plus match_channels(space_to_depth(x)); SiLU of the sum."""

  def __init__(self, cin: int, features: int):
    super().__init__()
    self.features = features
    self.Conv_0 = Conv(cin, features, 3, 2)
    self.Conv_1 = Conv(features, features, 3, 1)

  def forward(self, x: torch.Tensor, frozen: bool = False) -> torch.Tensor:
    h = self.Conv_1(F.silu(self.Conv_0(x, frozen)), frozen)
    return F.silu(h + match_channels(space_to_depth(x), self.features))


class UpBlock(nn.Module):
  """nearest×2 → conv3x3 → SiLU → conv3x3, plus upsample(conv1x1(x)); SiLU of the sum."""

  def __init__(self, cin: int, features: int):
    super().__init__()
    self.Conv_0 = Conv(cin, features, 3)
    self.Conv_1 = Conv(features, features, 3)
    self.Conv_2 = Conv(cin, features, 1)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    h = self.Conv_1(F.silu(self.Conv_0(upsample(x))))
    return F.silu(h + upsample(self.Conv_2(x)))


class CodeNorm(nn.Module):
  """Batch norm over (N, H, W) with torch's BatchNorm2d semantics (`models.layers.CodeNorm`).

  Training mode normalises with the batch mean and the biased batch variance
  and moves the running statistics by `1 − momentum` (Flax's convention for
  `momentum`; torch's `momentum` is `1 − momentum` = 0.1) towards the batch
  mean and the *unbiased* batch variance `n/(n−1)`, exactly torch's native
  kernel with running buffers. Parameters and buffers keep the Flax names
  (`scale`, `bias`; `mean`, `var`) so they map one to one.
  """

  def __init__(self, channels: int, momentum: float, eps: float):
    super().__init__()
    self.momentum, self.eps = momentum, eps
    self.scale = nn.Parameter(torch.ones(channels))
    self.bias = nn.Parameter(torch.zeros(channels))
    self.register_buffer("mean", torch.zeros(channels))
    self.register_buffer("var", torch.ones(channels))

  def forward(self, x: torch.Tensor, frozen: bool = False, update_stats: bool = True) -> torch.Tensor:
    scale, bias = (self.scale.detach(), self.bias.detach()) if frozen else (self.scale, self.bias)
    # training=True: batch statistics, fused native kernel. With running buffers it also
    # updates them in place (unbiased variance), as nn.BatchNorm2d does; without them
    # (the judge) the running statistics are left alone.
    running = (self.mean, self.var) if update_stats else (None, None)
    return F.batch_norm(x, *running, scale, bias, training=True, momentum=1.0 - self.momentum,
                        eps=self.eps)


class Encoder(nn.Module):
  def __init__(self, hidden: int, latent_channels: int, channels: int = 3):
    super().__init__()
    self.Conv_0 = Conv(channels, hidden, 4, 2)
    self.DownBlock_0 = DownBlock(hidden, 2 * hidden)
    self.DownBlock_1 = DownBlock(2 * hidden, latent_channels)
    self.code_norm = CodeNorm(latent_channels, CIFAR["bn_momentum"], CIFAR["bn_epsilon"])

  def forward(self, x: torch.Tensor, judge: bool = False) -> torch.Tensor:
    """`judge=True`: the step-frozen judge — detached params, own batch stats, no stats update."""
    h = F.silu(self.Conv_0(x, judge))
    h = self.DownBlock_1(self.DownBlock_0(h, judge), judge)
    return self.code_norm(h, frozen=judge, update_stats=not judge)


class Decoder(nn.Module):
  def __init__(self, hidden: int, latent_channels: int, channels: int = 3):
    super().__init__()
    self.UpBlock_0 = UpBlock(latent_channels, 2 * hidden)
    self.UpBlock_1 = UpBlock(2 * hidden, hidden)
    self.to_image = Conv(hidden, channels, 3)

  def forward(self, z: torch.Tensor) -> torch.Tensor:
    h = self.UpBlock_1(self.UpBlock_0(z))
    return torch.sigmoid(self.to_image(upsample(h)))


class Autoencoder(nn.Module):
  def __init__(self, hidden: int = CIFAR["hidden"], latent_channels: int = CIFAR["latent_channels"]):
    super().__init__()
    self.encoder = Encoder(hidden, latent_channels)
    self.decoder = Decoder(hidden, latent_channels)


# ---------------------------------------------------------------------------
# crop_resize view (views.image.crop_resize): per-image square crop of side
# max(1, floor(r · size)) at a uniform corner, resized back bilinearly with one
# interpolation matrix per axis.


def sample_crop(n: int, size: int, gen: torch.Generator | None = None) -> dict[str, torch.Tensor]:
  ratio = torch.full((n,), CIFAR["crop_ratio"])  # fixed ratio (a (lo, hi) range is an option of ours)
  # Rounded down, with views.py's 1e-4 of slack against float32 products a hair below an integer.
  side = torch.clamp(torch.floor(ratio * size + 1e-4), 1, size).long()  # 9 at 32 px
  top = torch.floor(torch.rand(n, generator=gen) * (size - side + 1)).long()
  left = torch.floor(torch.rand(n, generator=gen) * (size - side + 1)).long()
  return dict(top=top, left=left, side=side)


def interpolation_matrix(start: torch.Tensor, side: torch.Tensor, size: int, in_size: int) -> torch.Tensor:
  """`(N, size, in_size)`: output i samples `start + i·(side−1)/(size−1)`, neighbour clamped."""
  # Integer split of i·(side−1)/(size−1) into whole and fractional parts, as in views.py.
  denom = max(size - 1, 1)
  numer = torch.arange(size)[None, :] * (side[:, None] - 1)
  frac = (numer % denom).float() / denom
  lo = torch.clamp(start[:, None] + numer // denom, 0, in_size - 1)
  hi = torch.clamp(lo + 1, 0, in_size - 1)
  return ((1.0 - frac)[..., None] * F.one_hot(lo, in_size)
          + frac[..., None] * F.one_hot(hi, in_size))


def crop_matrices(crop: dict[str, torch.Tensor], size: int) -> tuple[torch.Tensor, torch.Tensor]:
  rows = interpolation_matrix(crop["top"], crop["side"], size, size)
  cols = interpolation_matrix(crop["left"], crop["side"], size, size)
  return rows, cols


def resample(images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
  """`out[n, c, i, j] = Σ_hw rows[n, i, h] · images[n, c, h, w] · cols[n, j, w]`."""
  return rows[:, None] @ images @ cols[:, None].transpose(-1, -2)


# ---------------------------------------------------------------------------
# SIGReg (sigreg.py): Epps–Pulley over random unit directions, per spatial position.


def knots_and_weights(num_knots: int, t_max: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
  t = torch.linspace(0.0, t_max, num_knots)
  phi = torch.exp(-0.5 * t * t)
  delta = t_max / (num_knots - 1)
  # Trapezoid on [0, t_max], doubled for the symmetric integrand: Δ at the ends, 2Δ inside.
  trapezoid = torch.full((num_knots,), 2.0 * delta)
  trapezoid[0] = trapezoid[-1] = delta
  return t, phi, trapezoid * phi


_KNOTS = knots_and_weights(CIFAR["sigreg_knots"], CIFAR["sigreg_t_max"])


def random_directions(dim: int, num_slices: int, gen: torch.Generator | None = None) -> torch.Tensor:
  a = torch.randn(dim, num_slices, generator=gen)
  return a / torch.linalg.vector_norm(a, dim=0, keepdim=True)


def epps_pulley(p: torch.Tensor) -> torch.Tensor:
  """`(..., N, K)` samples → `(..., K)` statistics `N · Σ_j w_j |mean e^{i t_j p} − φ(t_j)|²`."""
  t, phi, weights = _KNOTS
  tp = p.unsqueeze(-1) * t  # (..., N, K, J)
  cos_mean = torch.cos(tp).mean(dim=-3)
  sin_mean = torch.sin(tp).mean(dim=-3)
  err = (cos_mean - phi) ** 2 + sin_mean ** 2
  return p.shape[-2] * (err @ weights)


def sigreg(codes: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
  """Spatial codes `(N, D, H, W)`: each of the H·W positions is a set of N samples."""
  n, d, h, w = codes.shape
  proj = torch.einsum("ndhw,dk->hwnk", codes, directions).reshape(h * w, n, -1)
  return epps_pulley(proj).mean()


# ---------------------------------------------------------------------------
# Objective and train step.


def self_teaching_loss(model: Autoencoder, images: torch.Tensor, crop: dict[str, torch.Tensor],
                       directions: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
  codes = model.encoder(images)  # the only call that updates the running statistics
  recon = model.decoder(codes)
  rows, cols = crop_matrices(crop, images.shape[-1])
  with torch.no_grad():  # target side: no gradient at all
    target = model.encoder(resample(images, rows, cols), judge=True)
  # Gradient flows through the judge's input (x̂), never into its parameters.
  pred = model.encoder(resample(recon, rows, cols), judge=True)
  agreement = (target - pred).square().mean()
  sig = sigreg(codes, directions)
  loss = agreement + CIFAR["sigreg_weight"] * sig
  return loss, dict(loss=loss.detach(), latent_agreement=agreement.detach(), sigreg=sig.detach())


def num_train_steps(batch_size: int) -> int:
  """The reference's `epochs * len(train_loader)`: DataLoader(drop_last=False) has ⌈N/B⌉ batches."""
  return max(1, CIFAR["num_epochs"] * -(-CIFAR["train_size"] // batch_size))


def learning_rate(step: int, batch_size: int) -> float:
  """optax.constant_schedule (`lr_schedule='constant'`): the same rate from the first step."""
  del step, batch_size
  return CIFAR["learning_rate"]


def make_optimizer(model: Autoencoder) -> torch.optim.Optimizer:
  # PyTorch's AdamW defaults (b1 0.9, b2 0.999, eps 1e-8), decoupled decay on every
  # parameter, as optax.adamw in train.create_optimizer; the rate is set per step from
  # learning_rate() (constant).
  return torch.optim.AdamW(model.parameters(), lr=CIFAR["learning_rate"], betas=(0.9, 0.999),
                           eps=1e-8, weight_decay=CIFAR["weight_decay"], foreach=True)


def train_step(model: Autoencoder, optimizer: torch.optim.Optimizer, loss_fn, images: torch.Tensor,
               crop: dict[str, torch.Tensor], directions: torch.Tensor, step: int) -> dict:
  lr = learning_rate(step, images.shape[0])  # optax uses schedule(count) before incrementing
  for group in optimizer.param_groups:
    group["lr"] = lr
  loss, parts = loss_fn(model, images, crop, directions)
  optimizer.zero_grad(set_to_none=True)
  loss.backward()
  grads = [p.grad for p in model.parameters()]
  grad_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
  optimizer.step()
  return dict(parts, grad_norm=grad_norm, learning_rate=lr)


def count_params(model: nn.Module) -> int:
  return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------
# Timing.


def run_timing(args) -> int:
  torch.manual_seed(args.seed)
  model = Autoencoder()
  n_params = count_params(model)
  if n_params != NUM_PARAMS:
    raise SystemExit(f"Expected {NUM_PARAMS} parameters, built {n_params}.")
  fmt = torch.channels_last if args.channels_last else torch.contiguous_format
  model = model.to(memory_format=fmt)
  optimizer = make_optimizer(model)
  size = CIFAR["image_size"]
  images = torch.rand(args.batch_size, CIFAR["image_channels"], size, size).contiguous(memory_format=fmt)

  result = {"framework": "pytorch", "torch_version": torch.__version__, "threads": args.threads,
            "batch_size": args.batch_size}
  loss_fn = self_teaching_loss
  compiled = False
  if args.compile:
    try:
      loss_fn = torch.compile(self_teaching_loss)
      # Compilation is lazy: force it here so a failure is reported, not raised mid-timing.
      t0 = time.perf_counter()
      train_step(model, optimizer, loss_fn, images, sample_crop(args.batch_size, size),
                 random_directions(CIFAR["latent_channels"], CIFAR["sigreg_slices"]), 0)
      result["compile_s"] = round(time.perf_counter() - t0, 2)
      compiled = True
    except Exception as e:  # noqa: BLE001 -- report any backend failure and time eager instead
      result["compile_error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:500]
      loss_fn = self_teaching_loss
  result["compile"] = compiled

  def step(i):
    # Fresh per-image crops and directions every step, as the JAX step draws from its step key.
    crop = sample_crop(args.batch_size, size)
    directions = random_directions(CIFAR["latent_channels"], CIFAR["sigreg_slices"])
    return train_step(model, optimizer, loss_fn, images, crop, directions, i)

  for i in range(args.warmup):
    step(i)
  t0 = time.perf_counter()
  for i in range(args.warmup, args.warmup + args.steps):
    metrics = step(i)
  elapsed = time.perf_counter() - t0  # eager CPU execution is synchronous
  if not math.isfinite(float(metrics["loss"])):
    raise SystemExit(f"Non-finite loss: {metrics}")
  step_ms = elapsed / args.steps * 1e3
  result.update(step_ms=round(step_ms, 2), images_per_s=round(args.batch_size / (step_ms / 1e3), 1),
                steps=args.steps, channels_last=args.channels_last)
  print(json.dumps(result))
  return 0


# ---------------------------------------------------------------------------
# Equivalence check against leae_jax.

CHECK_BATCH = 16
LOSS_RTOL = 1e-4
GRAD_RTOL = 1e-3
GRAD_KERNELS = ("encoder/Conv_0/kernel", "encoder/DownBlock_1/Conv_1/kernel",
                "decoder/UpBlock_0/Conv_0/kernel", "decoder/to_image/kernel")


def _flax_path(torch_name: str) -> tuple[str, ...]:
  *path, leaf = torch_name.split(".")
  return (*path, {"weight": "kernel"}.get(leaf, leaf))


def _to_flax_layout(t: torch.Tensor) -> np.ndarray:
  a = t.detach().cpu().numpy()
  return a.transpose(2, 3, 1, 0) if a.ndim == 4 else a  # OIHW -> HWIO


def _get(tree, path):
  for k in path:
    tree = tree[k]
  return np.asarray(tree)


def load_flax(model: Autoencoder, params, batch_stats) -> None:
  with torch.no_grad():
    for name, p in model.named_parameters():
      a = _get(params, _flax_path(name))
      p.copy_(torch.from_numpy(np.ascontiguousarray(a.transpose(3, 2, 0, 1) if a.ndim == 4 else a)))
    for name, b in model.named_buffers():
      b.copy_(torch.from_numpy(_get(batch_stats, name.split("."))))


def init_stats(model: Autoencoder, params) -> dict[str, dict[str, float]]:
  """How the initial `params` (Flax tree; torch's own if None) sit against PyTorch's default init.

  Per tensor: `max_over_bound` = max |value| · √fan_in (at most 1 for U(±1/√fan_in), and
  above 1/2 for 32+ values, which rules out zero biases); for tensors of 1000+ values,
  `std_ratio` = std / (1/√(3·fan_in)) (1 for that uniform); the code norm's scale and bias
  must be exactly 1 and 0.
  """
  out = {}
  fan_in = {n: m.weight[0].numel() for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
  for name, p in model.named_parameters():
    path = _flax_path(name)
    v = p.detach().numpy() if params is None else _get(params, path)
    module = name.rsplit(".", 1)[0]
    if module in fan_in:
      bound = 1.0 / math.sqrt(fan_in[module])
      row = dict(max_over_bound=float(np.abs(v).max() / bound), size=v.size)
      if v.size >= 1000:
        row["std_ratio"] = float(v.std() / (bound / math.sqrt(3.0)))
    else:  # code norm
      row = dict(max_abs_err=float(np.abs(v - (1.0 if path[-1] == "scale" else 0.0)).max()))
    out["/".join(path)] = row
  return out


def _init_failures(stats: dict[str, dict[str, float]]) -> list[str]:
  return [k for k, v in stats.items()
          if v.get("max_over_bound", 0.0) > 1.0 + 1e-6
          or (v.get("size", 0) >= 32 and v["max_over_bound"] < 0.5)
          or abs(v.get("std_ratio", 1.0) - 1.0) > 0.05 or v.get("max_abs_err", 0.0) > 0.0]


def _rel(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def run_check(args) -> int:
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  sys.path.insert(0, repo)  # for `configs`
  import jax
  import jax.numpy as jnp
  from configs import cifar
  from leae_jax import models, objectives, train
  from leae_jax.models import residual
  from leae_jax import sigreg as sigreg_lib

  config = cifar.get_config()
  config.batch_size = CHECK_BATCH
  config.eval_batch_size = CHECK_BATCH
  config = train.resolve(config)
  o, m = config.objective, config.model
  expected = dict(
      name=(o.name, "self_teaching"), views=(o.views, "crop_resize"), judge=(o.judge, "step_frozen"),
      plain_weight=(o.plain_weight, 0.0), view_weights=(o.view_weights, ""),
      crop_ratio=(o.view_args["crop_resize"]["crop_ratio"], CIFAR["crop_ratio"]),
      sigreg_weight=(o.sigreg_weight, CIFAR["sigreg_weight"]),
      sigreg_slices=(o.sigreg_slices, CIFAR["sigreg_slices"]),
      sigreg_knots=(o.sigreg_knots, CIFAR["sigreg_knots"]), sigreg_t_max=(o.sigreg_t_max, CIFAR["sigreg_t_max"]),
      sigreg_on=(o.sigreg_on, CIFAR["sigreg_on"]), judge_updates_norm=(o.judge_updates_norm, False),
      hidden=(m.hidden, CIFAR["hidden"]), latent_channels=(m.latent_channels, CIFAR["latent_channels"]),
      latent=(m.latent, "spatial"), dtype=(m.dtype, "float32"), init=(m.init, CIFAR["init"]),
      norm_running_variance=(m.norm_running_variance, CIFAR["norm_running_variance"]),
      image_size=(config.image_size, CIFAR["image_size"]),
      image_channels=(config.image_channels, CIFAR["image_channels"]),
      learning_rate=(config.learning_rate, CIFAR["learning_rate"]),
      lr_schedule=(config.lr_schedule, CIFAR["lr_schedule"]),
      bn_momentum=(residual.Encoder.bn_momentum, CIFAR["bn_momentum"]),
      bn_epsilon=(residual.Encoder.bn_epsilon, CIFAR["bn_epsilon"]),
      weight_decay=(config.weight_decay, CIFAR["weight_decay"]), grad_clip_norm=(config.grad_clip_norm, 0.0),
      num_train_steps=(config.num_train_steps, num_train_steps(CHECK_BATCH)),
  )
  config_diffs = {k: list(v) for k, v in expected.items() if v[0] != v[1]}

  trainer = train.Trainer(config)
  model_j = trainer.model
  state = trainer.init_state()
  view = objectives.parse_views(config.objective)[0][0]
  # Host copies: train_step donates the state's buffers.
  params0 = jax.tree_util.tree_map(lambda x: np.array(x, copy=True), state.params)
  stats0 = jax.tree_util.tree_map(lambda x: np.array(x, copy=True), state.batch_stats)
  n_jax = sum(x.size for x in jax.tree_util.tree_leaves(params0))
  # Initialisation (model.init='pytorch'): the JAX initial parameters and a fresh torch
  # model (PyTorch's own default init, as the timing mode uses) against U(±1/√fan_in);
  # running statistics start at mean 0, variance 1 on both sides.
  torch.manual_seed(args.seed)
  fresh = Autoencoder()
  init_j, init_t = init_stats(fresh, params0), init_stats(fresh, None)
  init_buffers_err = max(float(np.abs(_get(stats0, n.split(".")) - b.numpy()).max())
                         for n, b in fresh.named_buffers())

  rng = np.random.default_rng(0)
  shape = (CHECK_BATCH, config.image_size, config.image_size, config.image_channels)
  batches = [rng.uniform(size=shape).astype(np.float32) for _ in range(2)]

  def draws(key):
    # What self_teaching_loss draws from its key (one view, index 0).
    k_sigreg, k_views = jax.random.split(key)
    crop = view.sample(jax.random.fold_in(k_views, 0), shape)
    dirs = sigreg_lib.random_directions(k_sigreg, config.model.latent_channels, o.sigreg_slices)
    return jax.tree_util.tree_map(np.asarray, crop), np.asarray(dirs)

  def jax_loss(params, images, crop, dirs):
    # self_teaching_loss composed from the library's pieces, with fixed crop and directions.
    codes, _ = models.encode(model_j, params["encoder"], stats0, images, train=True)
    recon = models.decode(model_j, params["decoder"], codes)
    judge = objectives.make_judge(model_j, objectives.judge_params_for("step_frozen", params), stats0)
    tx, tx_hat = view.transform(crop, images), view.transform(crop, recon)
    agreement = jnp.mean(jnp.square(jax.lax.stop_gradient(judge(tx)) - judge(tx_hat)))
    n, h, w, d = codes.shape
    proj = jnp.einsum("nhwd,dk->hwnk", codes, dirs).reshape(h * w, n, -1)
    ep = lambda p: sigreg_lib.epps_pulley(p, num_knots=o.sigreg_knots, t_max=o.sigreg_t_max)
    sig = jnp.mean(jax.vmap(ep)(proj))
    loss = agreement + o.sigreg_weight * sig
    return loss, dict(loss=loss, latent_agreement=agreement, sigreg=sig)

  # The timing mode's own crop sampler against the view's: same side(s), corners over the
  # same range (uniform over the size − side + 1 positions that fit).
  size = config.image_size
  crop_j = jax.tree_util.tree_map(np.asarray, view.sample(jax.random.key(1), (4096, size, size, 3)))
  torch.manual_seed(args.seed)
  crop_s = {k: v.numpy() for k, v in sample_crop(4096, size).items()}
  crop_sampler = {name: dict(sides=sorted(set(c["side"].tolist())),
                             corner_range=[int(min(c["top"].min(), c["left"].min())),
                                           int(max((c["top"] + c["side"]).max(),
                                                   (c["left"] + c["side"]).max()))])
                  for name, c in (("jax", crop_j), ("torch", crop_s))}

  key0 = train.step_key(state)
  crop0, dirs0 = draws(key0)
  (_, parts_j), grads_j = jax.jit(jax.value_and_grad(jax_loss, has_aux=True))(
      state.params, batches[0], crop0, dirs0)
  # The composition must be the library objective itself (guards against drift in how
  # self_teaching_loss uses its key or composes the pieces).
  _, aux_lib = trainer.objective(state.params, state.batch_stats, batches[0], key0)
  composition_vs_library = {k: _rel(parts_j[k], aux_lib["parts"][k]) for k in parts_j}
  sigreg_lib_vs_composition = _rel(
      sigreg_lib.sigreg(models.encode(model_j, state.params["encoder"], stats0, batches[0])[0],
                        jax.random.split(key0)[0], num_slices=o.sigreg_slices,
                        num_knots=o.sigreg_knots, t_max=o.sigreg_t_max), parts_j["sigreg"])

  to_t = lambda x: torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))
  crop_t = lambda c: {k: torch.from_numpy(np.asarray(v).astype(np.int64)) for k, v in c.items()}
  dirs_t = lambda d: torch.from_numpy(np.array(d, np.float32))

  # Loss, parts and gradients at the initial parameters.
  fmt = torch.channels_last if args.channels_last else torch.contiguous_format
  model = Autoencoder()
  load_flax(model, params0, stats0)
  model = model.to(memory_format=fmt)
  loss_t, parts_t = self_teaching_loss(model, to_t(batches[0]).contiguous(memory_format=fmt),
                                       crop_t(crop0), dirs_t(dirs0))
  loss_t.backward()
  parts_cmp = {k: dict(jax=float(parts_j[k]), torch=float(parts_t[k]), rel_err=_rel(parts_t[k], parts_j[k]))
               for k in ("loss", "latent_agreement", "sigreg")}
  grad_err = {}
  for name, p in model.named_parameters():
    path = _flax_path(name)
    grad_err["/".join(path)] = _rel(_to_flax_layout(p.grad), _get(grads_j, path))

  # The code norm's running-statistics update on its own. From the initial (0, 1) the
  # running variance is 0.81 + 0.19 · (batch variance, ~5e-5 at init) after two steps, so
  # the steps below cannot tell an unbiased from a biased update; starting from (0, 0), the
  # new running variance is 0.1 · (batch variance) · n/(n−1) alone (n = 16·4·4), and the
  # biased form is 1/256 off.
  zero_stats = jax.tree_util.tree_map(np.zeros_like, stats0)
  codes_nj, stats_nj = jax.jit(lambda p, s, x: models.encode(model_j, p, s, x, train=True))(
      params0["encoder"], zero_stats, batches[0])
  model = Autoencoder()
  load_flax(model, params0, zero_stats)
  model = model.to(memory_format=fmt)
  with torch.no_grad():
    codes_nt = model.encoder(to_t(batches[0]).contiguous(memory_format=fmt))
  norm_update_err = {name: _rel(b.numpy(), _get(stats_nj, name.split("."))) for name, b in model.named_buffers()}
  norm_update_err["codes"] = _rel(codes_nt.numpy().transpose(0, 2, 3, 1), codes_nj)

  # Two full train steps, both at the constant learning rate.
  model = Autoencoder()
  load_flax(model, params0, stats0)
  model = model.to(memory_format=fmt)
  optimizer = make_optimizer(model)
  steps = []
  for i, images in enumerate(batches):
    crop, dirs = draws(train.step_key(state))
    state, metrics_j = trainer.train_step(state, trainer.global_batch(images))
    metrics_t = train_step(model, optimizer, self_teaching_loss, to_t(images).contiguous(memory_format=fmt),
                           crop_t(crop), dirs_t(dirs), i)
    steps.append({k: dict(jax=float(metrics_j[k]), torch=float(metrics_t[k]),
                          rel_err=_rel(float(metrics_t[k]), float(metrics_j[k])))
                  for k in ("loss", "latent_agreement", "sigreg", "grad_norm", "learning_rate")})
  params2 = jax.tree_util.tree_map(np.asarray, state.params)
  stats2 = jax.tree_util.tree_map(np.asarray, state.batch_stats)
  adam_j = [x for x in jax.tree_util.tree_leaves(state.opt_state, is_leaf=lambda x: hasattr(x, "mu"))
            if hasattr(x, "mu")][0]
  moment_err, update_err = {}, {}
  for name, p in model.named_parameters():
    path = _flax_path(name)
    key = "/".join(path)
    st = optimizer.state[p]
    moment_err[key] = max(_rel(_to_flax_layout(st["exp_avg"]), _get(adam_j.mu, path)),
                          _rel(_to_flax_layout(st["exp_avg_sq"]), _get(adam_j.nu, path)))
    # Two steps move each element by ~2·lr = 2e-4 while parameters are ~0.01-1, so float32
    # rounding of p + Δ alone (up to one ulp per element, rounded on each side) sets an error floor.
    p_j, p_t = _get(params2, path), _to_flax_layout(p)
    delta_j = p_j - _get(params0, path)
    norm = max(np.linalg.norm(delta_j), 1e-30)
    update_err[key] = dict(rel_err=float(np.linalg.norm(p_t - p_j) / norm),
                           rounding_floor=float(np.linalg.norm(np.spacing(np.abs(p_j))) / norm))
  stats_err = {name: _rel(b.numpy(), _get(stats2, name.split("."))) for name, b in model.named_buffers()}
  schedule_err = max(abs(learning_rate(s, CHECK_BATCH) - float(trainer.schedule(s)))
                     for s in (0, 1, 2, 1_000, config.num_train_steps - 1, config.num_train_steps + 5))

  failures = []
  if config_diffs:
    failures.append("config")
  if not n_jax == count_params(model) == NUM_PARAMS:
    failures.append("num_params")
  failures += [f"init/jax/{k}" for k in _init_failures(init_j)]
  failures += [f"init/torch/{k}" for k in _init_failures(init_t)]
  if init_buffers_err > 0.0:
    failures.append("init/batch_stats")
  if crop_sampler["jax"] != crop_sampler["torch"] or crop_sampler["jax"]["corner_range"] != [0, size]:
    failures.append("crop_sampler")
  failures += [f"composition/{k}" for k, v in composition_vs_library.items() if v > 1e-5]
  if sigreg_lib_vs_composition > 1e-5:
    failures.append("sigreg_library")
  failures += [f"parts/{k}" for k, v in parts_cmp.items() if v["rel_err"] > LOSS_RTOL]
  failures += [f"grad/{k}" for k, v in grad_err.items() if v > GRAD_RTOL]
  failures += [f"step{i}/{k}" for i, s in enumerate(steps) for k, v in s.items() if v["rel_err"] > LOSS_RTOL]
  failures += [f"adam_moments/{k}" for k, v in moment_err.items() if v > GRAD_RTOL]
  failures += [f"update/{k}" for k, v in update_err.items()
               if v["rel_err"] > GRAD_RTOL + v["rounding_floor"]]
  failures += [f"batch_stats/{k}" for k, v in stats_err.items() if v > LOSS_RTOL]
  failures += [f"code_norm_update/{k}" for k, v in norm_update_err.items() if v > LOSS_RTOL]
  if schedule_err > 1e-9:
    failures.append("schedule")

  report = dict(
      check="pass" if not failures else "fail", failures=failures,
      jax_version=jax.__version__, torch_version=torch.__version__, batch_size=CHECK_BATCH,
      channels_last=args.channels_last,
      num_params=dict(jax=n_jax, torch=count_params(model)), config_mismatches=config_diffs,
      init={side: dict(max_over_bound_range=[min(v["max_over_bound"] for v in st.values()
                                                 if v.get("size", 0) >= 32),
                                             max(v.get("max_over_bound", 0.0) for v in st.values())],
                       std_ratio_range=[min(v["std_ratio"] for v in st.values() if "std_ratio" in v),
                                        max(v["std_ratio"] for v in st.values() if "std_ratio" in v)],
                       code_norm_max_abs_err=max(v.get("max_abs_err", 0.0) for v in st.values()))
            for side, st in (("jax", init_j), ("torch", init_t))}
      | {"batch_stats_max_abs_err": init_buffers_err},
      crop_sampler=crop_sampler,
      composition_vs_library_objective_rel_err=composition_vs_library,
      library_sigreg_vs_composition_rel_err=sigreg_lib_vs_composition,
      parts=parts_cmp,
      grad_rel_err={k: grad_err[k] for k in GRAD_KERNELS}
      | {"max_over_all_params": max(grad_err.values()), "argmax": max(grad_err, key=grad_err.get)},
      train_steps=steps,
      after_2_steps=dict(adam_moments_rel_err_max=max(moment_err.values()),
                         param_update_rel_err=update_err, batch_stats_rel_err=stats_err),
      code_norm_update_from_zero_rel_err=norm_update_err,
      schedule_abs_err_max=schedule_err,
  )
  print(json.dumps(report, indent=1))
  return 0 if not failures else 1


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--check", action="store_true", help="Compare against leae_jax at batch 16 and exit.")
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--steps", type=int, default=20, help="Timed steps.")
  parser.add_argument("--warmup", type=int, default=3, help="Untimed steps first.")
  parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads.")
  parser.add_argument("--compile", action="store_true", help="torch.compile the loss (forward + backward).")
  parser.add_argument("--channels_last", action="store_true", help="NHWC memory format for model and input.")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  torch.set_num_threads(args.threads)
  return run_check(args) if args.check else run_timing(args)


if __name__ == "__main__":
  sys.exit(main())
