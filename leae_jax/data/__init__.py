"""The input pipeline, moved to `leae_jax.data.loaders` (was `leae_jax/data.py`) and re-exported.

A step towards the `data/` package: the next commit splits it into sources,
transforms and loaders.
"""

from leae_jax.data import loaders
from leae_jax.data.loaders import *  # noqa: F401,F403  (the public API, as before)

__all__ = loaders.__all__
_REGISTRY = loaders._REGISTRY  # pylint: disable=protected-access
GlobalOrderSampler = loaders.GlobalOrderSampler
CenterCropWindow = loaders.CenterCropWindow
SHAPE_NAMES = loaders.SHAPE_NAMES
PREPARE_INSTALL = loaders.PREPARE_INSTALL
