#!/usr/bin/env bash
# Train on a Cloud TPU VM pod slice: create the slice, copy this checkout to
# every worker and install it, run leae_jax.main on all workers at once, then
# delete the slice.
#
# Usage (from anywhere; the checkout this script sits in is what gets shipped):
#   WORKDIR=gs://BUCKET/runs/cifar launch/tpu_pod.sh [--config.FIELD=VALUE ...]
#   DRY_RUN=1 WORKDIR=gs://BUCKET/runs/cifar launch/tpu_pod.sh   # print only
#
# Arguments go to leae_jax.main after --config and --workdir: config overrides
# such as --config.batch_size=1024 (the GLOBAL batch, split over all hosts),
# --config.mesh.fsdp=4, or --config.data_dir=gs://BUCKET/tensorflow_datasets
# (each worker reads the dataset itself, so it must be where all can see it).
#
# Environment variables, [default]:
#   WORKDIR           Required, a gs:// path. Every host writes its part of each
#                     checkpoint there, so it must be storage all hosts share; the
#                     TPU service account needs write access to the bucket.
#   CONFIG            Config file relative to the repository root, optionally
#                     with :variants. [configs/cifar.py]
#   TPU_NAME          Slice name. [leae-jax-$USER, lower-cased]
#   ZONE              A zone offering ACCELERATOR_TYPE. [us-central2-b]
#   ACCELERATOR_TYPE  Slice type; v4-32 is 16 chips on 4 hosts. [v4-32]
#   RUNTIME_VERSION   TPU VM software version. v5e, v5p and v6e slices need
#                     their own (see the Cloud TPU docs). [tpu-ubuntu2204-base]
#   PROJECT           GCP project. [empty: gcloud's configured project]
#   SPOT              1 creates a Spot slice: cheaper, but can be preempted. [0]
#   REUSE_TPU         1 uses an existing slice called TPU_NAME instead of
#                     creating one (pair with KEEP_TPU=1 for repeated runs). [0]
#   KEEP_TPU          1 leaves the slice running afterwards; it keeps billing. [0]
#   DRY_RUN           1 prints the gcloud commands instead of running them. [0]
#
# Runs are resumable: re-running with the same WORKDIR continues from its last
# checkpoint.

set -euo pipefail

# Written for bash 3.2 too (macOS), hence no ${var,,} or ${var@Q}.

WORKDIR="${WORKDIR:-}"
CONFIG="${CONFIG:-configs/cifar.py}"
TPU_NAME="${TPU_NAME:-leae-jax-$(printf '%s' "${USER:-$(id -un)}" | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9-' '-')}"
ZONE="${ZONE:-us-central2-b}"
ACCELERATOR_TYPE="${ACCELERATOR_TYPE:-v4-32}"
RUNTIME_VERSION="${RUNTIME_VERSION:-tpu-ubuntu2204-base}"
PROJECT="${PROJECT:-}"
SPOT="${SPOT:-0}"
REUSE_TPU="${REUSE_TPU:-0}"
KEEP_TPU="${KEEP_TPU:-0}"
DRY_RUN="${DRY_RUN:-0}"

die() {
  echo "tpu_pod.sh: error: $*" >&2
  exit 2
}

# Check everything cheap before paying for a slice.
case "${WORKDIR}" in
  gs://?*) ;;
  *) die "WORKDIR must be a gs:// path (got '${WORKDIR}'): all TPU hosts write checkpoints into it, so it has to be a bucket they share, e.g. WORKDIR=gs://my-bucket/runs/cifar" ;;
esac

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
config_file="${CONFIG%%:*}"
case "${config_file}" in
  /*) die "CONFIG must be relative to the repository root (got '${CONFIG}'): it is read from the copy on the workers" ;;
esac
[[ -f "${REPO_ROOT}/${config_file}" ]] || die "config file '${config_file}' not found under ${REPO_ROOT}"

if [[ "${DRY_RUN}" != 1 ]]; then
  command -v gcloud >/dev/null || die "gcloud not found; install the Google Cloud SDK (or set DRY_RUN=1)"
  command -v git >/dev/null || die "git not found; it lists the files to ship"
fi

# Prints a command in copy-pasteable form; quotes only the words that need it.
show() {
  local out="+" arg
  for arg in "$@"; do
    case "${arg}" in
      '' | *[!A-Za-z0-9_./:=@,+%-]*) out+=" '${arg//\'/\'\\\'\'}'" ;;
      *) out+=" ${arg}" ;;
    esac
  done
  echo "${out}"
}

run() {
  show "$@"
  if [[ "${DRY_RUN}" != 1 ]]; then
    "$@"
  fi
}

project_flag=()
if [[ -n "${PROJECT}" ]]; then
  project_flag=(--project="${PROJECT}")
fi

tpu_vm() {
  local verb="$1"
  shift
  # ${a[@]+...}: bash < 4.4 treats an empty array as unset under `set -u`.
  run gcloud compute tpus tpu-vm "${verb}" "${TPU_NAME}" --zone="${ZONE}" \
    ${project_flag[@]+"${project_flag[@]}"} "$@"
}

slice_up=0
tmpdir=""

cleanup() {
  local rc=$?
  if [[ "${slice_up}" == 1 ]]; then
    if [[ "${KEEP_TPU}" == 1 ]]; then
      echo "tpu_pod.sh: KEEP_TPU=1: slice ${TPU_NAME} is still running (and billing)." >&2
    else
      echo "tpu_pod.sh: deleting slice ${TPU_NAME} (KEEP_TPU=1 keeps it)." >&2
      tpu_vm delete --quiet ||
        echo "tpu_pod.sh: warning: could not delete ${TPU_NAME}; delete it by hand to stop billing." >&2
    fi
  fi
  if [[ -n "${tmpdir}" ]]; then
    rm -rf "${tmpdir}"
  fi
  exit "${rc}"
}
trap cleanup EXIT
# Without these, Ctrl-C or a scheduler's SIGTERM would skip the EXIT trap and
# leave the slice running.
trap 'exit 130' INT
trap 'exit 143' TERM

# 1. The slice.
if [[ "${REUSE_TPU}" == 1 ]]; then
  slice_up=1
else
  spot_flag=()
  if [[ "${SPOT}" == 1 ]]; then
    spot_flag=(--spot)
  fi
  tpu_vm create --accelerator-type="${ACCELERATOR_TYPE}" \
    --version="${RUNTIME_VERSION}" ${spot_flag[@]+"${spot_flag[@]}"}
  # Only now: a failed create may mean the name belongs to someone else's slice.
  slice_up=1
fi

# 2. The code. The working tree rather than HEAD (`git archive`), so that
# uncommitted edits and new, not yet added configs are what runs; files git
# ignores (workdirs, build outputs) stay behind.
if [[ "${DRY_RUN}" == 1 ]]; then
  tarball="/tmp/leae_jax.tar.gz"
  echo "+ # pack the working tree of ${REPO_ROOT} into ${tarball}"
else
  tmpdir="$(mktemp -d)"
  tarball="${tmpdir}/leae_jax.tar.gz"
  files=()
  while IFS= read -r -d '' f; do
    # ls-files still lists tracked files deleted from the working tree.
    if [[ -e "${REPO_ROOT}/${f}" ]]; then
      files+=("${f}")
    fi
  done < <(git -C "${REPO_ROOT}" ls-files -z --cached --others --exclude-standard)
  tar -C "${REPO_ROOT}" -czf "${tarball}" -- "${files[@]}"
fi

# scp takes the slice name inside the destination rather than as the first
# argument, so it does not go through tpu_vm.
run gcloud compute tpus tpu-vm scp "${tarball}" "${TPU_NAME}:leae_jax.tar.gz" \
  --worker=all --zone="${ZONE}" ${project_flag[@]+"${project_flag[@]}"}
# Unpack into a fresh directory so files removed locally do not linger on a
# reused slice. jax[tpu] in the same pip call, so the resolver picks a jax that
# libtpu and the package's own requirements agree on. The prepare extra
# (TensorFlow) because etils/orbax reach gs:// paths through TensorFlow's
# gfile when it is installed (without it they would need gcsfs).
tpu_vm ssh --worker=all --command="rm -rf ~/leae_jax && mkdir ~/leae_jax && tar -xzf ~/leae_jax.tar.gz -C ~/leae_jax && cd ~/leae_jax && python3 -m pip install -q -U 'jax[tpu]' '.[prepare]'"

# 3. Training: one process per host, all started together. --distributed=on
# because a TPU VM describes its slice in GCE metadata, not in environment
# variables a launcher-agnostic check could see; jax.distributed.initialize()
# reads the metadata and finds the other hosts itself.
train_cmd="cd ~/leae_jax && python3 -m leae_jax.main --distributed=on"
for arg in "--config=${CONFIG}" "--workdir=${WORKDIR}" "$@"; do
  train_cmd+=" $(printf '%q' "${arg}")"
done
# Keep-alives: a dropped SSH session would kill training mid-run.
tpu_vm ssh --worker=all --ssh-flag="-o ServerAliveInterval=60" --command="${train_cmd}"
