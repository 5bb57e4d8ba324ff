"""Runs three train steps on 1 device, an 8-way data mesh and a 4x2 data x fsdp mesh.

Not a test module itself: `sharding_test.py` runs it in a subprocess with
`XLA_FLAGS=--xla_force_host_platform_device_count=8` (the device count is
fixed when JAX starts) and checks the JSON it prints.

Two cases: the headline `self_teaching` objective with the EMA judge (on both
meshes), and the symmetric `masked_self_teaching` objective (on the 4x2 mesh,
which splits the batch 8 ways too). The learning rate is constant, so every
step moves the params, the AdamW moments and the EMA judge.
"""

import json

import jax
import numpy as np
import optax

jax.config.update("jax_threefry_partitionable", False)

from leae_jax import train

import helpers

STEPS = 3
CASES = {
    "self_teaching_ema": ({"objective.name": "self_teaching", "objective.judge": "ema",
                           "objective.ema_decay": 0.5}, ("data8", "data4_fsdp2")),
    "masked_self_teaching": ({"objective.name": "masked_self_teaching"}, ("data4_fsdp2",)),
}
MESHES = {"data8": {"data": -1, "fsdp": 1}, "data4_fsdp2": {"data": 4, "fsdp": 2}}


def _specs(tree) -> dict[str, str]:
  return {"/".join(str(getattr(k, "key", k)) for k in path): str(leaf.sharding.spec)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def run(mesh: dict, overrides: dict, devices=None):
  config = train.resolve(helpers.tiny_config(**{
      "batch_size": 16, "eval_batch_size": 16, "objective.views": "crop_resize",
      "mesh.fsdp_min_size": 0, **overrides, **{f"mesh.{k}": v for k, v in mesh.items()}}))
  assert config.lr_schedule == "constant" and config.learning_rate > 0
  trainer = train.Trainer(config, devices=devices)
  state = trainer.init_state()
  initial = jax.device_get(state)
  rng = np.random.default_rng(0)
  metrics = []
  for _ in range(STEPS):
    images = rng.uniform(size=(16, 32, 32, 1)).astype(np.float32)
    state, m = trainer.train_step(state, trainer.global_batch(images))
    metrics.append(jax.device_get(m))
  specs = {"params": _specs(state.params),
           "mu": _specs(optax.tree_utils.tree_get(state.opt_state, "mu")),
           "nu": _specs(optax.tree_utils.tree_get(state.opt_state, "nu")),
           "ema": _specs(state.ema_params) if state.ema_params is not None else {}}
  return jax.device_get(state), metrics, specs, initial


def max_diff(a, b) -> float:
  diffs = jax.tree_util.tree_map(lambda x, y: float(np.max(np.abs(np.asarray(x, np.float64)
                                                                   - np.asarray(y, np.float64)))), a, b)
  return max(jax.tree_util.tree_leaves(diffs), default=0.0)


def min_change(a, b) -> float:
  """The smallest, over leaves, of the largest change of a leaf (0 if any leaf did not move)."""
  diffs = jax.tree_util.tree_map(lambda x, y: float(np.max(np.abs(np.asarray(x, np.float64)
                                                                   - np.asarray(y, np.float64)))), a, b)
  return min(jax.tree_util.tree_leaves(diffs), default=0.0)


def main():
  assert jax.device_count() == 8, jax.device_count()
  out = {}
  for case, (overrides, meshes) in CASES.items():
    ref_state, ref_metrics, _, initial = run(MESHES["data8"], overrides, devices=jax.devices()[:1])
    result = {"moved": {k: min_change(getattr(ref_state, k), getattr(initial, k))
                        for k in ("params", "ema_params", "batch_stats") if getattr(initial, k)}}
    result["moved"]["mu"] = min_change(optax.tree_utils.tree_get(ref_state.opt_state, "mu"),
                                       optax.tree_utils.tree_get(initial.opt_state, "mu"))
    for name in meshes:
      state, metrics, specs, _ = run(MESHES[name], overrides)
      result[name] = {
          "loss": [float(m["loss"]) for m in metrics],
          "ref_loss": [float(m["loss"]) for m in ref_metrics],
          "metrics": max_diff(metrics, ref_metrics),
          "sigreg": max(abs(float(m["sigreg"]) - float(r["sigreg"])) for m, r in zip(metrics, ref_metrics)),
          "params": max_diff(state.params, ref_state.params),
          "batch_stats": max_diff(state.batch_stats, ref_state.batch_stats),
          "opt_state": max_diff(state.opt_state, ref_state.opt_state),
          "ema_params": (max_diff(state.ema_params, ref_state.ema_params)
                         if ref_state.ema_params is not None else None),
          "step": int(state.step),
          "specs": specs,
      }
    out[case] = result
  print(json.dumps(out))


if __name__ == "__main__":
  main()
