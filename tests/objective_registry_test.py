"""The objective registry: a new objective is one function and one decorator."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from leae_jax import checkpoints
from leae_jax import evaluate
from leae_jax import models
from leae_jax import objectives
from leae_jax import train
from leae_jax import views

import helpers


@pytest.fixture
def l1_objective():
  """Registers a masked pixel-L1 baseline for one test, then removes it."""

  @objectives.register("masked_l1_test", judged=False, masked=True, reads=())
  def _build(config, model):
    mask = views.get_view("inpaint", mask_ratio=objectives.mask_ratio(config))

    def loss_fn(params, batch_stats, images, key):
      masked = mask(key, images)
      codes, new_stats = models.encode(model, params["encoder"], batch_stats, masked)
      recon = models.decode(model, params["decoder"], codes)
      loss = jnp.mean(jnp.abs(recon - images))
      parts = dict(loss=loss, pixel_l1=loss)
      return loss, dict(parts=parts, batch_stats=new_stats, images=dict(reconstruction=recon))

    return loss_fn

  yield "masked_l1_test"
  del objectives._REGISTRY["masked_l1_test"]


def test_a_registered_objective_trains_checkpoints_and_evaluates(l1_objective, tmp_path):
  # Nothing outside the decorated function knows the new name: training,
  # the checkpoint fingerprint, and evaluation (hole PSNR, since it declared
  # masked=True) all ask the registry.
  config = helpers.tiny_config(**{"objective.name": l1_objective, "objective.sigreg_weight": 0.0,
                                  "num_train_steps": 4, "log_every_steps": 2,
                                  "checkpoint_every_steps": 2})
  result = train.train_and_evaluate(config, str(tmp_path))
  assert result["step"] == 4
  spec = objectives.spec(l1_objective)
  assert spec.masked and not spec.judged and spec.reads == ("mask_ratio", "eval_mask_ratio")
  assert checkpoints.structure_fingerprint(train.resolve(config))["ema_judge"] is False
  records = [json.loads(l) for l in open(os.path.join(tmp_path, "metrics.jsonl"))]
  assert [r["step"] for r in records if "train/pixel_l1" in r] == [2, 4]
  metrics = evaluate.evaluate_workdir(str(tmp_path), 4, probe=False, figures=False)
  assert metrics["objective"] == l1_objective and metrics["judge"] is None
  assert np.isfinite(metrics["hole_psnr"]) and np.isfinite(metrics["psnr"])


@pytest.mark.parametrize("name", objectives.names())
def test_objectives_read_only_the_fields_they_declare(name):
  # Every objective field outside `reads` is set to a value that breaks any
  # use; the loss must come out the same as with the defaults.
  model = models.create_model(helpers.model_config(hidden=8, latent_channels=4),
                              image_size=16, image_channels=3)
  variables = models.init_variables(model, jax.random.key(0))
  images = jax.random.uniform(jax.random.key(1), (8, 16, 16, 3))
  base = dict(name=name, sigreg_slices=8)
  reference = objectives.create_objective(helpers.objective_config(**base), model)
  spec = objectives.spec(name)
  unread = set(helpers.objective_config()) - set(spec.reads) - {"name"}
  assert unread  # every objective ignores some field
  poisoned = helpers.objective_config(**base, **{f: object() for f in unread})
  objective = objectives.create_objective(poisoned, model)
  ema = objectives.init_ema(variables["params"]) if objective.uses_ema else None
  args = (variables["params"], variables["batch_stats"], images, jax.random.key(2), ema)
  np.testing.assert_allclose(objective(*args)[0], reference(*args)[0], rtol=1e-6)
  # ...and each declared field exists in the base config.
  assert set(spec.reads) <= set(helpers.objective_config())


def test_unknown_objective_names_the_registered_ones():
  with pytest.raises(ValueError, match="Unknown objective.name 'vae'; valid: self_teaching, "
                                       "masked_self_teaching, mse, masked_mse"):
    objectives.spec("vae")
