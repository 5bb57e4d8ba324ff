"""Input pipeline: grain data loaders over procedural shapes and TFDS image datasets.

Every dataset is exposed as a grain random-access data source of raw records
(`get_source`), turned into `{'image': float32 (H, W, C) in [0, 1], 'label': int32}`
by a short list of grain `Map` transforms (`preprocess_ops`), and batched by a
checkpointable `grain.DataLoader` (`create_loader`, general use), for
training by step (`create_train_loader`: step → batch is a pure function of
the seed and the step, cut by a `BatchSchedule`), and for evaluation by batch
index (`create_eval_loader`: fixed global batches of real records, padded to
split evenly over any number of devices and processes). Batches are dicts
of numpy arrays: `image (B, H, W, C) float32`, `label (B,) int32` (-1 where a
dataset has no labels).

Datasets:
  shapes         procedural, one grey circle/ring/square per image, label = shape type.
  fashion_mnist  TFDS, falling back to the original IDX gzip files (Debian package
                 `dataset-fashion-mnist`) when TFDS has not prepared it and cannot
                 download it; 28x28 padded to 32x32 by default.
  cifar10        TFDS (ArrayRecord), 32x32x3, or an image folder of it (`data_dir`).
  image_folder   any `<data_dir>/{train,test}/<class>/<image>.{jpg,jpeg,png}` tree
                 (`image_folder`): size, channels and classes from the files.
  celeb_a        TFDS (ArrayRecord), the central 128×128 window of the 178×218 aligned
                 faces (no resizing, as the published runs); unlabelled (label -1).

Sequence datasets (`series`: records `{'image': float32 (L, C), 'label'}`,
normalised per channel): `synthetic_series` (procedural) and
`uea_basic_motions` (UEA BasicMotions, from the files sktime ships).

TFDS datasets must be available in ArrayRecord format (`tfds.data_source` is random
access); when they are not and cannot be downloaded, `DatasetUnavailableError` says
how to provide them by hand. TensorFlow Datasets is imported lazily so that `shapes`
and the IDX fallback work without importing it. Reading a prepared copy does not
need TensorFlow; only preparing one does (`pip install -e ".[prepare]"`).

Prepared records (`prepared`, `config.prepared_dir`): any uint8 dataset written
once, already fitted to the training size, as uncompressed ArrayRecord shards
(`python -m leae_jax.prepare`); its workers then only copy bytes, and training
batches stay uint8 until the device scales them.

Modules: `errors` (the errors and splits, at the bottom), `image_folder`
(image-folder trees), `sources` (the dataset registry, in which each entry knows how to
open itself, so adding a dataset is one entry; the shapes, IDX and TFDS
sources; the errors), `prepared` (prepared records), `transforms` (the grain `Map` transforms and
`preprocess_ops`) and `loaders` (samplers, `BatchSchedule` and the loaders).
Everything public is re-exported here: `data.create_train_loader(...)`.
"""

from leae_jax.data import image_folder
from leae_jax.data import prepared
from leae_jax.data import sources
from leae_jax.data.loaders import (
    EPOCH_ENDS,
    SOURCE_OPTIONS,
    BatchSchedule,
    EvalLoader,
    GlobalOrderSampler,
    TrainLoader,
    create_eval_loader,
    create_loader,
    create_train_loader,
    eval_slots,
    iterate_once,
    load_arrays,
)
from leae_jax.data.sources import (
    DEFAULT_IDX_DIR,
    PREPARE_INSTALL,
    SHAPE_NAMES,
    CorruptDataError,
    DatasetInfo,
    DatasetUnavailableError,
    IdxSource,
    ShapesSource,
    SourceOptions,
    config_options,
    dataset_info,
    describe,
    get_source,
    num_examples,
    read_idx,
    uint8_batches,
    valid_names,
)
from leae_jax.data.prepared import PreparedDataError, PreparedSource
# The sequence datasets (modality 'sequence') register themselves on import.
from leae_jax.data import series
from leae_jax.data.transforms import (
    CenterCropSquare,
    CenterCropWindow,
    FITS,
    FitImage,
    PadImage,
    ResizeImage,
    ToFloatImage,
    ToImageLabel,
    preprocess_ops,
)

#: The registry of `DatasetInfo`s by name (tests register variants of the datasets in it).
_REGISTRY = sources._REGISTRY  # pylint: disable=protected-access

__all__ = [
    "DEFAULT_IDX_DIR",
    "EPOCH_ENDS",
    "PREPARE_INSTALL",
    "SHAPE_NAMES",
    "SOURCE_OPTIONS",
    "BatchSchedule",
    "DatasetInfo",
    "CorruptDataError",
    "DatasetUnavailableError",
    "CenterCropSquare",
    "CenterCropWindow",
    "FITS",
    "FitImage",
    "PadImage",
    "ResizeImage",
    "ShapesSource",
    "SourceOptions",
    "ToFloatImage",
    "ToImageLabel",
    "TrainLoader",
    "IdxSource",
    "EvalLoader",
    "PreparedDataError",
    "PreparedSource",
    "GlobalOrderSampler",
    "create_eval_loader",
    "create_loader",
    "create_train_loader",
    "dataset_info",
    "describe",
    "image_folder",
    "load_arrays",
    "eval_slots",
    "get_source",
    "iterate_once",
    "num_examples",
    "preprocess_ops",
    "read_idx",
    "valid_names",
    "config_options",
    "uint8_batches",
    "series",
]
