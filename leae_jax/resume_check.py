"""A resume keeps the experiment it resumes: what is trained may not change silently.

When a run starts in a workdir that already holds checkpoints, its resolved
config is compared with the one stored there (`config.json`). A field that
changes *what* is trained — the objective and everything under it, the
model, the dataset and how it is read into images, the batch, the optimiser
and its schedule, the seed, numerics — must stay equal, unless the command
names it on purpose: `--config.allow_changes=objective.views,learning_rate`
(a name covers the fields under it). Fields that only say how long, how
often or where — `ALLOWED` — change freely.

Every start or resume appends a line to `<workdir>/config_history.jsonl`: the
time, the step it started from, what changed (`field: [old, new]`) and the
resolved config, so a reader of the workdir (`leae_jax.evaluate`, the ladder)
can tell a run that changed on purpose from one that never did.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any

HISTORY_FILE = "config_history.jsonl"

#: Fields that do not change what is trained: how long, how often, where, on how many devices.
ALLOWED = ("num_train_steps", "num_epochs", "log_every_steps", "eval_every_steps",
           "checkpoint_every_steps", "checkpoints_to_keep", "eval_batch_size", "eval_batches",
           "num_grid_images", "progress_bar", "num_workers", "download", "debug_nan_step",
           "mesh", "data_dir", "idx_dir", "prepared_dir", "allow_changes")


class ResumeChangedError(Exception):
  """A resume would train the stored run with a different experiment."""


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  """`{'a.b': value}` of a nested dict (lists and tuples compared as lists)."""
  if isinstance(tree, dict):
    out = {}
    for key, value in tree.items():
      out.update(flatten(value, f"{prefix}{key}."))
    return out
  return {prefix[:-1]: list(tree) if isinstance(tree, tuple) else tree}


def _covered(field: str, names: list[str]) -> bool:
  return any(field == n or field.startswith(n + ".") for n in names)


def changes(stored: dict[str, Any], new: dict[str, Any]) -> dict[str, list[Any]]:
  """`{field: [old, new]}` of every field that differs (a field one side lacks counts)."""
  a, b = flatten(stored), flatten(json.loads(json.dumps(new)))
  return {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def check(stored: dict[str, Any], new: dict[str, Any], allow: str, workdir: str
          ) -> dict[str, list[Any]]:
  """The changes between the stored and the new resolved config; ResumeChangedError (one line:
  each refused field as `old → new`, and the flag that allows them) if any is not allowed."""
  allowed = list(ALLOWED) + [n.strip() for n in str(allow or "").split(",") if n.strip()]
  found = changes(stored, new)
  refused = {k: v for k, v in found.items() if not _covered(k, allowed)}
  if refused:
    listed = "; ".join(f"{k} {v[0]!r} → {v[1]!r}" for k, v in refused.items())
    raise ResumeChangedError(
        f"{workdir} holds a run of another experiment: {listed}. A resume keeps what is trained; "
        f"to change it on purpose add --config.allow_changes={','.join(refused)}, or give this "
        "run another --workdir.")
  return found


def record(workdir: str, config: dict[str, Any], step: int, changed: dict[str, list[Any]]) -> None:
  """Appends this start to `<workdir>/config_history.jsonl`."""
  line = {"time": datetime.datetime.now().isoformat(timespec="seconds"), "start_step": int(step),
          "changed": changed, "config": config}
  with open(os.path.join(workdir, HISTORY_FILE), "a", encoding="utf-8") as f:
    f.write(json.dumps(line, sort_keys=True, default=str) + "\n")


def changed_fields(workdir: str) -> dict[str, list[Any]]:
  """Every field a workdir's history says changed on a resume (the newest value last)."""
  path = os.path.join(workdir, HISTORY_FILE)
  found: dict[str, list[Any]] = {}
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      for line in f:
        for field, (old, new) in json.loads(line).get("changed", {}).items():
          found[field] = [found.get(field, [old])[0], new]
  return {k: v for k, v in found.items() if not _covered(k, list(ALLOWED))}
