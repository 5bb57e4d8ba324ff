"""Runs two train steps on 1 device, an 8-way data mesh and a 4x2 data x fsdp mesh.

Not a test module itself: `sharding_test.py` runs it in a subprocess with
`XLA_FLAGS=--xla_force_host_platform_device_count=8` (the device count is
fixed when JAX starts) and checks the JSON it prints.
"""

import json
import sys

import jax
import numpy as np

jax.config.update("jax_threefry_partitionable", False)

from leae_jax import base_config  # pylint: disable=g-import-not-at-top
from leae_jax import train

import helpers


def run(mesh: dict, devices=None, objective: str = "self_teaching"):
  config = base_config.resolve(helpers.tiny_config(**{
      "batch_size": 16, "eval_batch_size": 16, "objective.name": objective,
      "objective.views": "crop_resize", "mesh.fsdp_min_size": 0,
      **{f"mesh.{k}": v for k, v in mesh.items()}}))
  trainer = train.Trainer(config, devices=devices)
  state = trainer.init_state()
  rng = np.random.default_rng(0)
  metrics = []
  for _ in range(2):  # step 0 has learning rate 0 (warmup); step 1 moves the params
    images = rng.uniform(size=(16, 32, 32, 1)).astype(np.float32)
    state, m = trainer.train_step(state, trainer.global_batch(images))
    metrics.append(jax.device_get(m))
  specs = {"/".join(str(getattr(k, "key", k)) for k in path): str(leaf.sharding.spec)
           for path, leaf in jax.tree_util.tree_leaves_with_path(state.params)}
  return jax.device_get(state), metrics, specs


def max_diff(a, b) -> float:
  diffs = jax.tree_util.tree_map(lambda x, y: float(np.max(np.abs(np.asarray(x, np.float64)
                                                                   - np.asarray(y, np.float64)))), a, b)
  return max(jax.tree_util.tree_leaves(diffs), default=0.0)


def main():
  objective = sys.argv[1] if len(sys.argv) > 1 else "self_teaching"
  assert jax.device_count() == 8, jax.device_count()
  ref_state, ref_metrics, _ = run({"data": -1, "fsdp": 1}, devices=jax.devices()[:1], objective=objective)
  out = {"objective": objective}
  for name, mesh in (("data8", {"data": -1, "fsdp": 1}), ("data4_fsdp2", {"data": 4, "fsdp": 2})):
    state, metrics, specs = run(mesh, objective=objective)
    out[name] = {
        "loss": [float(m["loss"]) for m in metrics],
        "ref_loss": [float(m["loss"]) for m in ref_metrics],
        "metrics": max_diff(metrics, ref_metrics),
        "sigreg": max(abs(float(m["sigreg"]) - float(r["sigreg"])) for m, r in zip(metrics, ref_metrics)),
        "params": max_diff(state.params, ref_state.params),
        "batch_stats": max_diff(state.batch_stats, ref_state.batch_stats),
        "opt_state": max_diff(state.opt_state, ref_state.opt_state),
        "step": int(state.step),
        "sharded_params": sorted(k for k, v in specs.items() if "fsdp" in v),
    }
  print(json.dumps(out))


if __name__ == "__main__":
  main()
