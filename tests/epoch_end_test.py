"""Epoch ends (docs/fidelity.md row 28): each epoch a permutation ending with the smaller batch.

The published runs iterated `DataLoader(shuffle=True, drop_last=False)`: every
epoch a fresh permutation, cut into `N // B` full batches and one of `N mod
B` images. `config.epoch_end='partial'` (the default) does the same;
'continue' is our earlier fixed-size cut across epoch boundaries. Tiny: 20
records in batches of 8 (8, 8, 4 an epoch).
"""

import dataclasses
import json
import os

import jax
import numpy as np
import pytest

from leae_jax import base_config
from leae_jax import data
from leae_jax import outputs
from leae_jax import train

import helpers
from checkpoints_test import finished_steps, restore_final

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N, B = 20, 8


def _ids(num_records=N):
  source = data.get_source("shapes", "train", num_records=num_records)
  ids = {source[i]["image"].tobytes(): i for i in range(num_records)}
  assert len(ids) == num_records  # every generated image is distinct
  return ids


def _global_batches(steps, *, shards=1, start_step=0, multiple=None, batch_size=B, **kwargs):
  """The first `steps` global batches, each assembled from `shards` simulated processes."""
  iterators = [iter(data.create_train_loader(
      "shapes", batch_size=batch_size, seed=3, num_records=N, shard_index=i, shard_count=shards,
      multiple=multiple, start_step=start_step, **kwargs)) for i in range(shards)]
  return [np.concatenate([next(it)["image"] for it in iterators]) for _ in range(steps)]


def test_partial_epochs_are_8_8_4_each_a_new_permutation_of_every_record():
  ids = _ids()
  batches = [[ids[x.tobytes()] for x in b] for b in _global_batches(9, epoch_end="partial")]
  assert [len(b) for b in batches] == [8, 8, 4] * 3
  epochs = [sum(batches[3 * e:3 * e + 3], []) for e in range(3)]
  for epoch in epochs:
    assert sorted(epoch) == list(range(N))  # every record exactly once an epoch
  assert len({tuple(e) for e in epochs}) == 3  # a different permutation each epoch
  schedule = data.BatchSchedule(N, B, "partial")
  assert schedule.steps_per_epoch == 3 and schedule.last_batch_size == 4
  assert schedule.num_steps(3) == 9 and schedule.epochs_done(6) == 2.0
  assert [schedule.batch(s) for s in (2, 3, 5)] == [(16, 4), (20, 8), (36, 4)]


def test_steps_from_num_epochs_follow_the_mode(monkeypatch):
  monkeypatch.setitem(data._REGISTRY, "shapes",  # pylint: disable=protected-access
                      dataclasses.replace(data.dataset_info("shapes"), num_train=N))
  steps = lambda **kw: train.resolve(helpers.tiny_config(
      num_train_steps=-1, num_epochs=3, **kw)).num_train_steps
  assert base_config.get_base_config().epoch_end == "partial"  # the published default
  assert steps() == 9  # epochs · ⌈N/B⌉
  assert steps(epoch_end="continue") == 7  # ⌊epochs·N/B⌋
  with pytest.raises(ValueError, match="Unknown epoch_end 'drop'"):
    steps(epoch_end="drop")


def test_step_to_batch_depends_only_on_seed_and_step():
  # Resuming at any step reads what an uninterrupted run reads there: before,
  # at and after the smaller batch, and across epochs.
  straight = _global_batches(8)
  for start in (2, 3, 5):
    for want, got in zip(straight[start:], _global_batches(8 - start, start_step=start)):
      np.testing.assert_array_equal(want, got)
  other_seed = iter(data.create_train_loader("shapes", batch_size=B, seed=4, num_records=N,
                                             shard_index=0, shard_count=1))
  assert not np.array_equal(next(other_seed)["image"], straight[0])


def test_continue_reproduces_the_old_fixed_batches():
  # 'continue' is the earlier cut: the grain DataLoader's global order
  # (create_loader, GlobalOrderSampler), batches of 8 straddling the epochs,
  # the same on 1 and 2 processes and from any start.
  def old(shards, start_index=0, n=8):
    iterators = [iter(data.create_loader("shapes", "train", batch_size=B // shards, seed=3,
                                         num_records=N, shard_index=i, shard_count=shards,
                                         start_index=start_index)) for i in range(shards)]
    return [np.concatenate([next(it)["image"] for it in iterators]) for _ in range(n)]

  reference = old(1)
  for shards in (1, 2):
    for want, got in zip(reference, _global_batches(8, shards=shards, epoch_end="continue")):
      np.testing.assert_array_equal(want, got)
  for want, got in zip(old(2, start_index=5 * B, n=3),
                       _global_batches(3, start_step=5, epoch_end="continue")):
    np.testing.assert_array_equal(want, got)
  # The partial cut reads the same permutations: epoch 0 is the old first 20 records.
  np.testing.assert_array_equal(np.concatenate(_global_batches(3)),
                                np.concatenate(reference)[:N])
  schedule = data.BatchSchedule(N, B, "continue")
  assert schedule.last_batch_size == 0 and schedule.num_steps(3) == 3 * N // B
  assert [schedule.batch(s) for s in (0, 2, 3)] == [(0, 8), (16, 8), (24, 8)]


def test_the_smaller_batch_is_trimmed_to_split_over_three_shards():
  # On 3 data shards, N mod B must split 3 ways: 20 mod 12 = 8 → 6 (exact on
  # one device), 20 mod 9 = 2 → 0: no smaller batch, 2 records sit the epoch out.
  assert data.BatchSchedule(N, 12, "partial", 1).last_batch_size == 8
  trimmed = data.BatchSchedule(N, 12, "partial", 3)
  assert (trimmed.last_batch_size, trimmed.steps_per_epoch) == (6, 2)
  assert [trimmed.batch(s) for s in range(4)] == [(0, 12), (12, 6), (20, 12), (32, 6)]
  skipped = data.BatchSchedule(N, 9, "partial", 3)
  assert (skipped.last_batch_size, skipped.steps_per_epoch, skipped.num_steps(2)) == (0, 2, 4)
  with pytest.raises(ValueError, match="make no batch"):
    data.BatchSchedule(2, 8, "partial", 4)
  # Three simulated processes each read a third of every global batch: the
  # global batches equal one process's (with the same trimming), 4 of 6 rows
  # and 2 of 6 in the smaller batch.
  ids = _ids()
  one = _global_batches(4, batch_size=12, multiple=3)
  three = _global_batches(4, batch_size=12, shards=3)
  assert [len(b) for b in three] == [12, 6, 12, 6]
  for a, b in zip(one, three):
    np.testing.assert_array_equal(a, b)
  epoch = [ids[x.tobytes()] for x in np.concatenate(three[:2])]
  assert len(set(epoch)) == 18  # each used record once; 2 trimmed
  with pytest.raises(ValueError, match="multiples of the 3 shards"):
    data.create_train_loader("shapes", batch_size=12, seed=0, num_records=N, shard_index=0,
                             shard_count=3, multiple=4)


def test_training_through_the_smaller_batch_resumes_bitwise(tmp_path, monkeypatch):
  # Two epochs of 20 records in batches of 8: steps of 8, 8, 4, 8, 8, 4
  # images. A run stopped right after the smaller batch (a checkpoint at step
  # 3) and resumed ends bit for bit where an uninterrupted run ends.
  monkeypatch.setitem(data._REGISTRY, "shapes",  # pylint: disable=protected-access
                      dataclasses.replace(data.dataset_info("shapes"), num_train=N))
  seen = []  # images per train_step call

  class SharedSteps(train.Trainer):
    """Records batch sizes; the runs share their jitted functions (one compile per shape).

    The runs differ only in num_train_steps, which the constant-rate step does not read.
    """

    shared: dict = {}

    def __init__(self, *args, **kwargs):
      super().__init__(*args, **kwargs)
      for name in ("_init_state", "train_step"):
        setattr(self, name, self.shared.setdefault(name, getattr(self, name)))
      step = self.train_step

      def counted(state, images):
        seen.append(images.shape[0])
        return step(state, images)

      self.train_step = counted

  monkeypatch.setattr(train, "Trainer", SharedSteps)
  monkeypatch.setattr(outputs, "plot_curves", lambda *args, **kwargs: None)  # not tested here
  config = lambda **kw: helpers.tiny_config(**{"num_train_steps": -1, "num_epochs": 2,
                                               "log_every_steps": 1, **kw})
  straight, resumed = tmp_path / "straight", tmp_path / "resumed"
  assert train.train_and_evaluate(config(), str(straight))["step"] == 6
  assert seen == [8, 8, 4, 8, 8, 4]
  assert SharedSteps.shared["train_step"]._cache_size() == 2  # pylint: disable=protected-access
  del seen[:]
  train.train_and_evaluate(config(num_train_steps=3), str(resumed))
  assert max(finished_steps(resumed)) == 3
  train.train_and_evaluate(config(), str(resumed))
  assert seen == [8, 8, 4, 8, 8, 4]  # steps 0-2, then 3-5 after the resume
  a, b = jax.device_get(restore_final(straight)), jax.device_get(restore_final(resumed))
  assert int(a.step) == int(b.step) == 6
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(x, y, err_msg=jax.tree_util.keystr(path))
  # One record a step, the smaller batch too, with the epochs completed.
  records = {r["step"]: r for r in outputs.read_metrics(str(resumed)) if "train/loss" in r}
  assert sorted(records) == [1, 2, 3, 4, 5, 6]
  np.testing.assert_allclose([records[s]["train/epoch"] for s in (1, 3, 6)], [1 / 3, 1.0, 2.0])
  assert json.load(open(straight / "config.json"))["num_train_steps"] == 6


def test_the_smaller_batch_is_trimmed_and_split_over_three_devices():
  # tests/three_device_epochs.py on 3 simulated CPU devices: the step count
  # and the loader trim the smaller batch to 6 of 8 (resp. 0 of 2, left
  # out), and the 6 images reach the train step as a global batch, 2 a device.
  out = helpers.run_on_devices("three_device_epochs.py", 3)
  assert out["devices"] == 3
  assert out["trimmed"] == {"num_train_steps": 4, "sizes": [12, 6, 12, 6], "last_batch_size": 6}
  assert out["skipped"] == {"num_train_steps": 4, "sizes": [9, 9, 9, 9], "last_batch_size": 0}
  assert out["global_shape"] == [6, 32, 32, 1] and out["shard_rows"] == [2]
