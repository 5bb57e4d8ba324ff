"""The ablation ladders (Fashion-MNIST, CIFAR-10): every rung × seed × budget, resumable, with verdicts.

    python -m leae_jax.experiments.ladder --out=docs/results                 # run (or resume) everything
    python -m leae_jax.experiments.ladder --out=docs/results --report_only   # rewrite the report only
    python -m leae_jax.experiments.ladder --dataset=cifar10 --data_dir=... --prepared_dir=...

Each rung is `configs/fashion_mnist.py` with one variant (the faithful
recipes of `docs/fidelity.md`), trained with one architecture for each seed
(`--seeds`; the seed changes the initialisation, the data order, the views and
the SIGReg directions). Budgets (`--budgets`, and `--curve_budgets` for the
headline rungs of the budget curves) are nested: the learning rate is
constant, so the first 400 steps of a 1600-step run *are* the 400-step run,
and one run per (rung, seed) is trained in segments, evaluated at every budget
it passes.

Storage:
* `<workdir_root>/<rung>/seed<s>/`: the run's workdir with its checkpoints
  (large; outside the repository by default). An unfinished segment resumes
  from its newest checkpoint.
* `<out>/runs/<rung>/seed<s>_step<b>.json`: the evaluation at step b (small;
  commit these). A result that exists is never recomputed: re-running the
  command skips every finished (rung, seed, budget) and resumes the rest.
* `<out>/runs/<rung>/seed<s>_step<b>_samples.npz` (smallest seed only): the first test images'
  reconstructions, for the comparison grid.

* `<out>/<label>/runs/...`: the same ladder run elsewhere (`--out=<out>/<label>`,
  e.g. budgets a lent GPU computed faster). The report merges them: each
  (rung, budget) cell takes the platform with the most seeds (ties: `<out>`'s
  own), says where it ran, and a section compares platforms where both hold
  the same cell.

The package: `rungs` (rungs, claims, one `Ladder` per dataset), `running`
(configs, training, evaluation, storage), `stats` (pooling, the verdict
rule), `report` (the page), `figures`, and `__main__` (the command line).

`<out>.md` and the figures in `<out>/` are written from the stored results
alone (`--report_only` does nothing else). A ladder with an `other_dataset`
(CIFAR-10's: Fashion-MNIST) sets the claims both ask beside the other's
verdicts, read from the results stored next to `<out>` (`docs/results`).
The verdict rule for each of the blog's claims is stated in the report
(`verdict`).
"""

# The names notebooks and tests use, importable from the package as before the split.
from leae_jax.experiments.ladder.figures import plot_bars, plot_blur_against_psnr  # noqa: F401
from leae_jax.experiments.ladder.figures import plot_budget_curves, plot_compare  # noqa: F401
from leae_jax.experiments.ladder.report import downstream_summary, write_report  # noqa: F401
from leae_jax.experiments.ladder.report import other_dataset_section  # noqa: F401
from leae_jax.experiments.ladder.rungs import CLAIMS, CURVE_RUNGS, DOWNSTREAM  # noqa: F401
from leae_jax.experiments.ladder.rungs import IMAGE_METRICS, LADDERS, METRICS  # noqa: F401
from leae_jax.experiments.ladder.rungs import RUNG_NAMES, RUNGS, Claim, Ladder, Rung  # noqa: F401
from leae_jax.experiments.ladder.rungs import table_metrics  # noqa: F401
from leae_jax.experiments.ladder.running import Job, plan, record_command  # noqa: F401
from leae_jax.experiments.ladder.running import reference_probes, result_path, rung_config  # noqa: F401
from leae_jax.experiments.ladder.running import run  # noqa: F401
from leae_jax.experiments.ladder.running import _samples_of_a_smaller_seed  # noqa: F401
from leae_jax.experiments.ladder.stats import VERDICT_RULE, across_budgets, aggregate  # noqa: F401
from leae_jax.experiments.ladder.stats import across_datasets, drawn_verdicts, one_answer  # noqa: F401
from leae_jax.experiments.ladder.stats import aggregate_by_platform, chance_of_a_verdict  # noqa: F401
from leae_jax.experiments.ladder.stats import claim_verdict, claim_verdicts, compute_spent  # noqa: F401
from leae_jax.experiments.ladder.stats import equal_psnr_pairs, load_results, mean_std  # noqa: F401
from leae_jax.experiments.ladder.stats import platform_agreement, platform_of  # noqa: F401
from leae_jax.experiments.ladder.stats import rank_changes, seconds_if_all_on  # noqa: F401
from leae_jax.experiments.ladder.stats import training_time_only, verdict, verdict_census  # noqa: F401
from leae_jax.experiments.ladder.stats import wall_seconds, whole_budgets  # noqa: F401
