"""Running the ladder: one config per (rung, seed, budget), trained in nested segments, evaluated
and stored as JSON; a finished result is never recomputed."""

from __future__ import annotations

import dataclasses
import gc
import glob
import json
import os
import re
import time
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from leae_jax.experiments.ladder.rungs import CURVE_RUNGS
from leae_jax.experiments.ladder.rungs import LADDERS
from leae_jax.experiments.ladder.rungs import Ladder
from leae_jax.experiments.ladder.rungs import RUNGS
from leae_jax.experiments.ladder.rungs import RUNG_NAMES
from leae_jax.experiments.ladder.rungs import Rung
from leae_jax.experiments.ladder.stats import load_results


def rung_config(rung: Rung, *, seed: int, steps: int, ladder: Ladder | None = None,
                batch_size: int | None = None, hidden: int | None = None,
                latent_channels: int | None = None, idx_dir: str | None = None,
                data_dir: str | None = None, prepared_dir: str | None = None,
                sigreg_slices: int | None = None, eval_batch_size: int | None = None):
  """The ladder's config (Fashion-MNIST's by default) with the rung's variant, seed and budget.

  Arguments left None keep the config's own value (the rung's variant may set
  them: `mse_published` trains at batch 64).
  """
  from leae_jax import base_config

  ladder = ladder or LADDERS["fashion_mnist"]
  c = base_config.load(f"{ladder.config}:{rung.variant}")
  c.seed = seed
  c.num_train_steps = steps
  for field, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
    if value is not None:
      c[field] = value
  for field, value in (("hidden", hidden), ("latent_channels", latent_channels)):
    if value is not None:
      c.model[field] = value
  for key, value in rung.model:
    c.model[key] = value
  if sigreg_slices is not None:
    c.objective.sigreg_slices = sigreg_slices
  c.log_every_steps = max(1, min(c.log_every_steps, steps // 20 or 1))
  c.eval_every_steps = 0  # the ladder evaluates each budget's checkpoint afterwards
  c.checkpoint_every_steps = max(1, min(steps, 400))
  c.progress_bar = False
  if idx_dir:
    c.idx_dir = idx_dir
  if data_dir:
    c.data_dir = data_dir
  if prepared_dir:
    c.prepared_dir = prepared_dir
    c.num_workers = 0  # prepared records read ~100× faster than a step trains: no worker processes
  return c


def result_path(out: str, rung: str, seed: int, step: int, suffix: str = ".json") -> str:
  return os.path.join(out, "runs", rung, f"seed{seed}_step{step}{suffix}")


@dataclasses.dataclass
class Job:
  rung: Rung
  seed: int
  budgets: tuple[int, ...]  # ascending


def plan(rungs: Iterable[str], seeds: Iterable[int], budgets: Iterable[int],
         curve_budgets: Iterable[int] = (), curve_rungs: Iterable[str] = CURVE_RUNGS) -> list[Job]:
  """One job per (rung, seed): its budgets in ascending order (curve rungs get more)."""
  rungs, curve_rungs = list(rungs), set(curve_rungs)
  unknown = sorted(set(rungs) - set(RUNG_NAMES))
  if unknown:
    raise ValueError(f"Unknown rungs {unknown}; valid: {', '.join(RUNG_NAMES)}.")
  jobs = []
  for rung in [r for r in RUNGS if r.name in rungs]:
    steps = set(budgets) | (set(curve_budgets) if rung.name in curve_rungs else set())
    for seed in seeds:
      jobs.append(Job(rung, int(seed), tuple(sorted(int(s) for s in steps))))
  return jobs


def _where_this_runs() -> dict[str, str]:
  """The platform, device kind and JAX version of this process (what `platform_of` reads)."""
  import jax  # pylint: disable=g-import-not-at-top  (the report alone needs no JAX)

  return {"platform": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
          "jax_version": jax.__version__}


def shown_out(out: str, default: str) -> str:
  """`--out` as the page's command shows it: the ladder's own folder (`default`, relative to a
  checkout) wherever that checkout is, so a command run as `--out=/abs/path/docs/results` reads
  `--out=docs/results`; any other folder as given."""
  if os.path.abspath(out).endswith(os.sep + os.path.normpath(default)):
    return default
  return out


def record_command(out: str, command: str) -> None:
  """Appends `command` and where it runs to `<out>/commands.txt` (once per distinct line),
  so a report can say what produced a folder of results."""
  where = _where_this_runs()
  line = f"{command}  # {where['platform']}: {where['device_kind']}"
  path = os.path.join(out, "commands.txt")
  seen = open(path).read().splitlines() if os.path.exists(path) else []
  if line not in seen:
    os.makedirs(out, exist_ok=True)
    with open(path, "a") as f:
      f.write(line + "\n")


def _samples_of_a_smaller_seed(out: str, rung: str, seed: int, step: int) -> bool:
  """Whether a smaller seed's samples are stored: the grid keeps the smallest seed's only,
  whichever seeds one command runs (a later `--seeds=1,2` adds none beside seed 0's)."""
  found = glob.glob(result_path(out, rung, 0, step, "_samples.npz").replace("seed0_", "seed*_"))
  return any(int(re.search(r"seed(\d+)_", os.path.basename(p)).group(1)) < seed for p in found)


def _save_samples(workdir: str, step: int, path: str, num_images: int = 8) -> None:
  """The first test images, their reconstructions (and masked ones) at `step`, as .npz."""
  from leae_jax import evaluate

  shown = evaluate.shown_images(workdir, num_images, step=step)
  np.savez_compressed(path, **{k: np.asarray(v, np.float16) for k, v in shown.items()})


def run(out: str, jobs: Sequence[Job], *, workdir_root: str, probe_train_examples: int = 10000,
        eval_batches: int = -1, log: Callable[[str], None] = print,
        train_fn: Callable[..., Any] | None = None, **config_kw) -> int:
  """Trains and evaluates every unfinished (rung, seed, budget) of `jobs`; returns how many ran.

  Finished results (their JSON exists) are skipped; an interrupted segment
  resumes from its workdir's checkpoints. Prints a line per run with the
  estimated time left (from the measured seconds per training step).
  """
  import jax  # pylint: disable=g-import-not-at-top  (the report alone needs no JAX)

  from leae_jax import evaluate
  from leae_jax import train

  train_fn = train_fn or train.train_and_evaluate
  # Breadth first: every run reaches the smallest budget before any goes on to
  # the next, so a stopped experiment leaves complete tables of the short
  # budgets rather than a few long runs (a run resumes from its workdir's
  # checkpoint at its previous budget).
  # Within a budget, seed by seed: a stopped experiment leaves every rung at
  # one seed, then at two (where verdicts start), rather than a few rungs at three.
  order = {r.name: i for i, r in enumerate(RUNGS)}
  todo = sorted(((job, b) for job in jobs for b in job.budgets
                 if not os.path.exists(result_path(out, job.rung.name, job.seed, b))),
                key=lambda jb: (jb[1], jb[0].seed, order[jb[0].rung.name]))
  total = len(todo)
  log(f"ladder: {sum(len(j.budgets) for j in jobs)} results planned, {total} to compute")

  def start_of(job: Job, budget: int) -> int:
    return max([b for b in job.budgets if b < budget], default=0)

  seconds_per_step = None
  for done, (job, budget) in enumerate(todo):
    workdir = os.path.join(workdir_root, job.rung.name, f"seed{job.seed}")
    path = result_path(out, job.rung.name, job.seed, budget)
    remaining = sum(b - start_of(jb, b) for jb, b in todo[done:])
    eta = "?" if seconds_per_step is None else f"{remaining * seconds_per_step / 60:.0f} min"
    log(f"[{done + 1}/{total}] {job.rung.name} seed {job.seed} → step {budget} "
        f"(est. time left {eta})")
    config = rung_config(job.rung, seed=job.seed, steps=budget, **config_kw)
    start = time.perf_counter()
    trained = train_fn(config, workdir)
    if isinstance(trained, dict) and trained.get("preempted"):
      # SIGTERM or Ctrl-C: the run is saved at its step; no result is stored as finished.
      log(f"stopped at step {trained.get('step')} of {budget}; rerun the same command to resume")
      return done
    train_wall = time.perf_counter() - start
    res = evaluate.evaluate_workdir(workdir, budget, max_batches=eval_batches,
                                    probe_train_examples=probe_train_examples, figures=False)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not _samples_of_a_smaller_seed(out, job.rung.name, job.seed, budget):
      _save_samples(workdir, budget, result_path(out, job.rung.name, job.seed, budget,
                                                 "_samples.npz"))
    wall = time.perf_counter() - start
    # Training and evaluation per step of the segment (approximate: a resumed
    # segment may have started past its previous budget).
    rate = wall / max(budget - start_of(job, budget), 1)
    seconds_per_step = rate if seconds_per_step is None else 0.5 * (seconds_per_step + rate)
    # Where it ran: results from different platforms agree only to within the
    # seed spread, so the report keeps them apart (`platform_of`).
    row = dict(res, rung=job.rung.name, seed=job.seed, steps=budget,
               description=job.rung.description, segment_wall_s=train_wall, total_wall_s=wall,
               **_where_this_runs())
    with open(path, "w") as f:
      json.dump(row, f, indent=1, sort_keys=True)
    log(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                    if k in ("rung", "seed", "steps", "psnr", "hole_psnr", "probe_accuracy",
                             "segment_wall_s")}))
    # Every run jits its own steps; without this the process kept each run's
    # executables and grew by ~0.8 GB a result (4.6 GB after 5).
    jax.clear_caches()
    gc.collect()
  return total


def _ladder_data(*, seed: int = 0, **config_kw):
  """`(config, data.describe's facts)` of the ladder's data: its first rung's resolved config."""
  from leae_jax import data
  from leae_jax import train

  config = train.resolve(rung_config(RUNGS[0], seed=seed, steps=1, **config_kw))
  return config, data.describe(config.dataset, **data.config_options(config))


def probe_count_mismatch(out: str, probe_train_examples: int, **config_kw) -> str | None:
  """Why `probe_train_examples` may not add results under `out`, or None if it may.

  A page compares probes only when every result and the reference probes used
  the same number of training codes; stored results say how many they used
  (-1 asks for the whole split, so it is read as the split's size as the
  dataset describes it). Checked before anything is trained.
  """
  stored: dict[int, str] = {}
  for row in load_results(out):
    if row.get("probe_train_examples") is not None:
      stored.setdefault(int(row["probe_train_examples"]), f"{row['rung']} seed {row['seed']}")
  ref_path = os.path.join(out, "reference_probes.json")
  if os.path.exists(ref_path):
    with open(ref_path) as f:
      stored.setdefault(int(json.load(f)["probe_train_examples"]), "the reference probes")
  if not stored or set(stored) == {probe_train_examples}:
    return None  # nothing to compare, or the same count: no need to read the data
  num_train = _ladder_data(**config_kw)[1].num_train
  wanted = num_train if probe_train_examples < 0 else min(probe_train_examples, num_train)
  other = sorted(n for n in stored if n != wanted)
  if not other:
    return None
  return (f"--probe_train_examples={probe_train_examples}: the results stored under {out} "
          f"probed {other[0]} training codes ({stored[other[0]]}), this would probe {wanted}; "
          f"a page compares one protocol: pass --probe_train_examples={other[0]} or another --out")


def reference_probes(out: str, seeds: Sequence[int], *, probe_train_examples: int = 10000,
                     log: Callable[[str], None] = print, **config_kw) -> dict[str, Any]:
  """The linear probe on raw pixels and on untrained encoders' codes: the scale of the
  probe columns. Stored as `<out>/reference_probes.json`; computed once (a later
  command with more seeds adds their untrained encoders).

  Same images, same protocol as every rung's probe (the first
  `probe_train_examples` training images, the whole test split). The
  untrained encoder is the rungs' spatial one at its initialisation, per seed.
  """
  path = os.path.join(out, "reference_probes.json")
  stored = None
  if os.path.exists(path):
    with open(path) as f:
      stored = json.load(f)
    if all(str(seed) in stored["untrained_encoder"] for seed in seeds):
      return stored
  from leae_jax import data
  from leae_jax import evaluation
  from leae_jax import probe as probe_lib
  from leae_jax import train

  log("ladder: reference probes (raw pixels, untrained encoders)")
  config, facts = _ladder_data(seed=int(seeds[0]), **config_kw)
  num_classes = facts.num_classes

  def pixels(split, max_examples):
    batches = -1 if max_examples < 0 else -(-max_examples // int(config.eval_batch_size))
    images, labels = [], []
    for batch in data.create_eval_loader(config.dataset, split, batch_size=config.eval_batch_size,
                                         max_batches=batches, **data.config_options(config)):
      keep = np.asarray(batch["valid"], bool)
      images.append(np.asarray(batch["image"], np.float32)[keep])
      labels.append(np.asarray(batch["label"])[keep])
    images, labels = np.concatenate(images), np.concatenate(labels)
    return (images, labels) if max_examples < 0 else (images[:max_examples], labels[:max_examples])

  if stored is None:
    test = pixels("test", -1)
    train_px = pixels("train", probe_train_examples)
    result = {"probe_train_examples": int(len(train_px[0])),
              "pixels": probe_lib.linear_probe(*train_px, *test, num_classes)["accuracy"],
              "untrained_encoder": {}}
  else:
    result = stored
  for seed in [s for s in seeds if str(s) not in result["untrained_encoder"]]:
    trainer = train.Trainer(train.resolve(rung_config(RUNGS[0], seed=int(seed), steps=1,
                                                      **config_kw)), trains=False)
    state = trainer.init_state()
    codes = [evaluation.encode_split(trainer, state, split, n)
             for split, n in (("train", probe_train_examples), ("test", -1))]
    result["untrained_encoder"][str(seed)] = probe_lib.linear_probe(
        *codes[0], *codes[1], num_classes)["accuracy"]
  os.makedirs(out, exist_ok=True)
  with open(path, "w") as f:
    json.dump(result, f, indent=1, sort_keys=True)
  return result
