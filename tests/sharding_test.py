"""Tests for leae_jax.sharding: mesh shapes, FSDP specs, and sharded steps equal to one device."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from leae_jax import distributed
from leae_jax import sharding
from leae_jax import train

import helpers
from main_test import TINY, run_main

EIGHT_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}


def test_mesh_shape_fills_data_axis_and_rejects_mismatches():
  assert sharding.mesh_shape(None, 8) == (8, 1)
  assert sharding.mesh_shape(dict(data=-1, fsdp=2), 8) == (4, 2)
  assert sharding.mesh_shape(dict(data=2, fsdp=4), 8) == (2, 4)
  with pytest.raises(ValueError, match=r"data=3 x fsdp=1 = 3 devices does not match the 8 devices"):
    sharding.mesh_shape(dict(data=3, fsdp=1), 8)
  with pytest.raises(ValueError, match="mesh.fsdp=3 does not divide the 8 devices"):
    sharding.mesh_shape(dict(data=-1, fsdp=3), 8)


def test_fsdp_spec_splits_largest_divisible_dimension_of_large_tensors():
  assert sharding.fsdp_spec((3, 3, 64, 128), 2, 0) == P(None, None, None, "fsdp")
  assert sharding.fsdp_spec((3, 3, 3, 64), 4, 0) == P(None, None, None, "fsdp")
  assert sharding.fsdp_spec((5, 7), 2, 0) == P()  # nothing divisible: replicated
  assert sharding.fsdp_spec((3, 3, 64, 128), 2, 10**6) == P()  # below min_size: replicated
  assert sharding.fsdp_spec((), 2, 0) == P()
  assert sharding.fsdp_spec((64, 128), 1, 0) == P()


def test_batch_size_checks_name_the_shards():
  sharding.check_batch_size("batch_size", 16, (4, 2), 2)
  with pytest.raises(ValueError, match="batch_size=12 is not divisible by the 8 data shards"):
    sharding.check_batch_size("batch_size", 12, (4, 2), 1)
  with pytest.raises(ValueError, match="batch_size=9 is not divisible by the 2 processes"):
    sharding.check_batch_size("batch_size", 9, (1, 1), 2)
  # Only the training batch is checked: evaluation pads its batches instead
  # (eval_padding_test runs eval_batch_size=500 on 8 devices).


def test_trainer_state_and_batch_shardings_on_one_device():
  trainer = train.Trainer(train.resolve(helpers.tiny_config()))
  state = trainer.init_state()
  assert trainer.mesh.axis_names == ("data", "fsdp")
  leaf = jax.tree_util.tree_leaves(state.params)[0]
  assert leaf.sharding.spec == P()  # fsdp=1: replicated
  batch = trainer.global_batch(np.zeros((8, 32, 32, 1), np.float32))
  assert batch.sharding.spec == P(("data", "fsdp"))


def test_cluster_detection_reads_slurm_mpi_and_tpu_environments():
  assert not distributed.cluster_detected({})
  assert not distributed.cluster_detected({"SLURM_NTASKS": "1", "TPU_WORKER_HOSTNAMES": "localhost"})
  assert distributed.cluster_detected({"SLURM_NTASKS": "16"})
  assert distributed.cluster_detected({"OMPI_COMM_WORLD_SIZE": "2"})
  assert distributed.cluster_detected({"TPU_WORKER_HOSTNAMES": "t1-w-0,t1-w-1,t1-w-2,t1-w-3"})
  with pytest.raises(ValueError, match="Pass all of --coordinator_address"):
    distributed.initialize("auto", num_processes=2)
  with pytest.raises(ValueError, match="Unknown distributed mode 'maybe'"):
    distributed.initialize("maybe")
  assert not distributed.initialize("auto")  # no cluster here: single process


def test_sharded_steps_equal_single_device():
  # Three steps at a constant learning rate of the self_teaching objective with
  # the EMA judge and of the masked objective (tests/multidevice_step.py): on
  # an 8-way data mesh and a 4x2 data x fsdp mesh, metrics, params, batch
  # statistics, AdamW moments and the EMA judge equal the one-device run.
  out = helpers.run_on_devices("multidevice_step.py", 8)
  assert set(out) == {"self_teaching_ema", "masked_self_teaching"}
  for case, result in out.items():
    # Every leaf of the state moved over the three steps (so equality below is not vacuous).
    for key, change in result["moved"].items():
      assert change > 0, (case, key, change)
    meshes = [m for m in ("data8", "data4_fsdp2") if m in result]
    assert "data4_fsdp2" in meshes
    for mesh in meshes:
      r = result[mesh]
      assert r["step"] == 3
      np.testing.assert_allclose(r["loss"], r["ref_loss"], rtol=1e-5, atol=1e-5)
      for key in ("metrics", "sigreg", "params", "batch_stats", "opt_state", "ema_params"):
        if key == "ema_params" and case != "self_teaching_ema":
          assert r[key] is None
          continue
        assert r[key] < 1e-5, (case, mesh, key, r[key])
      # AdamW moments (and the EMA judge) are laid out exactly like their params.
      specs = r["specs"]
      assert specs["mu"] == specs["params"] and specs["nu"] == specs["params"], (case, mesh)
      if case == "self_teaching_ema":
        encoder = {k[len("encoder/"):]: v for k, v in specs["params"].items() if k.startswith("encoder/")}
        assert specs["ema"] == encoder, (mesh, specs["ema"], encoder)
      sharded = sorted(k for k, v in specs["params"].items() if "fsdp" in v)
      if mesh == "data8":
        assert not sharded
      else:
        # The fsdp mesh really splits the state (every conv kernel of the tiny model).
        assert "encoder/DownBlock_0/Conv_0/kernel" in sharded, sharded
        assert "decoder/UpBlock_0/Conv_0/kernel" in sharded, sharded
        if case == "self_teaching_ema":
          assert "fsdp" in specs["ema"]["DownBlock_0/Conv_0/kernel"]


@pytest.mark.parametrize("args, message", [
    (["--config.batch_size=12"], "error: batch_size=12 is not divisible by the 8 data shards"),
    (["--config.mesh.data=3"], "error: Mesh shape data=3 x fsdp=1 = 3 devices does not match the 8 devices"),
    (["--config.mesh.fsdp=3"], "error: mesh.fsdp=3 does not divide the 8 devices"),
    (["--num_processes=2"], "error: Pass all of --coordinator_address, --num_processes and --process_id"),
])
def test_cli_mesh_and_batch_errors_are_one_line(tmp_path, args, message):
  proc = run_main("--config=configs/shapes.py", f"--workdir={tmp_path}", *TINY, *args,
                  env=EIGHT_DEVICES, timeout=120)
  assert proc.returncode != 0
  assert proc.stderr.strip().splitlines()[-1].startswith(message), proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr
