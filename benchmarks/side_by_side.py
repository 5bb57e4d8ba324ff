"""JAX vs PyTorch on this machine, interleaved: `leae_jax.bench` and `pytorch_reference.py`.

  python benchmarks/side_by_side.py --torch_python=/tmp/torchenv/bin/python [--rounds=5]

Runs, in turn, each round: the JAX CIFAR step (`python -m leae_jax.bench
--config=configs/cifar.py --noinput`), the PyTorch step in NCHW (the layout
of the published implementation) and in channels-last. Interleaving spreads
the load of a shared (virtual) machine evenly over the contenders; the
medians are printed as one JSON line, with every individual run.

The PyTorch environment: `python3 -m venv --system-site-packages
/tmp/torchenv && /tmp/torchenv/bin/pip install torch`.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _last_json(cmd: list[str]) -> dict:
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
  if proc.returncode:
    raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--torch_python", default="/tmp/torchenv/bin/python")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--threads", type=int, default=2)
  args = parser.parse_args()
  contenders = {
      "jax": [sys.executable, "-m", "leae_jax.bench", "--config=configs/cifar.py", "--noinput",
              f"--steps={args.steps}"],
      "pytorch_nchw": [args.torch_python, "benchmarks/pytorch_reference.py", f"--steps={args.steps}",
                       f"--threads={args.threads}"],
      "pytorch_channels_last": [args.torch_python, "benchmarks/pytorch_reference.py",
                                f"--steps={args.steps}", f"--threads={args.threads}",
                                "--channels_last"],
  }
  runs: dict[str, list[float]] = {name: [] for name in contenders}
  for r in range(args.rounds):
    for name, cmd in contenders.items():
      runs[name].append(_last_json(cmd)["images_per_s"])
      print(f"round {r}: {name} {runs[name][-1]:.1f} images/s", file=sys.stderr, flush=True)
  medians = {name: round(statistics.median(v), 1) for name, v in runs.items()}
  print(json.dumps({
      "median_images_per_s": medians,
      "jax_over_pytorch_nchw": round(medians["jax"] / medians["pytorch_nchw"], 3),
      "jax_over_pytorch_channels_last": round(medians["jax"] / medians["pytorch_channels_last"], 3),
      "runs": runs, "steps": args.steps, "threads": args.threads,
  }), flush=True)


if __name__ == "__main__":
  main()
