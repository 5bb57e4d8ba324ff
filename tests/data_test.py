"""Tests for leae_jax.data: registry, shapes, loaders (shuffle/shard/resume), IDX and TFDS paths."""

from __future__ import annotations

import dataclasses
import gzip
import os

import numpy as np
import pytest

from leae_jax import data

NAMES = ("celeb_a", "cifar10", "fashion_mnist", "image_folder", "shapes", "synthetic_series",
         "uea_basic_motions")
ONE_SHARD = dict(shard_index=0, shard_count=1)  # Explicit, so tests need not import jax.


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def _shapes_loader(**kwargs):
  defaults = dict(batch_size=4, seed=0, shard_index=0, shard_count=1, num_records=32)
  defaults.update(kwargs)
  return data.create_loader("shapes", "train", **defaults)


# --- registry ---------------------------------------------------------------


def test_unknown_name_lists_valid_names():
  for call in (
      lambda: data.dataset_info("mnist"),
      lambda: data.get_source("mnist", "train"),
      lambda: data.create_loader("mnist", "train", batch_size=2, seed=0),
  ):
    with pytest.raises(ValueError) as info:
      call()
    message = str(info.value)
    assert "\n" not in message
    assert "'mnist'" in message
    for name in NAMES:
      assert name in message


def test_unknown_split_raises():
  with pytest.raises(ValueError, match="train, test"):
    data.get_source("shapes", "validation")


def test_registry_entries():
  assert data.valid_names() == NAMES
  shapes = data.dataset_info("shapes")
  assert (shapes.image_size, shapes.channels, shapes.num_classes, shapes.has_labels) == (32, 1, 3, True)
  assert (shapes.num_train, shapes.num_test) == (10_000, 2_000)
  fmnist = data.dataset_info("fashion_mnist")
  assert (fmnist.image_size, fmnist.channels, fmnist.num_classes) == (32, 1, 10)
  assert (fmnist.num_train, fmnist.num_test) == (60_000, 10_000)
  assert data.dataset_info("cifar10").channels == 3
  celeb = data.dataset_info("celeb_a")
  assert (celeb.image_size, celeb.has_labels, celeb.num_classes) == (128, False, None)
  with pytest.raises(dataclasses.FrozenInstanceError):
    celeb.image_size = 64  # type: ignore[misc]


# --- shapes -----------------------------------------------------------------


def test_shapes_is_deterministic_per_index_seed_and_split():
  source = data.get_source("shapes", "train")
  assert len(source) == 10_000
  assert len(data.get_source("shapes", "test")) == 2_000
  first = source[7]["image"]
  np.testing.assert_array_equal(first, source[7]["image"])
  np.testing.assert_array_equal(first, data.get_source("shapes", "train")[7]["image"])
  assert not np.array_equal(first, source[8]["image"])
  assert not np.array_equal(first, data.get_source("shapes", "test")[7]["image"])
  assert not np.array_equal(first, data.get_source("shapes", "train", shapes_seed=1)[7]["image"])


def _reference_shape_masks() -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
  """Every shape the published toy generator can draw on its 28×28 canvas.

  Written from the reference's rules, independently of `data.ShapesSource`:
  centre (cx, cy) in 5..22, radius 3..8; disc d ≤ r, ring |d − r| ≤ 1.5,
  square |dx|, |dy| ≤ r (x = column, y = row), clipped at the border.
  """
  y, x = np.mgrid[0:28, 0:28].astype(np.float64)
  masks, params = [], []
  for kind in range(3):
    for cx in range(5, 23):
      for cy in range(5, 23):
        for r in range(3, 9):
          d = np.hypot(x - cx, y - cy)
          if kind == 0:
            m = d <= r
          elif kind == 1:
            m = np.abs(d - r) <= 1.5
          else:
            m = (np.abs(x - cx) <= r) & (np.abs(y - cy) <= r)
          masks.append(m.ravel())
          params.append((kind, cx, cy, r))
  return np.stack(masks), params


def test_shapes_follow_the_published_toy_distribution():
  source = data.get_source("shapes", "train")
  masks, params = _reference_shape_masks()
  found, intensities = [], []
  for index in range(200):
    record = source[index]
    image = record["image"]
    assert image.shape == (32, 32, 1) and image.dtype == np.float32
    assert record["label"].dtype == np.int32
    # A 28×28 canvas zero-padded by 2 px on every side.
    assert not image[:2].any() and not image[-2:].any()
    assert not image[:, :2].any() and not image[:, -2:].any()
    canvas = image[2:30, 2:30, 0]
    values = np.unique(canvas)
    # Black background plus exactly one shape intensity in [0.3, 1.0).
    assert len(values) == 2 and values[0] == 0.0 and 0.3 <= values[1] < 1.0
    intensities.append(values[1])
    match = np.flatnonzero((masks == (canvas > 0).ravel()).all(axis=1))
    assert len(match) >= 1, f"record {index} is no shape the published generator draws"
    kinds = {params[m][0] for m in match}
    assert int(record["label"]) in kinds
    found.append(params[match[0]])
  kinds, cxs, cys, radii = map(np.array, zip(*found))
  # Every kind, centre extreme and radius of the ranges occurs in 200 draws.
  assert set(kinds) == {0, 1, 2} and set(radii) == set(range(3, 9))
  assert cxs.min() <= 6 and cxs.max() >= 21 and cys.min() <= 6 and cys.max() >= 21
  assert min(intensities) < 0.4 and max(intensities) > 0.9


def test_shapes_other_image_size_scales_the_geometry():
  source = data.get_source("shapes", "train", image_size=56, num_records=50)
  assert len(source) == 50
  assert source[0]["image"].shape == (56, 56, 1)
  assert (source.min_radius, source.max_radius, source.margin) == (6, 16, 10)
  native = data.get_source("shapes", "train", image_size=28)
  assert (native.canvas, native.max_radius) == (28, 8)


# --- loader -----------------------------------------------------------------


def test_loader_batches_have_shapes_and_dtypes():
  # Default sharding comes from jax (a single process here).
  loader = data.create_loader("shapes", "train", batch_size=8, seed=0, num_records=64)
  batch = next(iter(loader))
  assert set(batch) == {"image", "label"}
  assert batch["image"].shape == (8, 32, 32, 1) and batch["image"].dtype == np.float32
  assert batch["label"].shape == (8,) and batch["label"].dtype == np.int32
  assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0


def test_shuffle_is_seeded():
  first = _take(iter(_shapes_loader(seed=3)), 3)
  again = _take(iter(_shapes_loader(seed=3)), 3)
  other = _take(iter(_shapes_loader(seed=4)), 3)
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
  assert any(not np.array_equal(a["image"], b["image"]) for a, b in zip(first, other))
  # Unshuffled order is the source order.
  source = data.get_source("shapes", "train", num_records=32)
  batch = next(iter(_shapes_loader(shuffle=False)))
  np.testing.assert_array_equal(batch["label"], [source[i]["label"] for i in range(4)])


def _record_ids(source, num_records):
  ids = {source[i]["image"].tobytes(): i for i in range(num_records)}
  assert len(ids) == num_records  # Every generated image is distinct.
  return ids


def test_contiguous_shards_are_disjoint_and_cover_the_data():
  ids = _record_ids(data.get_source("shapes", "train", num_records=24), 24)
  seen = []
  for shard_index in range(2):
    loader = _shapes_loader(
        num_records=24, shard_index=shard_index, shard_count=2, num_epochs=1, batch_size=5,
        drop_remainder=False, global_order=False,
    )
    seen.append([ids[img.tobytes()] for batch in loader for img in batch["image"]])
  assert len(seen[0]) == len(seen[1]) == 12
  assert not set(seen[0]) & set(seen[1])
  assert sorted(seen[0] + seen[1]) == list(range(24))
  # An uneven split drops the remainder so that both shards have equal length.
  lengths = [
      sum(len(b["label"]) for b in _shapes_loader(
          num_records=25, shard_index=i, shard_count=2, num_epochs=1, drop_remainder=False,
          global_order=False))
      for i in range(2)
  ]
  assert lengths == [12, 12]


def test_multiple_epochs_reshuffle_and_repeat():
  ids = _record_ids(data.get_source("shapes", "train", num_records=16), 16)
  loader = _shapes_loader(num_records=16, num_epochs=2, batch_size=16)
  epochs = [[ids[img.tobytes()] for img in batch["image"]] for batch in loader]
  assert len(epochs) == 2
  assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(16))
  assert epochs[0] != epochs[1]


def test_global_batches_do_not_depend_on_the_number_of_shards():
  def global_batches(shards, start_index=0, n=8):
    iterators = [iter(_shapes_loader(num_records=20, batch_size=8 // shards, seed=3, shard_index=i,
                                     shard_count=shards, start_index=start_index))
                 for i in range(shards)]
    return [np.concatenate([next(it)["image"] for it in iterators]) for _ in range(n)]

  one, two, four = global_batches(1), global_batches(2), global_batches(4)
  for a, b, c in zip(one, two, four):  # 8 batches of 8 from 20 records: across epochs
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
  # The position after s steps is record s * global batch: resuming needs no iterator state.
  for a, b in zip(one[5:], global_batches(2, start_index=5 * 8, n=3)):
    np.testing.assert_array_equal(a, b)


def test_evaluation_pass_is_the_same_split_over_shards():
  source = data.get_source("shapes", "test", num_records=10)
  parts = [list(data.iterate_once("shapes", "test", batch_size=2, num_records=10, shard_index=i,
                                  shard_count=2)) for i in range(2)]
  assert [len(p) for p in parts] == [3, 3]
  labels = np.concatenate([np.concatenate([parts[0][b]["label"], parts[1][b]["label"]])
                           for b in range(3)])
  valid = np.concatenate([np.concatenate([parts[0][b]["valid"], parts[1][b]["valid"]])
                          for b in range(3)])
  np.testing.assert_array_equal(labels[valid], [source[i]["label"] for i in range(10)])
  assert valid.sum() == 10


def test_iterator_state_resumes_exactly():
  # 20 records, batches of 8: the restored position is inside the second epoch.
  kwargs = dict(num_records=20, batch_size=8, seed=11)
  iterator = iter(_shapes_loader(**kwargs))
  _take(iterator, 3)
  state = iterator.get_state()
  assert isinstance(state, bytes)
  expected = _take(iterator, 2)

  restored = iter(_shapes_loader(**kwargs))
  restored.set_state(state)
  for want, got in zip(expected, _take(restored, 2)):
    np.testing.assert_array_equal(want["image"], got["image"])
    np.testing.assert_array_equal(want["label"], got["label"])


def test_worker_process_gives_same_batches():
  in_process = _take(iter(_shapes_loader(seed=5)), 2)
  with_worker = _take(iter(_shapes_loader(seed=5, worker_count=1)), 2)
  for a, b in zip(in_process, with_worker):
    np.testing.assert_array_equal(a["image"], b["image"])


def test_iterate_once_covers_split_in_order():
  source = data.get_source("shapes", "test", num_records=10)
  batches = list(data.iterate_once("shapes", "test", batch_size=4, num_records=10, **ONE_SHARD))
  # Full batches; the last one is completed with the last record, marked invalid.
  assert [len(b["label"]) for b in batches] == [4, 4, 4]
  valid = np.concatenate([b["valid"] for b in batches])
  np.testing.assert_array_equal(valid, [True] * 10 + [False] * 2)
  labels = np.concatenate([b["label"] for b in batches])
  np.testing.assert_array_equal(labels, [source[min(i, 9)]["label"] for i in range(12)])
  assert data.num_examples("shapes", "test", num_records=10) == 10


# --- preprocessing ------------------------------------------------------------


def _apply(ops, record):
  for op in ops:
    record = op.map(record)
  return record


def test_preprocess_crop_resize_pad():
  rng = np.random.default_rng(0)
  celeb = {"image": rng.integers(0, 256, (218, 178, 3), dtype=np.uint8), "attributes": {}}
  out = _apply(data.preprocess_ops("celeb_a", 64), celeb)
  assert out["image"].shape == (64, 64, 3) and out["image"].dtype == np.float32
  assert out["label"] == -1 and out["label"].dtype == np.int32
  assert 0.0 <= out["image"].min() and out["image"].max() <= 1.0

  # The crop is centred: a marker row at the top of the tall image is cut off.
  tall = np.zeros((218, 178, 3), np.uint8)
  tall[:20] = 255
  assert _apply(data.preprocess_ops("celeb_a", 178), {"image": tall})["image"].max() == 0.0

  digit = {"image": np.full((28, 28, 1), 255, np.uint8), "label": np.int64(3)}
  padded = _apply(data.preprocess_ops("fashion_mnist"), digit)["image"]
  assert padded.shape == (32, 32, 1)
  assert padded[2:30, 2:30].min() == 1.0 and padded.sum() == 28 * 28
  resized = _apply(data.preprocess_ops("fashion_mnist", 64), digit)["image"]
  assert resized.shape == (64, 64, 1)
  forced_pad = _apply(data.preprocess_ops("fashion_mnist", 64, fit="pad"), digit)["image"]
  assert forced_pad.sum() == 28 * 28
  with pytest.raises(ValueError, match="fit"):
    data.preprocess_ops("cifar10", fit="stretch")


# --- Fashion-MNIST through the IDX fallback -----------------------------------


def _write_idx(path, array: np.ndarray, magic: int | None = None):
  array = np.asarray(array, np.uint8)
  magic = (0x08 << 8 | array.ndim) if magic is None else magic
  header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.tobytes())


@pytest.fixture
def fake_fashion(tmp_path):
  rng = np.random.default_rng(1)
  images = rng.integers(1, 256, (20, 28, 28), dtype=np.uint8)  # Non-zero, so padding is visible.
  labels = np.arange(20) % 10
  _write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
  _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
  empty_tfds = tmp_path / "tfds"
  empty_tfds.mkdir()
  return tmp_path, empty_tfds, images, labels


def test_fashion_mnist_idx_fallback(fake_fashion):
  idx_dir, empty_tfds, images, labels = fake_fashion
  batches = list(data.iterate_once(
      "fashion_mnist", "train", batch_size=8, idx_dir=idx_dir, data_dir=empty_tfds,
      download=False, shard_index=0, shard_count=1,
  ))
  valid = np.concatenate([b["valid"] for b in batches])
  image = np.concatenate([b["image"] for b in batches])[valid]
  label = np.concatenate([b["label"] for b in batches])[valid]
  assert image.shape == (20, 32, 32, 1) and image.dtype == np.float32
  np.testing.assert_array_equal(label, labels)
  np.testing.assert_allclose(image[:, 2:30, 2:30, 0], images / 255.0, atol=1e-6)
  border = image.copy()
  border[:, 2:30, 2:30] = 0
  assert not border.any()

  shuffled = next(iter(data.create_loader(
      "fashion_mnist", "train", batch_size=4, seed=0, image_size=16, idx_dir=idx_dir,
      data_dir=empty_tfds, shard_index=0, shard_count=1,
  )))
  assert shuffled["image"].shape == (4, 16, 16, 1)


def test_fashion_mnist_bad_magic_and_missing_files(fake_fashion, tmp_path):
  idx_dir, empty_tfds, images, _ = fake_fashion
  _write_idx(idx_dir / "train-images-idx3-ubyte.gz", images, magic=0x00000801)
  with pytest.raises(ValueError, match="magic number 0x00000801, expected 0x00000803"):
    data.get_source("fashion_mnist", "train", idx_dir=idx_dir, data_dir=empty_tfds)
  # The test split files were never written.
  with pytest.raises(data.DatasetUnavailableError) as info:
    data.get_source("fashion_mnist", "test", idx_dir=idx_dir, data_dir=empty_tfds)
  message = str(info.value)
  assert "apt-get install dataset-fashion-mnist" in message
  assert "idx_dir" in message and "t10k-images-idx3-ubyte.gz" in message


def test_read_idx_rejects_truncated_payload(tmp_path):
  path = tmp_path / "x.gz"
  with gzip.open(path, "wb") as f:
    f.write((0x0801).to_bytes(4, "big") + (5).to_bytes(4, "big") + b"\x01\x02")
  with pytest.raises(ValueError, match="truncated"):
    data.read_idx(path, ndim=1)


@pytest.mark.skipif(
    not os.path.isfile(os.path.join(data.DEFAULT_IDX_DIR, "train-images-idx3-ubyte.gz")),
    reason="dataset-fashion-mnist is not installed",
)
def test_real_fashion_mnist_files(tmp_path):
  sizes = {
      split: data.num_examples("fashion_mnist", split, data_dir=tmp_path, download=False)
      for split in ("train", "test")
  }
  assert sizes == {"train": 60_000, "test": 10_000}
  source = data.get_source("fashion_mnist", "test", data_dir=tmp_path)
  record = source[0]
  assert record["image"].shape == (28, 28, 1) and record["image"].dtype == np.uint8
  assert 0 <= int(record["label"]) < 10
  batch = next(iter(data.iterate_once("fashion_mnist", "test", batch_size=16, data_dir=tmp_path,
                                      shard_index=0, shard_count=1)))
  assert batch["image"].shape == (16, 32, 32, 1) and batch["image"].max() <= 1.0


# --- TFDS datasets (mocked; no network) ----------------------------------------


@pytest.fixture
def tfds():
  return pytest.importorskip("tensorflow_datasets")


def test_cifar10_with_mock_data(tfds):
  with tfds.testing.mock_data(num_examples=8):
    assert data.num_examples("cifar10", "train") == 8
    batch = next(iter(data.create_loader("cifar10", "train", batch_size=4, seed=0, **ONE_SHARD)))
    assert batch["image"].shape == (4, 32, 32, 3) and batch["image"].dtype == np.float32
    assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
    assert batch["image"].std() > 0
    assert batch["label"].dtype == np.int32 and ((0 <= batch["label"]) & (batch["label"] < 10)).all()
    small = next(iter(data.iterate_once("cifar10", "test", batch_size=8, image_size=16, **ONE_SHARD)))
    assert small["image"].shape == (8, 16, 16, 3)


def test_celeb_a_with_mock_data(tfds):
  with tfds.testing.mock_data(num_examples=4):
    batch = next(iter(data.create_loader("celeb_a", "train", batch_size=2, seed=0, **ONE_SHARD)))
    assert batch["image"].shape == (2, 128, 128, 3) and batch["image"].dtype == np.float32
    assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
    np.testing.assert_array_equal(batch["label"], [-1, -1])
    small = next(iter(data.iterate_once("celeb_a", "test", batch_size=4, image_size=32, **ONE_SHARD)))
    assert small["image"].shape == (4, 32, 32, 3)


def test_cifar10_missing_says_what_to_pass_in_one_short_line(tfds, tmp_path, monkeypatch):
  del tfds
  # The message with TensorFlow installed (tests/no_tensorflow_test.py: without).
  monkeypatch.setattr(data.tfds_source, "_tensorflow_installed", lambda: True)
  with pytest.raises(data.DatasetUnavailableError) as info:
    data.get_source("cifar10", "train", data_dir=tmp_path, download=False)
  message = str(info.value)
  assert isinstance(info.value, RuntimeError) and "\n" not in message
  assert message.startswith(f"data_dir={tmp_path} holds neither an image folder nor a TFDS copy "
                            "of cifar10: pass --config.data_dir=DIR")
  assert "--config.download=true" in message and "download=True" not in message
  assert len(message) - len(str(tmp_path)) < 300, message  # TFDS's own text is not embedded
  assert info.value.__cause__ is not None
  with pytest.raises(data.DatasetUnavailableError, match=r"data_dir=\S*nowhere does not exist; pass"):
    data.get_source("cifar10", "train", data_dir=tmp_path / "nowhere")
  assert not (tmp_path / "nowhere").exists()


def test_offline_download_fails_at_once_and_leaves_nothing(tfds, tmp_path, monkeypatch):
  def unreachable(address, timeout=None):
    raise OSError(101, "Network is unreachable")

  def no_download(*args, **kwargs):
    raise AssertionError("TFDS was asked to download although the host cannot be reached")

  monkeypatch.setattr(data.tfds_source, "_tensorflow_installed", lambda: True)
  monkeypatch.setattr(data.tfds_source.socket, "create_connection", unreachable)
  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_download)
  with pytest.raises(data.DatasetUnavailableError) as info:
    data.get_source("cifar10", "test", data_dir=tmp_path, download=True)
  message = str(info.value)
  assert message.startswith("cannot download cifar10: www.cs.toronto.edu (where TFDS fetches it "
                            "from) cannot be reached")
  assert "nothing was downloaded" in message and "--config.data_dir=DIR" in message
  assert os.listdir(tmp_path) == []


def test_failed_download_is_wrapped_and_cleaned_up(tfds, tmp_path, monkeypatch):
  def no_network(builder, *args, **kwargs):
    # What a download that breaks off leaves: a partial archive and the dataset folder.
    (tmp_path / "downloads").mkdir(exist_ok=True)
    (tmp_path / "downloads" / "cifar-10-binary.tar.gz.tmp").write_bytes(b"partial")
    (tmp_path / "cifar10").mkdir(exist_ok=True)
    raise ConnectionError("network is unreachable")

  (tmp_path / "mine.txt").write_text("kept")  # what was there before stays
  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_network)
  monkeypatch.setattr(data.tfds_source, "_tensorflow_installed", lambda: True)
  monkeypatch.setattr(data.tfds_source, "_check_network", lambda info: None)
  with pytest.raises(data.DatasetUnavailableError, match="downloading cifar10 into") as info:
    data.get_source("cifar10", "test", data_dir=tmp_path, download=True)
  assert isinstance(info.value.__cause__, ConnectionError)
  assert "ConnectionError: network is unreachable" in str(info.value)
  assert os.listdir(tmp_path) == ["mine.txt"]
