"""The default paths work without TensorFlow, which only preparing TFDS copies needs.

TensorFlow is an extra (`pip install -e ".[prepare]"`). These tests run real
processes in which it cannot be found, as if not installed (every import finder
answers "no such module", so `importlib.util.find_spec('tensorflow')` is None
and `import tensorflow` raises ModuleNotFoundError, as TFDS and etils expect of
a missing TensorFlow), and check that training, evaluation and the benchmark's
input fallback still work, and that asking to build a TFDS dataset ends in one
line naming the install command.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from leae_jax import data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Prepended to every script run here: TensorFlow cannot be found from then on.
HIDE_TENSORFLOW = textwrap.dedent("""\
    import sys

    class _NoTensorFlow:
      def __init__(self, finder):
        self._finder = finder

      def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
          return None
        find_spec = getattr(self._finder, "find_spec", None)
        return find_spec(name, path, target) if find_spec else None

      def __getattr__(self, attr):
        return getattr(self._finder, attr)

    sys.meta_path[:] = [_NoTensorFlow(finder) for finder in sys.meta_path]
    """)


def run_without_tensorflow(script: str, *, timeout: int = 600) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [ROOT, os.path.join(ROOT, "tests"), os.environ.get("PYTHONPATH", "")]),
             JAX_THREEFRY_PARTITIONABLE="0")
  return subprocess.run([sys.executable, "-c", HIDE_TENSORFLOW + textwrap.dedent(script)],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_hiding_works():
  proc = run_without_tensorflow("""
      import importlib.util
      assert importlib.util.find_spec("tensorflow") is None
      try:
        import tensorflow
      except ModuleNotFoundError:
        print("hidden")
      """)
  assert proc.returncode == 0 and proc.stdout.strip() == "hidden", proc.stderr[-3000:]


def test_train_evaluate_and_bench_input_without_tensorflow(tmp_path):
  """shapes and fashion_mnist (IDX) train and evaluate; the benchmark mocks cifar10."""
  fashion = os.path.isdir(data.DEFAULT_IDX_DIR)
  proc = run_without_tensorflow(f"""
      import json, math, os
      from leae_jax import base_config, bench, evaluate, train
      import helpers

      tmp, empty_tfds = {str(tmp_path)!r}, {str(tmp_path / "tfds")!r}
      os.makedirs(empty_tfds)  # no prepared TFDS copy: fashion_mnist reads the IDX files
      runs = ["shapes"] + (["fashion_mnist"] if {fashion!r} else [])
      for name in runs:
        config = helpers.tiny_config(dataset=name, num_train_steps=2, eval_every_steps=2,
                                      data_dir=empty_tfds)
        workdir = os.path.join(tmp, name)
        final = train.train_and_evaluate(train.resolve(config), workdir)
        assert math.isfinite(final["psnr"]), final
        result = evaluate.evaluate_workdir(workdir, max_batches=1, probe=False, figures=False)
        assert result["step"] == 2 and math.isfinite(result["psnr"]), result
        print(name, "ok")

      # The benchmark's input measurement falls back to TFDS mock records.
      config = train.resolve(helpers.tiny_config(
          dataset="cifar10", data_dir=empty_tfds, num_workers=0))
      result = bench.measure_input(config, batches=1, warmup=1)
      assert result["input_source"] == "tfds_mock", result
      print("bench ok")
      assert "tensorflow" not in sys.modules
      """)
  assert proc.returncode == 0, proc.stderr[-5000:]
  want = ["shapes ok"] + (["fashion_mnist ok"] if fashion else []) + ["bench ok"]
  assert [l for l in proc.stdout.splitlines() if l.endswith(" ok")] == want, proc.stdout[-3000:]
  if not fashion:
    pytest.skip(f"shapes only: no Fashion-MNIST IDX files in {data.DEFAULT_IDX_DIR}")


def test_building_a_tfds_dataset_without_tensorflow_is_one_error_line(tmp_path):
  empty_tfds = tmp_path / "tfds"
  empty_tfds.mkdir()
  args = ["leae_jax.main", "--config=configs/cifar.py", f"--workdir={tmp_path / 'run'}",
          f"--config.data_dir={empty_tfds}", "--config.download=true",
          "--config.model.hidden=8", "--config.batch_size=8", "--config.num_train_steps=1"]
  proc = run_without_tensorflow(f"""
      import runpy
      sys.argv = {args!r}
      runpy.run_module("leae_jax.main", run_name="__main__", alter_sys=True)
      """)
  assert proc.returncode != 0
  lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
  assert lines and lines[-1].startswith(
      'error: preparing cifar10 needs TensorFlow: pip install -e ".[prepare]"'), proc.stderr[-3000:]
  assert str(empty_tfds) in lines[-1]
  assert "Traceback" not in proc.stderr
  assert not os.listdir(empty_tfds) or "downloads" not in os.listdir(empty_tfds)  # nothing fetched


def test_no_download_is_attempted_without_tensorflow(tmp_path, monkeypatch):
  """In-process: download=True without TensorFlow reads or fails, never downloads."""
  tfds = pytest.importorskip("tensorflow_datasets")

  def no_download(*args, **kwargs):
    raise AssertionError("a download that TensorFlow-less TFDS could not prepare")

  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_download)
  monkeypatch.setattr(data.tfds_source, "_tensorflow_installed", lambda: False)
  with pytest.raises(data.DatasetUnavailableError) as info:
    data.get_source("celeb_a", "train", data_dir=tmp_path, download=True)
  message = str(info.value)
  assert message.startswith('preparing celeb_a needs TensorFlow: pip install -e ".[prepare]"')
  assert "\n" not in message and str(tmp_path) in message
