"""Starting JAX's distributed runtime (one process per host, or per GPU).

Three ways in:

* explicit: `coordinator_address`, `num_processes` and `process_id` (any
  cluster, and several processes on one machine for testing);
* automatic: on a TPU pod slice, under SLURM or Open MPI, JAX finds the
  coordinator and the process ids itself (`jax.distributed.initialize()`);
* none: a single process (the default when no cluster is detected).

Must run before anything touches a JAX device. `StopRequest` turns a
preemption notice (SIGTERM) or a first Ctrl-C (SIGINT) into a stop at the same
step on every process.
"""

from __future__ import annotations

import os
import signal
import threading

from absl import logging
import jax
from jax.experimental import multihost_utils

MODES = ("auto", "on", "off")


def cluster_detected(environ: dict[str, str] | None = None) -> bool:
  """Whether the environment describes a multi-process job JAX can join by itself."""
  env = os.environ if environ is None else environ
  if int(env.get("SLURM_NTASKS", env.get("SLURM_NPROCS", "1")) or 1) > 1:
    return True
  if int(env.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1:
    return True
  # TPU VM pod slices list every worker's hostname; a single host lists one.
  hosts = env.get("TPU_WORKER_HOSTNAMES", "")
  return len([h for h in hosts.split(",") if h.strip()]) > 1


def initialize(mode: str = "auto", *, coordinator_address: str | None = None,
               num_processes: int | None = None, process_id: int | None = None,
               local_device_ids: list[int] | None = None) -> bool:
  """Starts the distributed runtime if asked to or if a cluster is detected.

  Args:
    mode: 'auto' (explicit flags, else cluster detection), 'on' (always; JAX
      must detect the cluster unless the flags are given), 'off' (never).
    coordinator_address: 'host:port' of process 0's coordinator.
    num_processes: Total number of processes.
    process_id: This process's index in [0, num_processes).
    local_device_ids: Devices this process uses (default: all it sees).

  Returns:
    Whether `jax.distributed.initialize` was called.
  """
  if mode not in MODES:
    raise ValueError(f"Unknown distributed mode {mode!r}; valid: {', '.join(MODES)}.")
  explicit = [coordinator_address, num_processes, process_id]
  if any(v is not None for v in explicit) and any(v is None for v in explicit):
    raise ValueError("Pass all of --coordinator_address, --num_processes and --process_id "
                     "(or none, to let JAX detect the cluster).")
  given = coordinator_address is not None
  if given and not 0 <= process_id < num_processes:
    raise ValueError(f"--process_id={process_id} must be in [0, {num_processes}).")
  if mode == "off" or (mode == "auto" and not given and not cluster_detected()):
    return False
  if given:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id,
                               local_device_ids=local_device_ids)
  else:
    jax.distributed.initialize(local_device_ids=local_device_ids)
  logging.info("Distributed runtime: process %d of %d, %d local / %d global devices.",
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())
  return True


class StopRequest:
  """Turns SIGTERM (preemption notice) or a first Ctrl-C (SIGINT) into a stop between steps.

  One process: a SIGTERM handler sets a flag. Several processes: all must stop
  at the same step to save one checkpoint together, so the decision comes
  from JAX's preemption sync point (the distributed runtime's own SIGTERM
  notifier, agreed between processes), and no SIGTERM handler is installed
  here. A first SIGINT does what SIGTERM does — with several processes it
  becomes a SIGTERM to this process, which the runtime then agrees on — and
  puts Python's own handler back, so that a second Ctrl-C aborts at once
  (KeyboardInterrupt). `signal_name` says which signal asked to stop.
  """

  def __init__(self):
    self.requested = False
    self.signal_name = ""
    self._previous: dict[int, object] = {}
    self._multihost = jax.process_count() > 1

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      if not self._multihost:
        self._previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._handle)
      self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._interrupt)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True
    self.signal_name = self.signal_name or "SIGTERM"

  def _interrupt(self, signum, frame):
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C aborts
    self.signal_name = "SIGINT"
    if self._multihost:
      os.kill(os.getpid(), signal.SIGTERM)  # the runtime's notifier: every process stops together
    else:
      self._handle(signum, frame)

  @property
  def interrupted(self) -> bool:
    """Whether the stop was asked for by Ctrl-C (SIGINT)."""
    return self.signal_name == "SIGINT"

  def should_stop(self, step: int) -> bool:
    if self._multihost:
      try:
        self.requested = multihost_utils.reached_preemption_sync_point(step)
      except RuntimeError:  # the runtime was started without a preemption notifier
        self._multihost = False
    return self.requested

  def __exit__(self, *exc):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    return False
