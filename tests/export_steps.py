"""Exports every config's jitted train and eval steps for GPU and TPU (run by export_test.py).

Run with `XLA_FLAGS=--xla_force_host_platform_device_count=N`: with N = 1 the
steps are exported for one device, with N = 8 over a 4 × 2 data × fsdp mesh
(parameters and optimizer state split over `fsdp`); one device exports only
`ONE_DEVICE_CONFIGS`. `jax.export` lowers for platforms this machine does not
have, so an op with no GPU or TPU lowering fails here; and it refuses custom
calls without a stability guarantee, so a host callback (`jax.debug.print`,
`pure_callback`) in a step fails too.
Prints one JSON line: per config and step, the exported platforms and the
size of the StableHLO module.
"""

import json
import sys

import jax
import jax.numpy as jnp
from jax import export
import numpy as np

from leae_jax import base_config
from leae_jax import train

PLATFORMS = ("cuda", "tpu")
# Every published config, the baselines and the toy's later architecture.
CONFIGS = ("shapes", "shapes:residual_arch", "fashion_mnist", "cifar", "cifar:mse",
           "cifar:detail_stack,ema", "celeba", "celeba_masked", "celeba_masked:latent=512,masked_mse")
# On one device a step has the same ops as on the mesh, minus the partitioning:
# every config's ops are checked over 8 devices, so one device needs only a grey
# and a colour config to show the unsharded path lowers (and saves ~35 s).
ONE_DEVICE_CONFIGS = ("shapes", "cifar")


def export_steps(spec: str, fsdp: int) -> dict[str, dict]:
  config = base_config.load(spec)
  config.mesh.fsdp = fsdp
  config.num_train_steps = 10  # no dataset size needed
  config.batch_size = 8 * jax.device_count()  # the step's code does not depend on the batch size
  config.eval_batch_size = 8 * jax.device_count()
  config = train.resolve(config)
  trainer = train.Trainer(config)
  state, images = trainer.abstract_step_args()
  key = jax.eval_shape(lambda: jax.random.key(0))
  out = {}
  for name, fn, args in (("train_step", trainer.train_step, (state, images)),
                         ("eval_step", trainer.eval_step, (state, images, key))):
    exported = export.export(fn, platforms=PLATFORMS)(*args)
    out[name] = {"platforms": list(exported.platforms), "mlir_chars": len(exported.mlir_module()),
                 "devices": exported.nr_devices}
  return out


def refused(fn) -> bool:
  """Whether exporting `fn` for GPU and TPU fails (as it must for a host callback)."""
  try:
    export.export(jax.jit(fn), platforms=PLATFORMS)(jax.ShapeDtypeStruct((4,), jnp.float32))
  except Exception:  # pylint: disable=broad-except  (jax raises ValueError today)
    return True
  return False


def main() -> None:
  fsdp = 2 if jax.device_count() > 1 else 1
  configs = CONFIGS if jax.device_count() > 1 else ONE_DEVICE_CONFIGS
  result = {spec: export_steps(spec, fsdp) for spec in configs}
  # The controls: the check does catch host callbacks.
  controls = {
      "pure_callback": refused(lambda x: jax.pure_callback(
          np.sin, jax.ShapeDtypeStruct(x.shape, x.dtype), x)),
      "debug_print": refused(lambda x: (jax.debug.print("{}", x), x * 2)[1]),
  }
  print(json.dumps({"devices": jax.device_count(), "fsdp": fsdp, "configs": result,
                    "callbacks_refused": controls}))


if __name__ == "__main__":
  sys.exit(main())
