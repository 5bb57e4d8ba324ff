"""The ladder's command line: `python -m leae_jax.experiments.ladder [--dataset=...] ...`."""

from __future__ import annotations

import os

from absl import flags

from leae_jax import cli
from leae_jax.experiments.ladder.report import write_report
from leae_jax.experiments.ladder.rungs import LADDERS
from leae_jax.experiments.ladder.running import plan
from leae_jax.experiments.ladder.running import probe_count_mismatch
from leae_jax.experiments.ladder.running import record_command
from leae_jax.experiments.ladder.running import reference_probes
from leae_jax.experiments.ladder.running import run
from leae_jax.experiments.ladder.running import shown_out
from leae_jax.experiments.ladder.stats import load_results


FLAGS = flags.FLAGS


def define_flags() -> None:
  """Command-line flags (defined only when run as a program, so importing stays side-effect free)."""
  flags.DEFINE_enum("dataset", "fashion_mnist", list(LADDERS),
                    "Which ladder: its config, rungs, claims, budgets and page.")
  flags.DEFINE_string("out", None, "Output prefix: writes <out>.md, results under <out>/runs "
                      "(default: the ladder's, docs/results or docs/results_cifar10).")
  flags.DEFINE_string("workdir_root", None, "Where the runs' workdirs (checkpoints) live "
                      "(default: workdirs/ladder, workdirs/ladder_cifar10).")
  flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of every rung.")
  flags.DEFINE_list("budgets", None, "Training steps at which every rung is evaluated "
                    "(default: the ladder's: 400,1600 or 391).")
  flags.DEFINE_list("curve_budgets", None, "Extra steps at which the headline rungs are "
                    "evaluated (budget curves; default: 800,3200,6400 or 782,1955).")
  flags.DEFINE_list("rungs", None, "Subset of the ladder's rungs to run (default: all).")
  flags.DEFINE_integer("batch_size", None, "Global batch size (default: each rung's config's).")
  flags.DEFINE_integer("hidden", None, "Model width (default: the config's).")
  flags.DEFINE_integer("latent_channels", None, "Code channels of spatial rungs (default: the config's).")
  flags.DEFINE_integer("probe_train_examples", 10000, "Train codes for the linear probe (-1: all).")
  flags.DEFINE_integer("eval_batches", -1, "Test batches to evaluate (-1: the whole test split).")
  flags.DEFINE_integer("eval_batch_size", None, "Evaluation batch size (default: the config's, 500).")
  flags.DEFINE_string("idx_dir", None, "Fashion-MNIST IDX directory (default: Debian's).")
  flags.DEFINE_string("data_dir", None, "TFDS data dir or image folder.")
  flags.DEFINE_string("prepared_dir", None,
                      "Prepared records of the dataset (`python -m leae_jax.prepare`): faster.")
  flags.DEFINE_integer("sigreg_slices", None, "SIGReg directions (default: the config's, 256).")
  flags.DEFINE_bool("report_only", False, "Only rewrite the report from the stored results.")
  flags.DEFINE_string("compare_with", None, "Results from before the fidelity fixes, for a "
                      "before/after section (default: Fashion-MNIST's).")


def main(argv):
  del argv  # cli.run rejects positional arguments
  spec = LADDERS[FLAGS.dataset]
  out = FLAGS.out or spec.out
  seeds = cli.int_list("seeds", FLAGS.seeds)
  budget_flags = {name: list(getattr(FLAGS, name) if getattr(FLAGS, name) is not None
                             else map(str, getattr(spec, name)))
                  for name in ("budgets", "curve_budgets")}
  budgets = cli.int_list("budgets", budget_flags["budgets"], minimum=1)
  curve_budgets = cli.int_list("curve_budgets", budget_flags["curve_budgets"], minimum=1)
  rungs = cli.names_list("rungs", FLAGS.rungs or list(spec.rungs), spec.rungs)
  for name in ("eval_batches", "probe_train_examples"):
    cli.count_or_all(name, FLAGS[name].value)
  if FLAGS.report_only and not load_results(out):
    raise cli.UserError(f"--out={out}: no stored results under {out}/runs to report; "
                        "run the ladder first (without --report_only).")
  named = ([("dataset", spec.dataset)] if spec.dataset != "fashion_mnist" else []) + [
      ("out", shown_out(out, spec.out)), ("seeds", FLAGS.seeds), ("budgets", budget_flags["budgets"]),
      ("curve_budgets", budget_flags["curve_budgets"])]
  if rungs != list(spec.rungs):
    named.append(("rungs", FLAGS.rungs))
  named += list(spec.data_flags)
  command = "python -m leae_jax.experiments.ladder " + " ".join(
      f"--{k}={','.join(v) if isinstance(v, list) else v}" for k, v in named)
  if not FLAGS.report_only:
    config_kw = dict(ladder=spec, batch_size=FLAGS.batch_size, hidden=FLAGS.hidden,
                     latent_channels=FLAGS.latent_channels, idx_dir=FLAGS.idx_dir,
                     data_dir=FLAGS.data_dir, prepared_dir=FLAGS.prepared_dir,
                     eval_batch_size=FLAGS.eval_batch_size)
    workdir_root = FLAGS.workdir_root or os.path.join(
        "workdirs", "ladder" if spec.dataset == "fashion_mnist" else f"ladder_{spec.dataset}")
    cli.check_writable_dir(workdir_root, "--workdir_root")
    mismatch = probe_count_mismatch(out, FLAGS.probe_train_examples, **config_kw)
    if mismatch:
      raise cli.UserError(mismatch)
    record_command(out, command)
    # The libraries' logs: the ladder's own in <workdir_root>/logs/ until the first run,
    # then each run's (training and evaluation) in its workdir's logs/.
    cli.log_to_workdir(workdir_root, "ladder")
    reference_probes(out, seeds, probe_train_examples=FLAGS.probe_train_examples, **config_kw)
    jobs = plan(rungs, seeds, budgets, curve_budgets, curve_rungs=spec.curve_rungs)
    run(out, jobs, workdir_root=workdir_root, probe_train_examples=FLAGS.probe_train_examples,
        eval_batches=FLAGS.eval_batches, sigreg_slices=FLAGS.sigreg_slices,
        train_fn=cli.logging_to_each_workdir(train.train_and_evaluate), **config_kw)
  compare_with = FLAGS.compare_with if FLAGS.compare_with is not None else spec.compare_with
  print(f"wrote {write_report(out, command=command, compare_with=compare_with, ladder=spec)}")


if __name__ == "__main__":
  define_flags()
  from leae_jax import train  # pylint: disable=g-import-not-at-top  (JAX: not for --report_only's import)

  cli.run(main, config_flags=(), user_errors=train.USER_ERRORS)
