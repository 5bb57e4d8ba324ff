#!/usr/bin/env bash
# Runs leae_jax.main as NUM_PROCESSES processes on this machine, joined by
# JAX's distributed runtime on 127.0.0.1 with CPU (gloo) collectives: a
# multi-host run without a cluster, for tests and debugging.
#
# Usage:
#   launch/local_multiprocess.sh NUM_PROCESSES CONFIG WORKDIR [--config.x=y ...]
#
# Variables (environment):
#   PYTHON               interpreter to run (default: python3)
#   PORT                 coordinator port on 127.0.0.1 (default: a free port)
#   DEVICES_PER_PROCESS  CPU devices each process simulates (default: 1)
#   LOG_DIR              per-process logs process_<i>.log (default: WORKDIR/logs)
#   XLA_FLAGS            kept; the device-count flag is appended to it
#
# Process 0's log is also echoed to stdout. The script waits for every
# process and exits non-zero if any fails; a failure stops the others, which
# would otherwise wait for the dead one in their next collective.
set -euo pipefail

if [[ $# -lt 3 ]]; then
  echo "usage: $0 NUM_PROCESSES CONFIG WORKDIR [--config.x=y ...]" >&2
  exit 2
fi
NUM_PROCESSES=$1
CONFIG=$2
WORKDIR=$3
shift 3
if ! [[ ${NUM_PROCESSES} =~ ^[1-9][0-9]*$ ]]; then
  echo "NUM_PROCESSES must be a positive integer, got '${NUM_PROCESSES}'" >&2
  exit 2
fi

PYTHON=${PYTHON:-python3}
DEVICES_PER_PROCESS=${DEVICES_PER_PROCESS:-1}
LOG_DIR=${LOG_DIR:-${WORKDIR}/logs}
if [[ -z ${PORT:-} ]]; then
  PORT=$("${PYTHON}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
mkdir -p "${LOG_DIR}"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "${pid}" 2>/dev/null || true
  done
}
trap cleanup INT TERM

for ((i = 0; i < NUM_PROCESSES; i++)); do
  JAX_PLATFORMS=cpu \
  JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo \
  XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=${DEVICES_PER_PROCESS}" \
    "${PYTHON}" -m leae_jax.main --config="${CONFIG}" --workdir="${WORKDIR}" \
      --coordinator_address="127.0.0.1:${PORT}" --num_processes="${NUM_PROCESSES}" \
      --process_id="${i}" "$@" >"${LOG_DIR}/process_${i}.log" 2>&1 &
  pids+=("$!")
done

tail -n +1 -f "${LOG_DIR}/process_0.log" --pid="${pids[0]}" &
tail_pid=$!

# Poll so that the first failure, whichever process it is, stops the rest.
status=0
remaining=${#pids[@]}
declare -A done_pids=()
while ((remaining > 0)); do
  for i in "${!pids[@]}"; do
    pid=${pids[$i]}
    [[ -n ${done_pids[$pid]:-} ]] && continue
    if ! kill -0 "${pid}" 2>/dev/null; then
      rc=0
      wait "${pid}" || rc=$?
      done_pids[$pid]=1
      remaining=$((remaining - 1))
      if ((rc != 0)); then
        echo "process ${i} failed with exit code ${rc}; see ${LOG_DIR}/process_${i}.log" >&2
        tail -n 20 "${LOG_DIR}/process_${i}.log" >&2 || true
        if ((status == 0)); then
          status=${rc}
          cleanup
        fi
      fi
    fi
  done
  sleep 0.5
done
wait "${tail_pid}" 2>/dev/null || true
exit "${status}"
