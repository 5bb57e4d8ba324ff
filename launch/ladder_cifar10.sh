#!/bin/bash
# The CIFAR-10 ablation ladder (and the two new Fashion-MNIST rungs) as one
# resumable background job: every stage skips the results already stored, so
# running this again after a stop, a kill or a new machine continues where the
# stored results end (a half-trained run restarts from its newest checkpoint
# if its workdir survived, else from step 0).
#
#   nohup nice -n 19 bash launch/ladder_cifar10.sh > ladder_cifar10.log 2>&1 &
#
# Environment variables, [default]:
#   CIFAR10      the CIFAR-10 image folder [../shared/data/cifar10]
#   PREPARED     where its prepared records go (written once, ~1 min) [workdirs/cifar10_prepared]
#   WORKDIRS     the runs' workdirs (checkpoints) [workdirs]
#   OUT          the results folder of the CIFAR-10 page [docs/results_cifar10]
#   FASHION_OUT  the results folder of the Fashion-MNIST page [docs/results]
#
# Stages, in order (breadth first, so a stop leaves whole tables; within a stage
# each ladder goes budget by budget and then, within a budget, seed by seed):
#   1. every CIFAR-10 rung at one epoch (391 steps), seed 0;
#   2. the two new Fashion-MNIST rungs (plain_step_frozen,
#      crop_step_frozen_no_sigreg) x 3 seeds at 400 and 1600 steps;
#   3. seed 0 of the two shipped rungs (crop_step_frozen, mse) to 5 epochs
#      (782 and 1955 steps): the CIFAR-10 models in leae_jax/pretrained_models;
#   4. every CIFAR-10 rung at one epoch, seeds 1 and 2;
#   5. the budget curves (782 and 1955 steps = 5 epochs): first seeds 1 and 2
#      of crop_step_frozen and mse (the blur-at-equal-PSNR comparison needs
#      them), then the other headline rungs (pixel_mask_live, crop_live).
set -euo pipefail
cd "$(dirname "$0")/.."
CIFAR10=${CIFAR10:-../shared/data/cifar10}
PREPARED=${PREPARED:-workdirs/cifar10_prepared}
WORKDIRS=${WORKDIRS:-workdirs}
OUT=${OUT:-docs/results_cifar10}
FASHION_OUT=${FASHION_OUT:-docs/results}

if [ ! -f "$PREPARED/prepared.json" ]; then
  python -m leae_jax.prepare --config=configs/cifar.py --config.data_dir="$CIFAR10" --out="$PREPARED"
fi
cifar() {
  python -m leae_jax.experiments.ladder --dataset=cifar10 --data_dir="$CIFAR10" \
      --prepared_dir="$PREPARED" --out="$OUT" --workdir_root="$WORKDIRS/ladder_cifar10" "$@"
}
cifar --seeds=0 --curve_budgets=
python -m leae_jax.experiments.ladder --out="$FASHION_OUT" --workdir_root="$WORKDIRS/ladder" \
    --rungs=plain_step_frozen,crop_step_frozen_no_sigreg
cifar --seeds=0 --rungs=crop_step_frozen,mse
cifar --curve_budgets=
cifar --rungs=crop_step_frozen,mse
cifar
echo "ladder_cifar10: all stages done"
