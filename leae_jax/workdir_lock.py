"""One run per workdir: an advisory file lock held while a run trains.

`<workdir>/run.lock` is locked with `fcntl.flock` for as long as a run trains
in the workdir, and holds who holds it (host, pid, start time). A second run
on the same workdir stops before it writes anything, with one line naming
the holder (`WorkdirBusyError`). The kernel releases a lock when its process
ends, however it ends, so a lock left behind by a killed run (`kill -9`, a
crash) is simply taken over, with a warning naming the run that left it.
Reading a workdir (`leae_jax.evaluate`) takes no lock: it never blocks a run.

With several processes, process 0 holds the lock for the run.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket

from absl import logging

LOCK_FILE = "run.lock"


class WorkdirBusyError(Exception):
  """Another running process holds the workdir's lock."""


def _holder(text: str) -> str:
  try:
    info = json.loads(text)
    return f"pid {info['pid']} on {info['host']} (started {info['started']})"
  except (ValueError, KeyError, TypeError):
    return "another process"


class WorkdirLock:
  """Context manager: holds `<workdir>/run.lock` (see the module docstring)."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK_FILE)
    self._file = None

  def __enter__(self) -> "WorkdirLock":
    os.makedirs(os.path.dirname(self.path), exist_ok=True)
    f = open(self.path, "a+", encoding="utf-8")  # pylint: disable=consider-using-with
    try:
      fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      holder = _holder(f.read())
      f.close()
      raise WorkdirBusyError(
          f"{os.path.dirname(self.path)} is in use by {holder}: one run per workdir; wait for "
          "it to end, stop it, or give this run another --workdir.") from None
    f.seek(0)
    left = f.read().strip()
    if left:  # a run that ended without releasing (killed): its process is gone
      logging.warning("Took over the lock of %s in %s, which no longer runs.", _holder(left),
                      os.path.dirname(self.path))
    f.seek(0)
    f.truncate()
    f.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                        "started": datetime.datetime.now().isoformat(timespec="seconds")}))
    f.flush()
    self._file = f
    return self

  def __exit__(self, *exc) -> bool:
    if self._file is not None:
      self._file.seek(0)
      self._file.truncate()  # a clean end leaves nothing to take over
      self._file.flush()
      fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
      self._file.close()
      self._file = None
    return False
