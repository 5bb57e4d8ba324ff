"""Test-wide JAX settings."""

import os

# Most of the suite's time is XLA compiling the same tiny programs again: the
# tiny config's train step in many tests and in every subprocess (CLI,
# SIGKILL/SIGTERM, two-process runs). A persistent compilation cache shared by
# the xdist workers and the subprocesses (which inherit the environment) turns
# those repeats into cache hits; it changes no result, only compile time. Set
# before jax is imported, which reads these variables then.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), os.pardir, ".pytest_cache", "jax_compilation"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# XLA's optimisation passes take most of each compile and buy nothing for the
# tiny models here (about a third of the suite's CPU time). Semantics do not
# change; results differ only by float rounding, and every comparison in the
# suite is between runs under the same setting or within a tolerance.
# (tests/checkpoints_test.py's subprocesses, which train 120 steps each, and the
# notebook's kernel, whose rotation view runs ~4x slower unoptimised, keep them.)
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import jax  # noqa: E402

# XLA:CPU compiles the partitionable threefry PRNG ~4x slower (about 1 s per
# random op here), and the suite compiles many small functions. Tests only rely
# on determinism, not on particular random bits, so use the classic lowering.
jax.config.update("jax_threefry_partitionable", False)
