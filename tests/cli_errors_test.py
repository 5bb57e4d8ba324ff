"""Every bad input through the real command lines: one `error:` line, no traceback.

Each case is a real `python -m leae_jax.{main,evaluate,pretrained,bench,prepare,experiments.*}`
command line,
run in its own (forked: see cli_server.py) process. The test asserts that
stderr holds exactly one line, that it starts with `error: ` and says what
the case expects (the field, the value, what would be valid), that the exit
status is 2 (`cli.EXIT_USAGE`: every case is bad input; a run that fails with
good input exits 1, see `test_exit_status_tells_bad_input_from_a_failed_run`),
and that no traceback was printed anywhere. The documents state how many
command lines this file runs (`len(CASES)`; checked by docs_test.py).
"""

import json
import os
import subprocess
import sys

import pytest

import helpers
from leae_jax import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = "--config=configs/shapes.py"
FMNIST = "--config=configs/fashion_mnist.py"
SERIES = "--config=configs/timeseries.py"
TINY = ["--config.model.hidden=8", "--config.model.latent_channels=4",
        "--config.objective.sigreg_slices=16", "--config.batch_size=16",
        "--config.eval_batch_size=8", "--config.progress_bar=false"]


class Server:
  """A cli_server.py process: runs command lines in forked children."""

  def __init__(self):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    self.proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "cli_server.py")],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                 cwd=ROOT, env=env)

  def run(self, module, args, cwd=ROOT):
    self.proc.stdin.write(json.dumps({"module": module, "args": args, "cwd": cwd}) + "\n")
    self.proc.stdin.flush()
    return json.loads(self.proc.stdout.readline())

  def close(self):
    self.proc.stdin.close()
    self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def server():
  s = Server()
  yield s
  s.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory, server):
  """Inputs some cases need: IDX files (one truncated), a trained workdir, a plain file."""
  root = tmp_path_factory.mktemp("cli_inputs")
  good, bad = root / "idx", root / "idx_truncated"
  for folder in (good, bad):
    helpers.idx_splits(folder, train=32, test=16)
  images = next(p for p in bad.iterdir() if p.name.startswith("train-images"))
  images.write_bytes(images.read_bytes()[:-100])
  (root / "empty_tfds").mkdir()
  (root / "a_file").write_text("not a directory")
  run = root / "run"
  # Trained like the cases run, in a forked child of the server (no second start of Python).
  proc = server.run("leae_jax.main", [SHAPES, f"--workdir={run}", *TINY,
                                      "--config.num_train_steps=2", "--config.eval_every_steps=0"])
  assert proc["returncode"] == 0, proc["stderr"][-3000:]
  folder = {"train/cat/0.png": (8, 8, "RGB"), "test/cat/0.png": (8, 8, "RGB")}
  helpers.write_image_folder(root / "mixed_sizes", {**folder, "train/cat/1.png": (8, 12, "RGB")})
  helpers.write_image_folder(root / "other_classes", {**folder, "test/dog/0.png": (8, 8, "RGB")})
  helpers.write_image_folder(root / "broken_image", folder)
  helpers.write_image_folder(root / "one_class", folder)
  (root / "broken_image" / "train" / "cat" / "1.jpg").write_bytes(b"not a jpeg")
  return {"idx": str(good), "idx_truncated": str(bad), "tfds": str(root / "empty_tfds"),
          "file": str(root / "a_file"), "run": str(run), "inputs": str(root)}


# (case id, module, arguments, what the one line must contain). {wd} is a fresh
# workdir, {idx}, {idx_truncated}, {tfds}, {file}, {run}, {inputs} come from `files`,
# {root} is the checkout. Each runs in the checkout, or in the folder `CWD` names.
CASES = [
    # Flags and the config file.
    ("config_missing", "main", ["--config=configs/nope.py", "--workdir={wd}"],
     "--config=configs/nope.py: no such file (a relative path is read from the current "
     "directory, {root}); the configs in {root}/configs/ are celeba.py, celeba_masked.py, "
     "cifar.py, fashion_mnist.py, shapes.py"),
    ("config_outside_checkout", "main",
     ["--config=configs/shapes.py:crop_resize", "--workdir={wd}"],
     "--config=configs/shapes.py:crop_resize: no such file (a relative path is read from the "
     "current directory, {inputs}, not from the checkout); did you mean "
     "--config={root}/configs/shapes.py:crop_resize?"),
    ("config_not_given", "main", ["--workdir={wd}"], "--config is required"),
    ("workdir_not_given", "main", [SHAPES], "--workdir is required"),
    ("variant_unknown", "main", ["--config=configs/shapes.py:nosuch", "--workdir={wd}"],
     "--config=configs/shapes.py:nosuch: Unknown config variant 'nosuch'; valid variants: "
     "channel_mask, crop_resize"),
    ("field_unknown", "main", [SHAPES, "--workdir={wd}", "--config.nosuchfield=3"],
     "--config.nosuchfield: no such config field"),
    ("field_typo", "main", [SHAPES, "--workdir={wd}", "--config.model.hiden=32"],
     "--config.model.hiden: no such config field; did you mean --config.model.hidden?"),
    ("view_arg_typo", "main", [SHAPES, "--workdir={wd}",
                               "--config.objective.view_args.pixel_mask.mask_ratio=0.5"],
     "did you mean --config.objective.view_args.pixel_mask.ratio"),
    ("value_not_int", "main", [SHAPES, "--workdir={wd}", "--config.batch_size=abc"],
     "--config.batch_size=abc: not a valid int; the field is currently 64."),
    ("value_not_float", "main", [SHAPES, "--workdir={wd}", "--config.learning_rate=fast"],
     "--config.learning_rate=fast: not a valid float"),
    ("flag_unknown", "main", [SHAPES, "--workdir={wd}", "--unknown_flag=3"],
     "Unknown command line flag 'unknown_flag'"),
    ("positional", "main", [SHAPES, "--workdir={wd}", "extra"],
     "unexpected arguments 'extra'"),
    ("distributed_mode", "main", [SHAPES, "--workdir={wd}", "--distributed=maybe"],
     "--distributed"),
    # The workdir.
    ("workdir_unwritable", "main", [SHAPES, "--workdir=/proc/leae_x"],
     "--workdir=/proc/leae_x: cannot write there"),
    ("workdir_is_file", "main", [SHAPES, "--workdir={file}"], "cannot write there"),
    # Scalars.
    ("batch_negative", "main", [SHAPES, "--workdir={wd}", "--config.batch_size=-5"],
     "batch_size=-5 is not valid: it must be a positive integer"),
    ("eval_batch_zero", "main", [SHAPES, "--workdir={wd}", "--config.eval_batch_size=0"],
     "eval_batch_size=0 is not valid"),
    ("eval_batches_zero", "main", [SHAPES, "--workdir={wd}", "--config.eval_batches=0"],
     "eval_batches=0 is not valid: it must be -1 (the whole test split) or a positive integer"),
    ("lr_zero", "main", [SHAPES, "--workdir={wd}", "--config.learning_rate=0"],
     "learning_rate=0.0 is not valid: it must be positive"),
    ("lr_schedule", "main", [SHAPES, "--workdir={wd}", "--config.lr_schedule=linear"],
     "Unknown lr_schedule 'linear'; valid: constant, warmup_cosine"),
    ("weight_decay", "main", [SHAPES, "--workdir={wd}", "--config.weight_decay=-1"],
     "weight_decay=-1.0 is not valid: it must be >= 0"),
    ("grad_clip", "main", [SHAPES, "--workdir={wd}", "--config.grad_clip_norm=-1"],
     "grad_clip_norm=-1.0 is not valid"),
    ("seed_negative", "main", [SHAPES, "--workdir={wd}", "--config.seed=-1"],
     "seed=-1 is not valid: it must be in [0, 2**31)"),
    ("workers_negative", "main", [SHAPES, "--workdir={wd}", "--config.num_workers=-1"],
     "num_workers=-1 is not valid"),
    ("epochs_zero", "main", [SHAPES, "--workdir={wd}", "--config.num_epochs=0"],
     "num_epochs=0 is not valid"),
    ("steps_negative", "main", [SHAPES, "--workdir={wd}", "--config.num_train_steps=-7"],
     "num_train_steps=-7 is not valid: it must be -1 (from num_epochs) or >= 0"),
    ("log_every_zero", "main", [SHAPES, "--workdir={wd}", "--config.log_every_steps=0"],
     "log_every_steps=0 is not valid"),
    ("checkpoint_every_zero", "main", [SHAPES, "--workdir={wd}", "--config.checkpoint_every_steps=0"],
     "checkpoint_every_steps=0 is not valid"),
    ("keep_zero", "main", [SHAPES, "--workdir={wd}", "--config.checkpoints_to_keep=0"],
     "checkpoints_to_keep=0 is not valid"),
    ("grid_negative", "main", [SHAPES, "--workdir={wd}", "--config.num_grid_images=-1"],
     "num_grid_images=-1 is not valid"),
    ("epoch_end", "main", [SHAPES, "--workdir={wd}", "--config.epoch_end=drop"],
     "Unknown epoch_end 'drop'; valid: partial, continue"),
    # The model.
    ("arch", "main", [SHAPES, "--workdir={wd}", "--config.model.arch=vit"],
     "Unknown model.arch 'vit'; valid: residual, first"),
    ("hidden_odd_first", "main", [SHAPES, "--workdir={wd}", "--config.model.hidden=33"],
     "model.arch='first' needs an even model.hidden"),
    ("hidden_residual", "main", ["--config=configs/shapes.py:residual_arch", "--workdir={wd}",
                                 "--config.model.hidden=33"],
     "model.arch='residual' with model.hidden=33, model.latent_channels=16 on 32px images does "
     "not fit"),
    ("latent_channels_zero", "main", [SHAPES, "--workdir={wd}", "--config.model.latent_channels=0"],
     "model.latent_channels must be positive"),
    ("residual_at_28px", "main", [SHAPES, "--workdir={wd}", "--config.model.arch=residual"],
     "image side must be divisible by 8"),
    ("image_size_zero", "main", [SHAPES, "--workdir={wd}", "--config.image_size=0"],
     "image_size=0 is not valid"),
    ("latent", "main", ["--config=configs/shapes.py:residual_arch", "--workdir={wd}",
                        "--config.model.latent=global"],
     "Unknown model.latent 'global'; valid: spatial, pooled"),
    ("pool", "main", ["--config=configs/shapes.py:residual_arch", "--workdir={wd}",
                      "--config.model.latent=pooled", "--config.model.pool=max"],
     "Unknown model.pool 'max'; valid: mlp, oneshot, progressive"),
    ("dtype", "main", [SHAPES, "--workdir={wd}", "--config.model.dtype=float17"],
     "Unknown model.dtype 'float17'; valid: float32, bfloat16"),
    ("init", "main", [SHAPES, "--workdir={wd}", "--config.model.init=zeros"],
     "Unknown model.init 'zeros'; valid: pytorch, flax"),
    ("precision", "main", [SHAPES, "--workdir={wd}", "--config.model.conv_precision=low"],
     "Unknown model.conv_precision 'low'"),
    ("norm_variance", "main", [SHAPES, "--workdir={wd}",
                               "--config.model.norm_running_variance=maybe"],
     "Unknown model.norm_running_variance 'maybe'"),
    # The objective, its judge and SIGReg.
    ("objective", "main", [SHAPES, "--workdir={wd}", "--config.objective.name=vae"],
     "Unknown objective.name 'vae'; valid: self_teaching, masked_self_teaching, mse, masked_mse"),
    ("judge", "main", [SHAPES, "--workdir={wd}", "--config.objective.judge=oracle"],
     "Unknown objective.judge 'oracle'; valid: step_frozen, live, live_stop_target, ema"),
    ("ema_decay", "main", [SHAPES, "--workdir={wd}", "--config.objective.judge=ema",
                           "--config.objective.ema_decay=1.5"],
     "objective.ema_decay must lie in [0, 1), got 1.5"),
    ("sigreg_on", "main", [SHAPES, "--workdir={wd}", "--config.objective.sigreg_on=judge"],
     "Unknown objective.sigreg_on 'judge'; valid: code, views"),
    ("sigreg_weight", "main", [SHAPES, "--workdir={wd}", "--config.objective.sigreg_weight=-1"],
     "objective.sigreg_weight=-1.0 is not valid: it must be >= 0"),
    ("sigreg_slices", "main", [SHAPES, "--workdir={wd}", "--config.objective.sigreg_slices=0"],
     "objective.sigreg_slices=0 is not valid: it must be a positive integer"),
    ("sigreg_knots", "main", [SHAPES, "--workdir={wd}", "--config.objective.sigreg_knots=1"],
     "objective.sigreg_knots=1 is not valid: it must be an integer >= 2"),
    ("sigreg_t_max", "main", [SHAPES, "--workdir={wd}", "--config.objective.sigreg_t_max=0"],
     "objective.sigreg_t_max=0.0 is not valid: it must be positive"),
    ("mask_ratio", "main", [SHAPES, "--workdir={wd}", "--config.objective.name=masked_self_teaching",
                            "--config.objective.mask_ratio=1.0"],
     "objective.mask_ratio=1.0 is not valid: it must be in [0, 1)"),
    ("eval_mask_ratio", "main", [SHAPES, "--workdir={wd}", "--config.objective.name=masked_mse",
                                 "--config.objective.eval_mask_ratio=0"],
     "objective.eval_mask_ratio=0.0 is not valid"),
    ("no_views", "main", [SHAPES, "--workdir={wd}", "--config.objective.views="],
     "objective 'self_teaching' needs objective.views or a positive objective.plain_weight"),
    ("plain_weight", "main", [SHAPES, "--workdir={wd}", "--config.objective.plain_weight=-1"],
     "objective.plain_weight=-1.0 is not valid: it must be >= 0"),
    ("view_weights_count", "main", [SHAPES, "--workdir={wd}", "--config.objective.view_weights=1,2"],
     "objective.view_weights has 2 entries but objective.views names 1 views (pixel_mask)"),
    ("view_weights_negative", "main", [SHAPES, "--workdir={wd}",
                                       "--config.objective.view_weights=-1"],
     "objective.view_weights must be non-negative with a positive sum"),
    # Views and their arguments.
    ("view", "main", [SHAPES, "--workdir={wd}", "--config.objective.views=rotate"],
     "objective.views: Unknown view 'rotate'; valid views: blur, channel_mask, crop_resize"),
    ("pixel_ratio", "main", [SHAPES, "--workdir={wd}",
                             "--config.objective.view_args.pixel_mask.ratio=1.5"],
     "objective.view_args.pixel_mask: pixel_mask ratio must lie in [0, 1], got 1.5"),
    ("crop_reversed", "main", ["--config=configs/shapes.py:crop_resize", "--workdir={wd}",
                               "--config.objective.view_args.crop_resize.crop_ratio=(0.6, 0.2)"],
     "objective.view_args.crop_resize: crop_ratio must lie in (0, 1] (and low <= high), got (0.6, 0.2)"),
    ("crop_zero", "main", ["--config=configs/shapes.py:crop_resize", "--workdir={wd}",
                           "--config.objective.view_args.crop_resize.crop_ratio=0"],
     "crop_ratio must lie in (0, 1]"),
    ("crop_three", "main", ["--config=configs/shapes.py:crop_resize", "--workdir={wd}",
                            "--config.objective.view_args.crop_resize.crop_ratio=(0.1, 0.2, 0.3)"],
     "crop_ratio must be a ratio r or a range (low, high)"),
    ("patch_size", "main", ["--config=configs/shapes.py:patch_mask", "--workdir={wd}",
                            "--config.objective.view_args.patch_mask.patch_size=5"],
     "patch_mask: image 28x28 is not divisible into 5x5 patches"),
    ("kernel_even", "main", ["--config=configs/shapes.py:detail_stack", "--workdir={wd}",
                             "--config.objective.view_args.blur.kernel_size=4"],
     "objective.view_args.blur: kernel_size must be a positive odd integer, got 4"),
    # Time series (configs/timeseries.py): the modality, its views, its lengths.
    ("modality", "main", [SHAPES, "--workdir={wd}", "--config.modality=audio"],
     "modality='audio' is not valid: it must be one of image, sequence"),
    ("series_image_view", "main", [SERIES, "--workdir={wd}", "--config.objective.views=pixel_mask"],
     "objective.views: Unknown sequence view 'pixel_mask'; valid sequence views: amplitude_offset"),
    ("series_length", "main", [SERIES, "--workdir={wd}", "--config.image_size=100"],
     "image_size=100 is not valid for series: the length must be a positive multiple of 8"),
    ("series_dataset", "main", [SERIES, "--workdir={wd}", "--config.dataset=shapes"],
     "dataset='shapes' is not valid for modality='sequence': it holds image data; the sequence "
     "datasets are synthetic_series, uea_basic_motions"),
    ("image_config_series_dataset", "main", [SHAPES, "--workdir={wd}",
                                             "--config.dataset=synthetic_series"],
     "dataset='synthetic_series' is not valid for modality='image'"),
    ("series_arch", "main", [SERIES, "--workdir={wd}", "--config.model.arch=first"],
     "model.arch='first' is not valid for series"),
    # The mesh.
    ("mesh_data", "main", [SHAPES, "--workdir={wd}", "--config.mesh.data=3"],
     "Mesh shape data=3 x fsdp=1 = 3 devices does not match the 1 devices available"),
    ("mesh_fsdp_zero", "main", [SHAPES, "--workdir={wd}", "--config.mesh.fsdp=0"],
     "mesh.fsdp must be >= 1, got 0"),
    ("mesh_fsdp_big", "main", [SHAPES, "--workdir={wd}", "--config.mesh.fsdp=2"],
     "mesh.fsdp=2 does not divide the 1 devices"),
    # Data.
    ("dataset", "main", [SHAPES, "--workdir={wd}", "--config.dataset=imagenet"],
     "Unknown dataset 'imagenet'; valid names are: celeb_a, cifar10, fashion_mnist, image_folder, shapes"),
    ("fashion_missing", "main", ["--config=configs/fashion_mnist.py", "--workdir={wd}", *TINY,
                                 "--config.idx_dir=/nonexistent", "--config.data_dir={tfds}"],
     "fashion_mnist"),
    ("fashion_truncated", "main", ["--config=configs/fashion_mnist.py", "--workdir={wd}", *TINY,
                                   "--config.idx_dir={idx_truncated}", "--config.data_dir={tfds}"],
     "train-images-idx3-ubyte"),
    ("cifar_not_prepared", "main", ["--config=configs/cifar.py", "--workdir={wd}",
                                    "--config.data_dir={tfds}"],
     "data_dir={tfds} holds neither an image folder nor a TFDS copy of cifar10: pass "
     "--config.data_dir=DIR, where DIR holds cifar10 as an image folder"),
    ("cifar_data_dir_missing", "main", ["--config=configs/cifar.py", "--workdir={wd}",
                                        "--config.data_dir={inputs}/nowhere"],
     "data_dir={inputs}/nowhere does not exist; pass --config.data_dir=DIR"),
    ("cifar_other_classes", "main", ["--config=configs/cifar.py", "--workdir={wd}",
                                     "--config.data_dir={inputs}/one_class"],
     "has the class folders cat, but cifar10 has the classes airplane, automobile"),
    # Image folders.
    ("image_folder_no_data_dir", "main", [SHAPES, "--workdir={wd}", "--config.dataset=image_folder"],
     "dataset='image_folder' reads an image folder: set --config.data_dir=DIR"),
    ("image_folder_mixed_sizes", "main", [SHAPES, "--workdir={wd}", "--config.dataset=image_folder",
                                          "--config.data_dir={inputs}/mixed_sizes",
                                          "--config.image_size=-1"],
     "images differ in size (train/cat/0.png is 8×8, train/cat/1.png is 8×12; 2 sizes in all) and "
     "no image_size is set: set --config.image_size=S"),
    ("image_folder_other_classes", "main", [SHAPES, "--workdir={wd}",
                                            "--config.dataset=image_folder",
                                            "--config.data_dir={inputs}/other_classes"],
     "the class folders of train/ and test/ differ (only in test/: dog)"),
    ("image_folder_broken_image", "main", [SHAPES, "--workdir={wd}", "--config.dataset=image_folder",
                                           "--config.data_dir={inputs}/broken_image"],
     "broken_image/train/cat/1.jpg cannot be decoded as an image"),
    ("image_folder_fit", "main", [SHAPES, "--workdir={wd}", "--config.fit=stretch"],
     "fit='stretch' is not valid: it must be one of auto, pad, resize, center_crop"),
    # Resuming with another model: refused as a change of experiment; allowed on
    # purpose, a state of another shape still cannot be restored.
    ("resume_other_model", "main", [SHAPES, "--workdir={run}", *TINY, "--config.model.hidden=12"],
     "holds a run of another experiment: model.hidden 8 → 12"),
    ("resume_other_shape", "main", [SHAPES, "--workdir={run}", *TINY, "--config.model.hidden=12",
                                    "--config.allow_changes=model.hidden"],
     "does not fit this config: model.hidden: checkpoint 8 vs config 12"),
    # leae_jax.evaluate.
    ("evaluate_step", "evaluate", ["--workdir={run}", "--step=999", "--probe=false"],
     "No checkpoint for step 999"),
    ("evaluate_not_a_run", "evaluate", ["--workdir={tfds}"], "config.json not found"),
    ("evaluate_nothing", "evaluate", [], "--workdir"),
    ("evaluate_positional", "evaluate", ["--workdir={run}", "extra"], "unexpected arguments"),
    ("evaluate_batches", "evaluate", ["--workdir={run}", "--eval_batches=0"],
     "--eval_batches=0 is not valid"),
    # leae_jax.pretrained (a workdir as a model folder).
    ("pretrained_step", "pretrained", ["--workdir={run}", "--out={wd}", "--step=999"],
     "No checkpoint for step 999"),
    ("pretrained_not_a_run", "pretrained", ["--workdir={tfds}", "--out={wd}"],
     "config.json not found"),
    ("pretrained_metrics", "pretrained", ["--workdir={run}", "--out={wd}", "--metrics={file}"],
     "--metrics={file}: not a JSON of metrics"),
    ("pretrained_examples", "pretrained", ["--workdir={run}", "--out={wd}", "--examples=-1"],
     "--examples=-1 is not valid: it must be >= 0."),
    ("pretrained_out_file", "pretrained", ["--workdir={run}", "--out={file}/x"],
     "a_file/x: cannot write there (Not a directory)"),
    # leae_jax.bench.
    ("bench_config_missing", "bench", ["--config=configs/nope.py"], "no such file"),
    ("bench_field", "bench", [SHAPES, "--config.modle.hidden=3"],
     "--config.modle.hidden: no such config field"),
    ("bench_bad_value", "bench", [SHAPES, "--config.batch_size=0"],
     "batch_size=0 is not valid"),
    ("bench_steps", "bench", [SHAPES, "--steps=0"], "--steps=0 is not valid"),
    # leae_jax.prepare and prepared records.
    ("prepare_shapes", "prepare", [SHAPES, "--out={wd}"], "needs no preparation"),
    ("prepare_series", "prepare", [SERIES, "--out={wd}"],
     "dataset='synthetic_series' holds float series; prepared records hold uint8 images"),
    ("prepare_split", "prepare", [FMNIST, "--out={wd}", "--splits=valid"],
     "--splits=valid: 'valid' is not a split; valid: train, test."),
    ("prepare_out_missing", "prepare", [FMNIST], "--out is required"),
    ("prepare_out_file", "prepare", [FMNIST, "--out={file}/x", "--config.idx_dir={idx}",
                                     "--config.data_dir={tfds}"], "a_file/x: cannot write there (Not a directory)"),
    ("prepare_from_prepared", "prepare", [FMNIST, "--out={wd}", "--config.prepared_dir={tfds}"],
     "leave prepared_dir unset here"),
    ("prepared_dir_unprepared", "main", [FMNIST, "--workdir={wd}", "--config.prepared_dir={tfds}"],
     "holds no prepared.json: it was not prepared"),
    # The experiments.
    ("ladder_rung", "experiments.ladder", ["--out={wd}", "--rungs=mse,nope"],
     "--rungs=mse,nope is not valid: unknown nope; valid: mse, plain_live"),
    ("ladder_budgets", "experiments.ladder", ["--out={wd}", "--budgets=400,abc"],
     "--budgets=400,abc is not valid: it must be comma-separated integers ≥ 1."),
    ("ladder_seeds", "experiments.ladder", ["--out={wd}", "--seeds=-1"],
     "--seeds=-1 is not valid: it must be comma-separated integers ≥ 0."),
    ("ladder_report_nothing", "experiments.ladder", ["--out={wd}", "--report_only"],
     "no stored results under"),
    ("ladder_positional", "experiments.ladder", ["--out={wd}", "extra"], "unexpected arguments"),
    ("ladder_probe_count", "experiments.ladder", ["--out={wd}", "--probe_train_examples=0"],
     "--probe_train_examples=0 is not valid: it must be -1 (all) or a positive integer."),
    ("ladder_workdir_root_file", "experiments.ladder", ["--out={wd}", "--workdir_root={file}/x"],
     "a_file/x: cannot write there (Not a directory)"),
    ("timeseries_variant", "experiments.timeseries", ["--out={wd}", "--compare=mse,nope"],
     "--compare=mse,nope is not valid: unknown nope; valid: mse, plain, crop_resize"),
    ("timeseries_dataset", "experiments.timeseries", ["--out={wd}", "--datasets=ecg"],
     "--datasets=ecg is not valid: unknown ecg; valid: synthetic, basic_motions."),
    ("timeseries_report_nothing", "experiments.timeseries", ["--out={wd}", "--report_only"],
     "no stored results under"),
]


# Cases run in another folder than the checkout (formatted like the arguments).
CWD = {"config_outside_checkout": "{inputs}"}


@pytest.mark.parametrize("case,module,args,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line(case, module, args, expected, server, files, tmp_path):
  names = dict(wd=tmp_path / "wd", root=ROOT, **files)
  args = [a.format(**names) for a in args]
  expected = expected.format(**names)
  proc = server.run(f"leae_jax.{module}", args, CWD.get(case, "{root}").format(**names))
  everything = proc["stdout"] + proc["stderr"]
  lines = [l for l in proc["stderr"].splitlines() if l.strip()]
  assert proc["returncode"] == cli.EXIT_USAGE == 2, everything[-3000:]
  assert "Traceback" not in everything, everything[-3000:]
  assert len(lines) == 1, everything[-3000:]
  assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
  if case.startswith(("cifar_", "image_folder_")):  # data is checked before the workdir is made
    assert not (tmp_path / "wd").exists()


def test_exit_status_tells_bad_input_from_a_failed_run():
  """2 for bad input, 1 for a run that failed with good input (the rule in docs/training.md)."""
  import errno
  from leae_jax import checkpoints, data, outputs, train

  def raised_from(cause, wrapper=cli.UserError):
    try:
      try:
        raise cause
      except BaseException as err:
        raise wrapper(str(err)) from err
    except BaseException as err:  # pylint: disable=broad-except
      return err

  bad_input = [cli.UserError("--config.batch_size=-5 is not valid"),
               raised_from(ValueError("Unknown model.arch 'vit'")),
               raised_from(FileNotFoundError(errno.ENOENT, "config.json not found")),
               raised_from(PermissionError(errno.EACCES, "Permission denied")),  # --workdir=/root/x
               data.DatasetUnavailableError("cifar10 not found"),
               checkpoints.IncompatibleCheckpointError("model.hidden: checkpoint 8 vs config 12")]
  failed_run = [train.NonFiniteLossError("Non-finite loss at step 4"),
                outputs.WriteError(errno.EACCES, "could not write the checkpoint of step 40"),
                raised_from(FloatingPointError("loss is nan")),  # frechet.py: lower --learning_rate
                raised_from(OSError(errno.ENOSPC, "No space left on device")),
                raised_from(OSError(errno.EFBIG, "File too large"))]
  assert [cli.exit_status(e) for e in bad_input] == [2] * len(bad_input)
  assert [cli.exit_status(e) for e in failed_run] == [1] * len(failed_run)
