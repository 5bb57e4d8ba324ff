"""Runs command lines of the package's programs in forked processes, fast.

A table of bad inputs is many real command lines; starting Python and
importing JAX for each costs seconds. This process imports the heavy
libraries once (but none of the programs, which define flags on import and
must run as `__main__`), then for each request forks: the child points its
stdout/stderr at files, sets `sys.argv` and runs the program with `runpy`
exactly as `python -m <module>` would. JAX's backend is never started here,
only in the children, so forking is safe.

Protocol: one JSON request per stdin line `{"module", "args", "cwd"}`; one
JSON reply per stdout line `{"returncode", "stdout", "stderr"}`.
"""

import json
import os
import runpy
import sys
import tempfile

# The libraries every program imports (not the programs themselves).
import jax  # noqa: F401
import flax  # noqa: F401
import optax  # noqa: F401
import orbax.checkpoint  # noqa: F401
import leae_jax.base_config  # noqa: F401
import leae_jax.train  # noqa: F401
import leae_jax.checkpoints  # noqa: F401
import leae_jax.probe  # noqa: F401
import leae_jax.cli  # noqa: F401


def run_one(module: str, args: list[str], cwd: str) -> dict:
  out = tempfile.TemporaryFile("w+")
  err = tempfile.TemporaryFile("w+")
  pid = os.fork()
  if pid == 0:  # child: become `python -m module args...`
    code = 0
    try:
      os.chdir(cwd)
      os.dup2(out.fileno(), 1)
      os.dup2(err.fileno(), 2)
      sys.argv = [module, *args]
      runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
      code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
      if not isinstance(exit_.code, (int, type(None))):
        sys.stderr.write(f"{exit_.code}\n")
    except BaseException:  # an uncaught exception: print it as Python would
      import traceback
      traceback.print_exc()
      code = 1
    finally:
      sys.stdout.flush()
      sys.stderr.flush()
      os._exit(code)
  _, status = os.waitpid(pid, 0)
  out.seek(0)
  err.seek(0)
  return {"returncode": os.waitstatus_to_exitcode(status), "stdout": out.read(),
          "stderr": err.read()}


def main() -> None:
  for line in sys.stdin:
    request = json.loads(line)
    reply = run_one(request["module"], request["args"], request["cwd"])
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
  main()
