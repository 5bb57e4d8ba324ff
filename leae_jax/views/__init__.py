"""Transformations ("views") under which the judge compares an input and its reconstruction.

* `views.base`: the `View` type (`sample(key, shape) -> params`,
  `transform(params, x) -> x`; `pair` applies one draw to both sides), the
  registry of views by name, one namespace per modality, and the helpers both
  modalities share;
* `views.image`: the image views (`crop_resize`, `pixel_mask`, `patch_mask`,
  `channel_mask`, `inpaint`, the detail stack), in the `image` namespace;
* `views.sequence`: the views of series `(N, L, C)`, in the `sequence`
  namespace.

Importing this package registers both: `views.get_view('crop_resize',
crop_ratio=0.15)` builds an image view, `views.get_view('time_mask',
modality='sequence')` a sequence one, and a notebook adds its own with
`@views.register('name')`.
"""

from leae_jax.views import image
from leae_jax.views import sequence
from leae_jax.views.base import MODALITIES
from leae_jax.views.base import View
from leae_jax.views.base import default_args
from leae_jax.views.base import deterministic
from leae_jax.views.base import get_view
from leae_jax.views.base import names
from leae_jax.views.base import register
from leae_jax.views.image import DETAIL_STACK

__all__ = ["DETAIL_STACK", "MODALITIES", "View", "default_args", "deterministic", "get_view",
           "image", "names", "register", "sequence"]
