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

Modules, each importing only those above it in this list: `errors` (the
errors and splits), `prepared_source` (the prepared layout and its reader),
`registry` (`DatasetInfo`, `SourceOptions` and the registry of datasets by
name), the families of sources, each registering its datasets on import
(`shapes`, `image_folder`, `tfds_source`, `idx` with `fashion_mnist`,
`series`), `sources` (`get_source` and `describe`: a name and options to a
source), `transforms` (the grain `Map` transforms and `preprocess_ops`),
`prepared` (writing prepared records), and the loaders: `batching` (what they
share), `loaders` (`create_loader`, `load_arrays`), `eval_loader` and
`train_loader` (`BatchSchedule`).
Everything public is re-exported here: `data.create_train_loader(...)`.
"""

# Every module, so that `data.<module>` reaches it; importing a family of sources
# (shapes, image_folder, tfds_source, idx, series) registers its datasets.
from leae_jax.data import batching
from leae_jax.data import errors
from leae_jax.data import eval_loader
from leae_jax.data import idx
from leae_jax.data import image_folder
from leae_jax.data import loaders
from leae_jax.data import prepared
from leae_jax.data import prepared_source
from leae_jax.data import registry
from leae_jax.data import series
from leae_jax.data import shapes
from leae_jax.data import sources
from leae_jax.data import tfds_source
from leae_jax.data import train_loader
from leae_jax.data import transforms
from leae_jax.data.batching import SOURCE_OPTIONS
from leae_jax.data.errors import CorruptDataError
from leae_jax.data.errors import DatasetUnavailableError
from leae_jax.data.eval_loader import EvalLoader
from leae_jax.data.eval_loader import create_eval_loader
from leae_jax.data.eval_loader import eval_slots
from leae_jax.data.eval_loader import iterate_once
from leae_jax.data.idx import DEFAULT_IDX_DIR
from leae_jax.data.idx import IdxSource
from leae_jax.data.idx import read_idx
from leae_jax.data.loaders import GlobalOrderSampler
from leae_jax.data.loaders import create_loader
from leae_jax.data.loaders import load_arrays
from leae_jax.data.prepared_source import PreparedDataError
from leae_jax.data.prepared_source import PreparedSource
from leae_jax.data.registry import DatasetInfo
from leae_jax.data.registry import SourceOptions
from leae_jax.data.registry import dataset_info
from leae_jax.data.registry import valid_names
from leae_jax.data.shapes import SHAPE_NAMES
from leae_jax.data.shapes import ShapesSource
from leae_jax.data.sources import config_options
from leae_jax.data.sources import describe
from leae_jax.data.sources import get_source
from leae_jax.data.sources import num_examples
from leae_jax.data.sources import uint8_batches
from leae_jax.data.tfds_source import PREPARE_INSTALL
from leae_jax.data.train_loader import BatchSchedule
from leae_jax.data.train_loader import EPOCH_ENDS
from leae_jax.data.train_loader import TrainLoader
from leae_jax.data.train_loader import create_train_loader
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
_REGISTRY = registry._REGISTRY  # pylint: disable=protected-access

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
