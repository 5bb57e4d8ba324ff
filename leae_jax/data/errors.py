"""The data package's errors and splits: the bottom of `leae_jax.data`, imported by every source."""

from __future__ import annotations

__all__ = [
    "SPLITS",
    "CorruptDataError",
    "DatasetUnavailableError",
    "check_split",
    "first_line",
]

#: The splits every dataset has.
SPLITS = ("train", "test")


class DatasetUnavailableError(RuntimeError):
  """A dataset cannot be opened: not prepared, not downloadable, or not where it was said to be."""


class CorruptDataError(DatasetUnavailableError, ValueError):
  """A data file exists but cannot be read: truncated, corrupt or of another format."""


def check_split(split: str) -> None:
  """ValueError unless `split` is one of `SPLITS`."""
  if split not in SPLITS:
    raise ValueError(f"Unknown split {split!r}; valid splits are: {', '.join(SPLITS)}.")


def first_line(err: BaseException) -> str:
  """`Type: first line of the message` of a library's exception, for a one-line message."""
  text = str(err).strip().splitlines()
  return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")
