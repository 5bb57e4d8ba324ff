"""What the command-line programs promise people: one `error:` line for bad input, a quiet console.

`main`, `evaluate` and `bench` start through `run`, which

* parses the flags with `flags_parser`: a config file that does not exist or
  does not load, an unknown variant, an override of a field that does not
  exist (with the nearest field names), a value of the wrong type, an unknown
  flag or a missing required one all end in one line on stderr, `error: ...`,
  never a traceback;
* turns the errors a user can fix (`UserError` and the program's
  `user_errors`: validation before any compilation, a missing dataset, an
  incompatible checkpoint, a non-finite loss, a failed write) into one
  `error:` line. Anything else is a bug in this code and keeps its traceback.

Exit status (`exit_status`), one rule for every program:

* 2 (`EXIT_USAGE`): bad input, found before any step runs: the flags, the
  config, a value, the data, the workdir, a checkpoint that does not fit the
  config. Fix the command line.
* 1 (`EXIT_FAILURE`): the input was good but the run failed: a non-finite
  loss (`train.NonFiniteLossError`, or a `FloatingPointError`), a write that
  failed (`outputs.WriteError`, or a full disk, quota or file-size limit),
  or a bug (a traceback, Python's own status 1).
* 0: finished, or stopped by SIGTERM after saving a checkpoint.
* 130 (`EXIT_INTERRUPTED`, the shell's status for Ctrl-C): a first Ctrl-C
  stopped training after saving a checkpoint at the current step (a second
  one aborts at once).

`log_to_workdir` sends the libraries' logs (absl, orbax, JAX, grain) to
`<workdir>/logs/` and lets only warnings and errors through to the console;
absl's flags bring them back (`--alsologtostderr`, `--stderrthreshold=info`).
"""

from __future__ import annotations

import difflib
import errno
import io
import logging as std_logging
import os
import re
import sys
import threading
from typing import Any, Callable, NoReturn, Sequence

from absl import app
from absl import flags
from absl import logging
import ml_collections

EXIT_USAGE = 2  # bad input: flags, config, values, data, workdir (as argparse's usage errors)
EXIT_FAILURE = 1  # good input, failed run: a non-finite loss, a failed write, a bug
EXIT_INTERRUPTED = 130  # a first Ctrl-C saved the current step and stopped (the shell's 128 + 2)

#: Errors of a run whose input was good (exit status 1), by module and name: a
#: program that never imported the module cannot have raised them, and this
#: module stays free of JAX.
RUN_FAILURES = (("leae_jax.train", "NonFiniteLossError"), ("leae_jax.outputs", "WriteError"))
#: OS errors of a write that failed for the machine's sake (no room, quota, file-size
#: limit, an I/O error), not because of the input.
FAILED_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})

#: The checkout that holds this package (and, beside it, `configs/`).
CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class UserError(Exception):
  """An error the user can fix; its message is the whole story (no traceback)."""


def one_line(message: Any) -> str:
  """`message` on one line: whitespace runs (newlines too) become single spaces."""
  return re.sub(r"\s+", " ", str(message)).strip()


def fail(message: Any, code: int = EXIT_FAILURE, *, exit_now: bool = False) -> NoReturn:
  """Prints `error: <message>` as one line on stderr and exits with `code`.

  `exit_now` skips the interpreter's shutdown (atexit handlers, thread joins).
  """
  text = one_line(message)
  if text.startswith("error: "):
    text = text[len("error: "):]
  sys.stdout.flush()
  sys.stderr.write(f"error: {text}\n")
  sys.stderr.flush()
  if exit_now:
    os._exit(code)  # pylint: disable=protected-access
  sys.exit(code)


def _is_run_failure(err: BaseException) -> bool:
  """Whether `err` itself (not its cause) says a run with good input failed."""
  if isinstance(err, FloatingPointError):
    return True
  if isinstance(err, OSError) and err.errno in FAILED_WRITE_ERRNOS:
    return True
  for module, name in RUN_FAILURES:
    kind = getattr(sys.modules.get(module), name, None)
    if isinstance(kind, type) and isinstance(err, kind):
      return True
  return False


def exit_status(err: BaseException) -> int:
  """`EXIT_FAILURE` when `err`, or an error that caused it, is a failed run; else `EXIT_USAGE`.

  A `UserError` raised `from` a non-finite loss or a full disk is a failed
  run; one raised from a missing file, a bad value or an unwritable folder
  is bad input.
  """
  seen = set()
  cause: BaseException | None = err
  while cause is not None and id(cause) not in seen:
    if _is_run_failure(cause):
      return EXIT_FAILURE
    seen.add(id(cause))
    cause = cause.__cause__ or (None if cause.__suppress_context__ else cause.__context__)
  return EXIT_USAGE


def first_line(err: BaseException) -> str:
  """The first non-empty line of an exception's message (for wrapped library errors)."""
  for line in str(err).splitlines():
    if line.strip():
      return line.strip()
  return type(err).__name__


def count_or_all(flag: str, value: int) -> int:
  """A count flag where -1 means all (`--eval_batches`, `--probe_train_examples`): `value`,
  or UserError naming the flag when it is 0 or below -1."""
  if value == 0 or value < -1:
    raise UserError(f"--{flag}={value} is not valid: it must be -1 (all) or a positive integer.")
  return value


def int_list(flag: str, values: Sequence[str], *, minimum: int = 0) -> list[int]:
  """A comma-separated list flag's integers, each ≥ `minimum`; UserError naming the flag otherwise."""
  try:
    ints = [int(v) for v in values]
  except ValueError:
    ints = None
  if ints is None or any(i < minimum for i in ints):
    raise UserError(f"--{flag}={','.join(values)} is not valid: it must be comma-separated "
                    f"integers ≥ {minimum}.")
  return ints


def names_list(flag: str, values: Sequence[str], valid: Sequence[str]) -> list[str]:
  """A comma-separated list flag's names, each one of `valid`; UserError naming the flag otherwise."""
  unknown = [v for v in values if v not in valid]
  if unknown:
    raise UserError(f"--{flag}={','.join(values)} is not valid: unknown {', '.join(unknown)}; "
                    f"valid: {', '.join(valid)}.")
  return list(values)


# ---------------------------------------------------------------------------
# Flags.


def _flag_value(argv: Sequence[str], name: str) -> str | None:
  """The value given to `--name` (`--name=V` or `--name V`), the last one if repeated."""
  value = None
  for i, arg in enumerate(argv):
    if arg.startswith(f"--{name}="):
      value = arg.split("=", 1)[1]
    elif arg == f"--{name}" and i + 1 < len(argv):
      value = argv[i + 1]
  return value


def flag_value(name: str, argv: Sequence[str] | None = None) -> str:
  """What the command line gave `--name` ('' if nothing), e.g. the config spec for a header."""
  return _flag_value(sys.argv if argv is None else argv, name) or ""


def _overrides(argv: Sequence[str], name: str) -> list[tuple[str, str | None]]:
  """`(field path, value)` of every `--name.<field>[=value]` argument."""
  found = []
  for i, arg in enumerate(argv):
    if arg.startswith(f"--{name}."):
      key, eq, value = arg[len(name) + 3:].partition("=")
      if not eq:
        value = argv[i + 1] if i + 1 < len(argv) else None
      found.append((key, value))
  return found


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """Loads `path[:arg]` as ml_collections' config flags do: `get_config(arg)`.

  Raises UserError naming the file and what went wrong (missing file, a file
  without `get_config`, an unknown variant).
  """
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise UserError(_missing_config(spec, path, arg))
  from leae_jax import base_config  # pylint: disable=g-import-not-at-top  (JAX: only when needed)

  try:
    return base_config.load(spec)
  except Exception as err:  # pylint: disable=broad-except  (a user's file: report, don't crash)
    raise UserError(f"--config={spec}: {type(err).__name__ + ': ' if not isinstance(err, ValueError) else ''}"
                    f"{first_line(err)}") from err


def _config_files(folder: str) -> list[str]:
  """The config files in `folder`: Python files that define `get_config`."""
  def is_config(name: str) -> bool:
    try:
      with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as f:
        return "def get_config" in f.read()
    except OSError:
      return False
  return (sorted(f for f in os.listdir(folder) if f.endswith(".py") and is_config(f))
          if os.path.isdir(folder) else [])


def _missing_config(spec: str, path: str, arg: str) -> str:
  """What to say when `--config=spec` names no file, on one line.

  Where a relative path was looked for (the current directory), and then the
  config probably meant (the same path in the checkout, when run from
  elsewhere) or the configs there are.
  """
  here = os.getcwd()
  where = ""
  if not os.path.isabs(path):
    elsewhere = os.path.realpath(here) != os.path.realpath(CHECKOUT)
    where = (f" (a relative path is read from the current directory, {here}"
             f"{', not from the checkout' if elsewhere else ''})")
    in_checkout = os.path.join(CHECKOUT, path)
    if elsewhere and os.path.isfile(in_checkout):
      return (f"--config={spec}: no such file{where}; did you mean "
              f"--config={in_checkout}{':' if arg else ''}{arg}?")
  folder = os.path.abspath(os.path.dirname(path) or ".")
  available = _config_files(folder)
  if not available:
    folder = os.path.join(CHECKOUT, "configs")
    available = _config_files(folder)
  if not available:
    return (f"--config={spec}: no such file{where}; give the path of a config file, "
            "e.g. configs/shapes.py.")
  return (f"--config={spec}: no such file{where}; the configs in {folder}/ are "
          f"{', '.join(available)}.")


def field_names(config: Any, prefix: str = "") -> list[str]:
  """Every dotted field path of a (nested) config, leaves and sub-configs."""
  names = []
  for key, value in (config.items() if hasattr(config, "items") else []):
    path = f"{prefix}{key}"
    names.append(path)
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      names += field_names(value, f"{path}.")
  return names


def check_override(config: ml_collections.ConfigDict, key: str, flag: str = "config") -> Any:
  """The current value of field `key`; UserError naming the nearest fields if it does not exist."""
  node: Any = config
  for i, part in enumerate(key.split(".")):
    if isinstance(node, (ml_collections.ConfigDict, dict)) and part in node:
      node = node[part]
      continue
    parent = ".".join(key.split(".")[:i])
    siblings = sorted(node.keys()) if isinstance(node, (ml_collections.ConfigDict, dict)) else []
    near = _nearest(key, field_names(config), 0.75)
    if not near and siblings:
      near = [f"{parent}.{s}" if parent else s for s in _nearest(part, siblings, 0.7)]
    hint = f"; did you mean {' or '.join(f'--{flag}.{n}' for n in near)}?" if near else "."
    where = f"{flag}.{parent}" if parent else flag
    listing = (f" Fields of {where}: {', '.join(siblings)}." if siblings and len(siblings) <= 30
               else "")
    raise UserError(f"--{flag}.{key}: no such config field{hint}{listing}")
  return node


def _nearest(word: str, candidates: Sequence[str], cutoff: float) -> list[str]:
  """The candidates most similar to `word` (ties kept), if similar enough."""
  scored = sorted(((difflib.SequenceMatcher(None, word, c).ratio(), c) for c in candidates),
                  reverse=True)
  if not scored or scored[0][0] < cutoff:
    return []
  return [c for score, c in scored if score >= scored[0][0] - 0.02][:3]


def describe_flag_error(err: BaseException, argv: Sequence[str],
                        config_flags: Sequence[str] = ("config",)) -> str:
  """One line saying which flag or config field is wrong and what would be valid."""
  for name in config_flags:
    spec = _flag_value(argv, name)
    if spec is None:
      continue
    try:
      config = load_config_file(spec)
      for key, value in _overrides(argv, name):
        current = check_override(config, key, name)
        if f"--{name}.{key}=" in str(err) or f"--{name}.{key}:" in str(err):
          kind = type(current).__name__
          example = {"tuple": " e.g. \"(0.2, 0.6)\"", "bool": " (true or false)"}.get(kind, "")
          return (f"--{name}.{key}={value}: not a valid {kind}{example}; "
                  f"the field is currently {current!r}.")
    except UserError as user_err:
      return str(user_err)
  text = first_line(err)
  text = re.sub(r"^(FATAL )?Flags parsing error: ", "", text)
  text = re.sub(r"^flag (--\S+?)=None: Flag --(\S+) must have a value other than None\.",
                r"\1 is required.", text)
  return text


def flags_parser(config_flags: Sequence[str] = ("config",)) -> Callable[[list[str]], list[str]]:
  """An absl `flags_parser` that ends every flag or config error in one `error:` line."""

  def parse(argv: list[str]) -> list[str]:
    # ml_collections reports a config file that fails to load only when the
    # config is first used, with a traceback: load each one here first.
    for name in config_flags:
      spec = _flag_value(argv, name)
      if spec is not None:
        try:
          load_config_file(spec)
        except UserError as err:
          fail(err, EXIT_USAGE)
    try:
      return flags.FLAGS(argv)
    except Exception as err:  # pylint: disable=broad-except  (flag errors come in many types)
      fail(describe_flag_error(err, argv, config_flags), EXIT_USAGE)

  return parse


def run(main: Callable[[list[str]], Any], *, config_flags: Sequence[str] = ("config",),
        user_errors: tuple[type[BaseException], ...] = ()) -> None:
  """`absl.app.run(main)` with one-line errors for bad flags, `UserError` and `user_errors`."""

  def guarded(argv: list[str]) -> Any:
    if len(argv) > 1:
      fail(f"unexpected arguments {' '.join(argv[1:])!r}: every option is a --flag "
           f"(see --helpshort).", EXIT_USAGE)
    if not (flags.FLAGS["logtostderr"].value or flags.FLAGS["alsologtostderr"].value):
      _quiet_console()
    try:
      return main(argv)
    except (UserError, *user_errors) as err:
      if _logging_to_file():  # the log file keeps the traceback, the console gets one line
        logging.info("Stopped by an error the user can fix.", exc_info=True)
        logging.flush()
      # Straight out: background threads of libraries that hit the same error
      # (a full disk) would print tracebacks while the interpreter shuts down.
      # Every checkpoint that finished is on disk; nothing else is pending.
      fail(err, exit_status(err), exit_now=True)

  app.run(guarded, flags_parser=flags_parser(config_flags))


# ---------------------------------------------------------------------------
# Files and logs.


def check_writable_dir(path: str, flag: str = "--workdir") -> str:
  """Creates `path` if needed and checks a file can be written there; UserError otherwise."""
  if not path:
    raise UserError(f"{flag} is required.")
  try:
    os.makedirs(path, exist_ok=True)
    probe = os.path.join(path, f".write_check.{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as err:
    raise UserError(f"{flag}={path}: cannot write there ({err.strerror or err}); "
                    "give a directory you can create and write.") from err
  return path


class _HeldLogs(io.StringIO):
  """Where absl logs go before the workdir's log file exists (copied into it then)."""


class _Console(std_logging.Handler):
  """Warnings and errors on the console, one line each; tracebacks stay in the log file.

  A library that fails in a background thread (orbax on a full disk, say)
  logs its traceback; the run's own `error:` line says what happened, so the
  console shows no record that carries a traceback.
  """

  def __init__(self, log_dir: list[str]):
    super().__init__(std_logging.WARNING)
    self._log_dir = log_dir  # filled by log_to_workdir

  def emit(self, record: std_logging.LogRecord) -> None:
    if record.exc_info or record.exc_text:
      return
    where = f" (details in {self._log_dir[0]})" if self._log_dir else ""
    try:
      sys.stderr.write(f"{record.levelname.lower()}: {one_line(record.getMessage())}{where}\n")
    except Exception:  # pylint: disable=broad-except  (logging must never raise)
      self.handleError(record)


_LOG_DIR: list[str] = []
_OPENED: list[Any] = []  # the log file log_to_workdir opened last


def _quiet_console() -> None:
  """Library logs to memory (then the workdir's file); only one-line warnings to the console.

  Exceptions in background threads and at interpreter exit, which Python
  would print with their tracebacks, are logged instead.
  """
  logging.get_absl_handler().python_handler.stream = _HeldLogs()
  if not flags.FLAGS["stderrthreshold"].present:
    flags.FLAGS.stderrthreshold = "fatal"  # absl copies nothing else; _Console does
    std_logging.getLogger().addHandler(_Console(_LOG_DIR))
  std_logging.captureWarnings(True)
  # A log file that cannot be written (the disk is full) must not print a
  # "--- Logging error ---" traceback per record: the run's error line says why.
  std_logging.raiseExceptions = False
  threading.excepthook = lambda args: logging.error(
      "Exception in thread %s", getattr(args.thread, "name", "?"),
      exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
  sys.unraisablehook = lambda u: logging.error(
      "%s: %r", u.err_msg or "Exception ignored", u.object,
      exc_info=(u.exc_type, u.exc_value, u.exc_traceback))


def _logging_to_file() -> bool:
  stream = logging.get_absl_handler().python_handler.stream
  return stream is not sys.stderr and not isinstance(stream, _HeldLogs)


def log_to_workdir(workdir: str, name: str = "leae") -> str:
  """Sends absl/Python logging to `<workdir>/logs/` (all levels); returns that directory.

  Under `run` the console then shows only warnings and errors, one line
  each. absl's flags given by the user win: `--logtostderr` /
  `--alsologtostderr` put every record on the console, `--stderrthreshold`
  sets its level.
  """
  log_dir = os.path.join(workdir, "logs")
  os.makedirs(log_dir, exist_ok=True)
  if flags.FLAGS.is_parsed() and flags.FLAGS["logtostderr"].value:
    return log_dir
  handler = logging.get_absl_handler().python_handler
  held = handler.stream.getvalue() if isinstance(handler.stream, _HeldLogs) else ""
  # A process that trains several runs (the experiments) moves its log from
  # one workdir to the next: absl opens the new file and leaves the old open,
  # so the file this function opened last is closed (never a stream it did not open).
  handler.acquire()
  try:
    previous = handler.stream if _OPENED and handler.stream is _OPENED[0] else None
    logging.get_absl_handler().use_absl_log_file(name, log_dir)
    _OPENED[:] = [handler.stream]
    if previous is not None:
      previous.close()
  finally:
    handler.release()
  if held:
    handler.stream.write(held)
  _LOG_DIR[:] = [log_dir]
  return log_dir


def log_dir() -> str | None:
  """The folder `log_to_workdir` last sent the library logs to (None: they are not in a file)."""
  return _LOG_DIR[0] if _LOG_DIR and _logging_to_file() else None


def logging_to_each_workdir(train_fn: Callable[[Any, str], Any], name: str = "leae"
                            ) -> Callable[[Any, str], Any]:
  """`train_fn(config, workdir)` that first sends the library logs to `<workdir>/logs/`.

  For programs that train many runs in one process (the ladder, the time-series
  experiment): each run's logs land in its own workdir, as `main`'s do.
  """
  def train_logged(config: Any, workdir: str) -> Any:
    log_to_workdir(workdir, name)
    return train_fn(config, workdir)
  return train_logged
