"""The playground notebook executes top to bottom (few steps)."""

import os
import re

import nbformat
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_notebook_executes_top_to_bottom(monkeypatch):
  nbclient = pytest.importorskip("nbclient")
  path = os.path.join(ROOT, "notebooks", "ablations.ipynb")
  nb = nbformat.read(path, as_version=4)
  # The kernel inherits this process's environment (monkeypatch restores it after).
  monkeypatch.setenv("LEAE_NOTEBOOK_STEPS", "8")
  # The kernel must import this checkout, whatever else is installed.
  monkeypatch.setenv("PYTHONPATH", ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  monkeypatch.setenv("JAX_THREEFRY_PARTITIONABLE", "0")
  # Unoptimised XLA (conftest's suite-wide setting) runs the notebook's rotation
  # view ~4x slower (about 70 s of the test's 75); its compile is cached after the first run.
  monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "0")
  client = nbclient.NotebookClient(nb, timeout=180, kernel_name="python3",
                                   resources={"metadata": {"path": os.path.join(ROOT, "notebooks")}})
  client.execute()
  text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
  assert f"leae_jax imports from {ROOT}" in text  # the install cell found this checkout
  # The shipped pair reconstructs its own test images first, in seconds.
  seconds = float(re.search(r"loaded and reconstructed in ([0-9.]+) s", text).group(1))
  assert seconds < 60, text
  assert "cifar10_self_teaching: 1955 steps" in text and "cifar10_mse: 1955 steps" in text
  assert "8 steps per run" in text
  assert "test PSNR (dB):" in text and "step_frozen" in text and "live" in text
  images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
               for o in c.get("outputs", []))
  assert images >= 4  # shipped models, rotation demo, loss curves, reconstructions
