"""Mutation check of the test suite: break the method on purpose, one small edit at a time.

Run by hand, not in CI (pytest does not collect this file: its name matches
neither `test_*.py` nor `*_test.py`):

    python tests/mutants.py                 # every mutant; writes a Markdown table
    python tests/mutants.py --list          # the mutants and the tests each one runs
    python tests/mutants.py --only NAME[,NAME...]
    python tests/mutants.py --skip-clean    # skip the unmutated run of the selected tests

For each mutant the repository's files (`git ls-files`, tracked and untracked
but not ignored) are copied to a temporary directory, one textual edit is
applied there (the old text must occur exactly once, so that a mutant whose
target code has changed fails loudly instead of silently testing nothing),
and the tests named for it run with `python -m pytest -x` from the copy's root
with `PYTHONPATH` pointing at the copy (checked: `leae_jax.__file__` must lie
in the copy, not in the editable install). A mutant is *caught* when those
tests fail. First, the union of all the selected tests runs once on an
unmutated copy: a failure there would make every "caught" meaningless.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

T = "tests/train_test.py::"
O = "tests/objectives_test.py::"
S = "tests/sigreg_test.py::"
F = "tests/fidelity_test.py::"
V = "tests/views_test.py::"
C = "tests/checkpoints_test.py::"
M = "tests/main_test.py::"
E = "tests/evaluate_test.py::"
P = "tests/epoch_end_test.py::"
IF = "tests/image_folder_test.py::"
IM = "tests/image_metrics_test.py::"
L = "tests/ladder_test.py::"

HAND = O + "test_library_loss_value_and_gradients_match_the_hand_derivation"
MASKED_HAND = O + "test_masked_objective_value_and_gradients_match_the_hand_derivation"
VARIANTS = T + "test_train_step_of_each_judge_variant_uses_the_published_gradient"
EMA_STEPS = T + "test_ema_judge_follows_the_encoder_over_several_steps_leaf_by_leaf"
EVAL_PADDING = T + "test_evaluate_counts_every_test_image_once_with_padding"
NAN = C + "test_injected_nan_stops_and_keeps_the_last_good_checkpoint"
NAN_CLI = M + "test_non_finite_loss_is_a_one_line_error_naming_the_step_and_every_part"


@dataclasses.dataclass(frozen=True)
class Mutant:
  name: str
  description: str
  path: str  # file to edit, relative to the repository root
  old: str  # must occur exactly once in that file
  new: str
  tests: tuple[str, ...]  # pytest node ids (a function id selects all its parametrisations)


MUTANTS = [
    # --- The judge and its target --------------------------------------------------
    Mutant("ema_update_skipped", "train_step never updates the EMA judge",
           "leae_jax/train.py",
           '    ema = objectives.update_ema(ema, params["encoder"], objective.ema_decay)',
           "    ema = ema",
           (EMA_STEPS, VARIANTS)),
    Mutant("ema_decay_reversed", "EMA takes decay of the encoder and 1 − decay of itself",
           "leae_jax/objectives.py",
           "step_size=1.0 - decay)", "step_size=decay)",
           (EMA_STEPS, VARIANTS)),
    Mutant("ema_from_pre_step_params", "EMA follows the encoder before the step, not after it",
           "leae_jax/train.py",
           'objectives.update_ema(ema, params["encoder"], objective.ema_decay)',
           'objectives.update_ema(ema, state.params["encoder"], objective.ema_decay)',
           (EMA_STEPS,)),
    Mutant("target_stop_gradient_removed",
           "self_teaching's target J(T(x)) carries gradient for every judge",
           "leae_jax/objectives.py",
           "  detach = (lambda t: t) if target_gradient else jax.lax.stop_gradient\n  pair_codes = []",
           "  detach = lambda t: t\n  pair_codes = []",
           (HAND,)),
    Mutant("live_stop_target_not_stopped", "live_stop_target judge back-propagates through its target",
           "leae_jax/objectives.py",
           '  return mode == "live"\n', '  return mode in ("live", "live_stop_target")\n',
           (HAND,)),
    Mutant("judge_params_get_gradient", "step-frozen judge parameters are not under stop_gradient",
           "leae_jax/objectives.py",
           '    return jax.lax.stop_gradient(params["encoder"])',
           '    return params["encoder"]',
           (HAND, O + "test_step_frozen_judge_parameters_receive_exactly_zero_gradient")),
    Mutant("ema_judge_not_detached", "EMA judge params are not under stop_gradient",
           "leae_jax/objectives.py",
           "    return jax.lax.stop_gradient(ema_params)", "    return ema_params",
           (O + "test_ema_objective_judges_with_the_ema_params_and_gives_them_no_gradient",)),
    Mutant("live_target_detached", "the published live judge detaches its target",
           "leae_jax/objectives.py",
           '  return mode == "live"\n', "  return False\n",
           (VARIANTS, F + "test_published_live_judge_backpropagates_through_both_sides_with_sigreg_on_the_view_codes")),
    Mutant("judge_uses_running_statistics", "the judge normalises with the running statistics",
           "leae_jax/objectives.py",
           "return lambda x: models.encode(model, judge_params, batch_stats, x, train=True)[0]",
           "return lambda x: models.encode(model, judge_params, batch_stats, x, train=False)[0]",
           (HAND, O + "test_judge_normalises_with_the_judged_batch_statistics")),
    # --- Views ----------------------------------------------------------------------
    Mutant("view_draws_differ", "image and reconstruction get different draws of the view",
           "leae_jax/objectives.py",
           "    tx, tx_hat = view.pair(jax.random.fold_in(k_views, i), images, recon)",
           "    tx, tx_hat = (view(jax.random.fold_in(k_views, i), images),\n"
           "                  view(jax.random.fold_in(k_views, i + 1), recon))",
           (HAND, VARIANTS)),
    Mutant("pair_draws_twice", "View.pair samples the randomness separately for each image",
           "leae_jax/views/base.py",
           "    return self.transform(params, a), self.transform(params, b)",
           "    return self.transform(params, a), self.transform(self.sample(jax.random.fold_in(key, 1), a.shape), b)",
           (HAND, V + "test_pair_applies_the_same_randomness_to_both_images")),
    Mutant("crop_side_round", "crop side rounded instead of floored",
           "leae_jax/views/image.py",
           "side = jnp.clip(jnp.floor(ratio * min(h, w) + 1e-4), 1, min(h, w))",
           "side = jnp.clip(jnp.round(ratio * min(h, w)), 1, min(h, w))",
           (F + "test_crop_side_is_the_floor_of_ratio_times_side",)),
    Mutant("channel_mask_exact_count", "channel mask drops an exact count instead of independent channels",
           "leae_jax/views/image.py",
           "      drop = jax.random.uniform(key, (n, 1, 1, c)) <= ratio",
           "      drop = exact_count_mask(key, (n, 1, 1, c), round(ratio * c))",
           (F + "test_channel_mask_drops_channels_independently_with_the_ratio",)),
    # --- Loss composition -----------------------------------------------------------
    Mutant("detail_stack_not_normalised", "(view mean + w·plain) not divided by 1 + w",
           "leae_jax/objectives.py",
           '(view_mean + plain_weight * parts["agree/plain"]) / (1.0 + plain_weight))',
           '(view_mean + plain_weight * parts["agree/plain"]))',
           (O + "test_view_weights_and_plain_term_combine_as_documented",
            F + "test_detail_stack_agreement_is_normalised_by_one_plus_the_plain_weight")),
    Mutant("view_weights_not_normalised", "weighted view mean not divided by the sum of the weights",
           "leae_jax/objectives.py",
           "    view_mean += weight / total_weight * term", "    view_mean += weight * term",
           (O + "test_view_weights_and_plain_term_combine_as_documented",)),
    Mutant("live_sigreg_on_one_side", "published live SIGReg regularises the target codes only",
           "leae_jax/objectives.py",
           "              + sigreg(b, jax.random.fold_in(k_sigreg, 2 * i + 1))",
           "              + sigreg(a, jax.random.fold_in(k_sigreg, 2 * i + 1))",
           (VARIANTS,)),
    Mutant("masked_statistics_switch_inverted", "masked_updates_norm applies the masked batch when off",
           "leae_jax/objectives.py",
           "  new_stats = both_stats if masked_updates_norm else clean_stats",
           "  new_stats = clean_stats if masked_updates_norm else both_stats",
           (O + "test_running_statistics_move_only_from_the_encoded_inputs",)),
    Mutant("batch_stats_from_reconstruction", "running statistics move from the reconstruction",
           "leae_jax/objectives.py",
           "  stats = [new_stats]\n",
           '  stats = [models.encode(model, params["encoder"], batch_stats, recon, train=True)[1]]\n',
           (O + "test_running_statistics_move_only_from_the_encoded_inputs", VARIANTS)),
    Mutant("masked_consistency_one_sided", "masked consistency term detaches the clean branch",
           "leae_jax/objectives.py",
           "consistency = _mse(judge(recon_clean), judge(recon_masked))",
           "consistency = _mse(jax.lax.stop_gradient(judge(recon_clean)), judge(recon_masked))",
           (MASKED_HAND,)),
    Mutant("masked_sigreg_same_key", "both masked SIGReg terms use the same directions",
           "leae_jax/objectives.py",
           "sigreg(z_masked, k_sig_masked)", "sigreg(z_masked, k_sig_clean)",
           (MASKED_HAND, F + "test_masked_objective_draws_separate_directions_for_its_two_sigreg_terms")),
    Mutant("masked_target_not_detached", "masked objective's crop target carries gradient",
           "leae_jax/objectives.py",
           "  target = detach(judge(crop.transform(crop_params, images)))",
           "  target = judge(crop.transform(crop_params, images))",
           (MASKED_HAND,)),
    Mutant("masked_crop_boxes_differ", "masked branch's crop uses another box than the target's",
           "leae_jax/objectives.py",
           "masked_crop = _mse(target, judge(crop.transform(crop_params, recon_masked)))",
           "masked_crop = _mse(target, judge(crop.transform(crop.sample(k_mask, images.shape), recon_masked)))",
           (MASKED_HAND,)),
    Mutant("code_norm_biased_running_var", "code norm's running variance takes the biased batch variance",
           "leae_jax/models/layers.py",
           'running = var * (count / max(count - 1, 1)) if self.running_variance == "unbiased" else var',
           "running = var",
           (F + "test_code_norm_follows_pytorch_batch_norm",)),
    # --- SIGReg ---------------------------------------------------------------------
    Mutant("trapezoid_all_2delta", "SIGReg quadrature weights 2Δ at the end knots too",
           "leae_jax/sigreg.py",
           "  trapezoid = trapezoid.at[0].set(delta).at[-1].set(delta)\n", "",
           ("tests/sigreg_test.py",)),
    Mutant("sigreg_n_multiplier", "Epps–Pulley statistic scaled by N − 1 instead of N",
           "leae_jax/sigreg.py",
           "  return p.shape[0] * (err @ weights), (p, cos_mean, sin_mean)",
           "  return (p.shape[0] - 1) * (err @ weights), (p, cos_mean, sin_mean)",
           ("tests/sigreg_test.py",)),
    Mutant("sigreg_backward_drops_phi", "hand-written SIGReg backward pass forgets φ(t)",
           "leae_jax/sigreg.py",
           "  a, b = scale * sin_mean, -scale * (cos_mean - phi)",
           "  a, b = scale * sin_mean, -scale * cos_mean",
           ("tests/sigreg_test.py",)),
    # --- Training loop, resume, NaN -------------------------------------------------
    Mutant("step_key_ignores_step", "every step draws the same views and directions",
           "leae_jax/train.py",
           "return jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)",
           "return jax.random.wrap_key_data(state.rng)",
           (T + "test_step_keys_depend_only_on_seed_and_step",)),
    Mutant("resume_skips_a_batch", "a resumed run starts one batch too far",
           "leae_jax/train.py",
           "multiple=self.data_shards, start_step=start_step,",
           "multiple=self.data_shards, start_step=start_step + 1 if start_step else 0,",
           (C + "test_harmless_config_changes_resume",)),
    Mutant("loader_off_by_one_batch", "the train loader starts one batch late, fresh runs too",
           "leae_jax/train.py",
           "multiple=self.data_shards, start_step=start_step,",
           "multiple=self.data_shards, start_step=start_step + 1,",
           (T + "test_train_loader_starts_at_the_batch_of_the_step",)),
    Mutant("epoch_without_partial_batch", "'partial' epochs read full batches only, across epochs",
           "leae_jax/data/train_loader.py",
           "    full = index < self.num_records // self.batch_size\n",
           "    full = True\n",
           (P + "test_partial_epochs_are_8_8_4_each_a_new_permutation_of_every_record",)),
    Mutant("partial_batch_not_trimmed", "the smaller batch is not trimmed to the data shards",
           "leae_jax/data/train_loader.py",
           "    return remainder - remainder % self.multiple\n",
           "    return remainder\n",
           (P + "test_the_smaller_batch_is_trimmed_to_split_over_three_shards",)),
    Mutant("nan_check_skipped_before_save", "checkpoints are saved without checking the losses",
           "leae_jax/train.py",
           "    losses = jax.device_get([m[\"loss\"] for m in buffer])\n"
           "    if not np.all(np.isfinite(losses)):\n"
           "      _check_finite(jax.device_get(buffer), step - len(buffer))\n",
           "",
           (NAN,)),
    Mutant("nan_check_names_loss_only", "the pre-save NaN stop names the loss only",
           "leae_jax/train.py",
           "      _check_finite(jax.device_get(buffer), step - len(buffer))",
           '      _check_finite(jax.device_get([{"loss": m["loss"]} for m in buffer]), step - len(buffer))',
           (NAN, NAN_CLI)),
    Mutant("nan_error_traceback_on_cli", "the command line lets the NaN error escape as a traceback",
           "leae_jax/train.py",
           "USER_ERRORS = (data.DatasetUnavailableError, NonFiniteLossError,",
           "USER_ERRORS = (data.DatasetUnavailableError,",
           (NAN_CLI,)),
    Mutant("metrics_fetched_every_step", "a debug line pulls the loss to the host every step",
           "leae_jax/train.py",
           "        buffer.append(step_metrics)\n",
           "        buffer.append(step_metrics)\n"
           "        progress.write(f\"step {step}: loss {float(step_metrics['loss']):.4f}\")\n",
           (T + "test_train_and_evaluate_writes_every_output",)),
    Mutant("all_processes_write", "every process writes metrics, events and images",
           "leae_jax/train.py",
           "writer = outputs.MetricWriter(workdir, enabled=is_main)",
           "writer = outputs.MetricWriter(workdir, enabled=True)",
           ("tests/multihost_test.py::test_two_processes_match_one_and_checkpoints_move_between_them",)),
    Mutant("ema_judge_replicated", "the EMA judge is left replicated under fsdp",
           "leae_jax/train.py",
           "    self._init_state = jax.jit(create, out_shardings=self.state_sharding)\n",
           "    if self.state_sharding.ema_params is not None:\n"
           "      self.state_sharding = self.state_sharding.replace(ema_params=jax.tree_util.tree_map(\n"
           "          lambda s: self.replicated, self.state_sharding.ema_params))\n"
           "    self._init_state = jax.jit(create, out_shardings=self.state_sharding)\n",
           ("tests/sharding_test.py::test_sharded_steps_equal_single_device",)),
    Mutant("adamw_without_decay", "AdamW's decoupled weight decay dropped",
           "leae_jax/train.py",
           "eps=1e-8, weight_decay=config.weight_decay)", "eps=1e-8, weight_decay=0.0)",
           (F + "test_adamw_step_is_pytorchs_at_a_constant_rate",)),
    # --- Evaluation -----------------------------------------------------------------
    Mutant("psnr_natural_log", "PSNR with the natural logarithm",
           "leae_jax/metrics.py",
           "  return -10.0 * jnp.log10(jnp.maximum(mse, _MIN_MSE))",
           "  return -10.0 * jnp.log(jnp.maximum(mse, _MIN_MSE))",
           (E + "test_psnr_of_known_pairs", EVAL_PADDING)),
    Mutant("psnr_of_batch_mean_mse", "evaluation reports the PSNR of the batch-mean MSE per image",
           "leae_jax/modalities.py",  # the image metrics of evaluation.eval_step
           "psnr=metrics_lib.per_image_psnr(recon, images),",
           "psnr=jax.numpy.broadcast_to(metrics_lib.psnr_from_mse(jnp.mean(metrics_lib.per_image_mse("
           "recon, images))), images.shape[:1]),",
           (EVAL_PADDING,)),
    Mutant("eval_padding_weights_ignored", "the padded repeats of the last test image are counted",
           "leae_jax/evaluation.py",
           "float(np.sum(np.asarray(v, np.float64) * weights))",
           "float(np.sum(np.asarray(v, np.float64)))",
           (EVAL_PADDING,)),
    Mutant("eval_in_training_mode", "evaluation encodes with batch statistics",
           "leae_jax/evaluation.py",
           'codes, _ = models.encode(model, state.params["encoder"], state.batch_stats, images, train=False)',
           'codes, _ = models.encode(model, state.params["encoder"], state.batch_stats, images, train=True)',
           (EVAL_PADDING,)),
    Mutant("effective_rank_of_raw_eigenvalues", "effective rank without normalising the eigenvalues",
           "leae_jax/metrics.py",
           "  p = eigenvalues / jnp.maximum(jnp.sum(eigenvalues), 1e-30)",
           "  p = eigenvalues",
           (E + "test_evaluate_a_short_shapes_run_returns_every_field",)),
    Mutant("probe_on_shuffled_train_labels", "the probe is fitted on train codes with the wrong labels",
           "leae_jax/evaluate.py",
           "    p = probe_lib.linear_probe(train_codes, train_labels, result.codes, result.labels, info.num_classes)",
           "    p = probe_lib.linear_probe(train_codes, np.roll(train_labels, 1), result.codes, result.labels,\n"
           "                               info.num_classes)",
           (E + "test_evaluate_a_short_shapes_run_returns_every_field",)),
    # --- The step's arithmetic and its inputs -----------------------------------------
    Mutant("kernel_grad_chunk_dropped", "the chunked CPU kernel gradient leaves out its last chunk",
           "leae_jax/models/layers.py",
           "    for i in range(n):  # unrolled", "    for i in range(n - 1):  # unrolled",
           ("tests/models_test.py::test_chunked_kernel_gradient_is_the_whole_batch_gradient",)),
    Mutant("uint8_scaled_by_256", "prepared uint8 batches are scaled by 1/256 on the device",
           "leae_jax/models/layers.py",
           "  return images.astype(jnp.float32) * jnp.float32(1.0 / 255.0)",
           "  return images.astype(jnp.float32) * jnp.float32(1.0 / 256.0)",
           ("tests/prepared_test.py::test_uint8_batches_scale_on_device_to_the_same_floats",)),
    # --- Image folders and the colour and blur metrics ---------------------------------
    Mutant("image_folder_in_folder_order", "an image folder's records stay in class-folder order "
           "(a prefix is one class)", "leae_jax/data/image_folder.py",
           "  order = record_order(files)", "  order = np.arange(len(files))",
           (IF + "test_order_labels_and_pixels_follow_the_documented_rule",
            IF + "test_real_files_give_the_pixels_and_labels_of_an_independent_decode")),
    Mutant("record_order_unsorted", "record_order returns the paths' own order",
           "leae_jax/data/image_folder.py",
           "np.asarray(sorted(range(len(paths)), key=keys.__getitem__), np.int64)",
           "np.arange(len(paths), dtype=np.int64)",
           (IF + "test_record_order_mixes_the_classes_and_survives_added_files",)),
    Mutant("image_folder_classes_reversed", "class folders get labels in reverse sorted order",
           "leae_jax/data/image_folder.py",
           "classes = sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith(\".\"))",
           "classes = sorted((e.name for e in os.scandir(path) if e.is_dir() and not "
           "e.name.startswith(\".\")), reverse=True)",
           (IF + "test_order_labels_and_pixels_follow_the_documented_rule",
            IF + "test_real_files_give_the_pixels_and_labels_of_an_independent_decode")),
    Mutant("image_folder_grey_as_rgb", "a set of only grey images is read as RGB",
           "leae_jax/data/image_folder.py",
           "return 1 if all(m in _GREY_MODES for m in modes) else 3", "return 3",
           (IF + "test_an_all_grey_set_has_one_channel",)),
    Mutant("saturation_ratio_inverted", "the saturation ratio divides the inputs' chroma by the "
           "reconstructions'", "leae_jax/modalities.py",
           'results["recon_chroma"] / max(results["chroma"], 1e-12)',
           'results["chroma"] / max(results["recon_chroma"], 1e-12)',
           (IM + "test_the_image_modality_summarises_ratios_of_means",)),
    Mutant("band_power_keeps_the_mean", "spectral band power keeps each image's mean (DC in band 0)",
           "leae_jax/metrics.py",
           "  x = x - jnp.mean(x, axis=(1, 2), keepdims=True)\n", "",
           ("tests/image_metrics_test.py",)),
    Mutant("chroma_psnr_on_luma", "chroma PSNR compares the luma channel",
           "leae_jax/metrics.py",
           "per_image_mse(rgb_to_ycbcr(recon)[..., 1:], rgb_to_ycbcr(images)[..., 1:])",
           "per_image_mse(rgb_to_ycbcr(recon)[..., :1], rgb_to_ycbcr(images)[..., :1])",
           ("tests/image_metrics_test.py",)),
    Mutant("frechet_of_inputs_twice", "the Fréchet distance compares the inputs' features with "
           "themselves", "leae_jax/evaluation.py",
           "features_recon=features(recon)", "features_recon=features(images)",
           ("tests/frechet_test.py::test_evaluation_reports_the_frechet_distance_of_its_net",)),
    Mutant("sigreg_projection_default_precision", "SIGReg projects at XLA's default precision "
           "(TF32 on GPUs)", "leae_jax/sigreg.py",
           "PROJECTION_PRECISION = jax.lax.Precision.HIGHEST", "PROJECTION_PRECISION = None",
           (F + "test_sigreg_projects_at_highest_precision",)),
    # --- The ladder's verdicts -------------------------------------------------------
    Mutant("lower_is_better_ignored", "a lower-is-better claim (Fréchet) is judged as higher-is-better",
           "leae_jax/experiments/ladder/stats.py",
           "  if not claim.lower_is_better:\n    return verdict(a, b)", "  return verdict(a, b)",
           (L + "test_the_rules_false_verdict_rate_and_lower_is_better_claims",
            L + "test_blur_is_compared_at_the_nearest_psnr")),
    Mutant("chance_rate_one_sided", "the rule's chance rate counts one direction only",
           "leae_jax/experiments/ladder/stats.py",
           "return float(2.0 * stats.t.sf(critical, n_a + n_b - 2))",
           "return float(stats.t.sf(critical, n_a + n_b - 2))",
           (L + "test_the_rules_false_verdict_rate_and_lower_is_better_claims",)),
]


def repository_files() -> list[str]:
  out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                       cwd=ROOT, capture_output=True, text=True, check=True).stdout
  return sorted({f for f in out.split("\0") if f and os.path.isfile(os.path.join(ROOT, f))})


def copy_repository(destination: str) -> None:
  for rel in repository_files():
    target = os.path.join(destination, rel)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copy2(os.path.join(ROOT, rel), target)


def apply(mutant: Mutant, root: str) -> None:
  path = os.path.join(root, mutant.path)
  text = open(path).read()
  count = text.count(mutant.old)
  if count != 1:
    raise RuntimeError(f"mutant {mutant.name}: the text to replace occurs {count} times in "
                       f"{mutant.path} (must be exactly once); update the mutant.")
  with open(path, "w") as f:
    f.write(text.replace(mutant.old, mutant.new))


def environment(root: str) -> dict[str, str]:
  env = dict(os.environ, PYTHONPATH=root, PYTHONDONTWRITEBYTECODE="1")
  # One compilation cache for every copy (conftest would put it inside each
  # copy, cold): a mutant's changed programs get their own keys, the rest hit.
  env.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(ROOT, ".pytest_cache", "jax_compilation"))
  env.pop("PYTEST_XDIST_WORKER", None)
  return env


def check_import_location(root: str) -> None:
  """The copy's leae_jax must shadow the editable install of the original."""
  out = subprocess.run([sys.executable, "-c", "import leae_jax; print(leae_jax.__file__)"], cwd=root,
                       env=environment(root), capture_output=True, text=True, check=True).stdout.strip()
  if not os.path.realpath(out).startswith(os.path.realpath(root) + os.sep):
    raise RuntimeError(f"leae_jax imported from {out}, not from the copy {root}.")


def run_tests(root: str, tests: tuple[str, ...], *, stop_first: bool, workers: int,
              timeout: int) -> tuple[int, str, float]:
  command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
  if stop_first:
    command.append("-x")
  if workers > 1:
    command += ["-n", str(workers)]
  command += list(tests)
  start = time.time()
  try:
    proc = subprocess.run(command, cwd=root, env=environment(root), capture_output=True, text=True,
                          timeout=timeout)
    code, output = proc.returncode, proc.stdout + proc.stderr
  except subprocess.TimeoutExpired as err:
    code, output = -1, f"timed out after {timeout} s\n{err.stdout or ''}"
  return code, output, time.time() - start


def summary_line(output: str) -> str:
  """pytest's closing line ("1 failed, 2 passed in 30.1s"), else the last line."""
  lines = [l.strip(" =") for l in output.strip().splitlines() if l.strip()]
  counts = [l for l in lines if re.search(r"\d+ (passed|failed|error|errors|deselected)\b", l)
            and " in " in l]
  return counts[-1] if counts else (lines[-1] if lines else "")


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--only", default="", help="comma-separated mutant names")
  parser.add_argument("--list", action="store_true", help="list the mutants and exit")
  parser.add_argument("--skip-clean", action="store_true",
                      help="do not run the selected tests on an unmutated copy first")
  parser.add_argument("--out", default="/tmp/mutants_table.md", help="where to write the table")
  parser.add_argument("--timeout", type=int, default=1800, help="seconds per pytest run")
  parser.add_argument("--keep", action="store_true", help="keep the temporary copies")
  args = parser.parse_args()

  names = [n.strip() for n in args.only.split(",") if n.strip()]
  unknown = sorted(set(names) - {m.name for m in MUTANTS})
  if unknown:
    parser.error(f"unknown mutants {unknown}; see --list")
  assert len({m.name for m in MUTANTS}) == len(MUTANTS), "duplicate mutant names"
  selected = [m for m in MUTANTS if not names or m.name in names]
  if args.list:
    for m in selected:
      print(f"{m.name}: {m.description}\n    {m.path}\n    " + "\n    ".join(m.tests))
    return 0

  start = time.time()
  scratch = tempfile.mkdtemp(prefix="leae_mutants_")
  rows = []
  try:
    # Every mutant must apply to today's sources before anything runs.
    for m in selected:
      if open(os.path.join(ROOT, m.path)).read().count(m.old) != 1:
        raise RuntimeError(f"mutant {m.name}: its old text does not occur exactly once in {m.path}.")
    if not args.skip_clean:
      clean = os.path.join(scratch, "clean")
      copy_repository(clean)
      check_import_location(clean)
      union = tuple(dict.fromkeys(t for m in selected for t in m.tests))
      print(f"clean run of {len(union)} test selections ...", flush=True)
      code, output, seconds = run_tests(clean, union, stop_first=False, workers=2,
                                        timeout=args.timeout * 2)
      print(f"  {summary_line(output)} ({seconds:.0f} s)", flush=True)
      if code != 0:
        print(output[-5000:])
        print("The unmutated tests fail: fix them before judging mutants.")
        return 2
      shutil.rmtree(clean, ignore_errors=True)
    for m in selected:
      root = os.path.join(scratch, m.name)
      copy_repository(root)
      try:
        apply(m, root)  # the sources may have changed since the check above
      except RuntimeError as err:
        rows.append((m, False, 0.0, f"NOT APPLIED: {err}"))
        print(f"NOT APPLIED {m.name}: {err}", flush=True)
        continue
      check_import_location(root)
      code, output, seconds = run_tests(root, m.tests, stop_first=True, workers=1,
                                        timeout=args.timeout)
      # Exit 1: some test failed. Not 0 (all passed), 5 (nothing collected:
      # a stale node id), 2-4 (interrupted, internal or usage error), nor a timeout.
      caught = code == 1
      rows.append((m, caught, seconds, summary_line(output)))
      print(f"{'CAUGHT' if caught else 'MISSED'} {m.name} ({seconds:.0f} s): {summary_line(output)}",
            flush=True)
      # Why: the first failing test and its first assertion line, to check by eye that
      # the mutant is caught by the behaviour it breaks, not by an unrelated crash.
      failed = [l for l in output.splitlines() if l.startswith("FAILED ")][:1]
      reason = [l for l in output.splitlines() if l.startswith("E ")][:2]
      for line in failed + reason:
        print(f"    {line[:300]}", flush=True)
      if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
  finally:
    if not args.keep:
      shutil.rmtree(scratch, ignore_errors=True)

  total = time.time() - start
  caught = sum(c for _, c, _, _ in rows)
  table = ["| mutant | description | tests run | caught |", "|---|---|---|---|"]
  for m, c, seconds, _ in rows:
    tests = "<br>".join(t.replace("tests/", "") for t in m.tests)
    table.append(f"| `{m.name}` | {m.description} | {tests} | {'yes' if c else '**NO**'} ({seconds:.0f} s) |")
  table.append(f"\n**{caught}/{len(rows)} caught**; total wall time {total / 60:.1f} min "
               f"({'with' if not args.skip_clean else 'without'} the clean run).")
  text = "\n".join(table)
  print("\n" + text)
  if args.out:
    with open(args.out, "w") as f:
      f.write(text + "\n")
  return 0 if caught == len(rows) else 1


if __name__ == "__main__":
  sys.exit(main())
