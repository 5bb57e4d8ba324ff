"""Test-wide JAX settings."""

import jax

# XLA:CPU compiles the partitionable threefry PRNG ~4x slower (about 1 s per
# random op here), and the suite compiles many small functions. Tests only rely
# on determinism, not on particular random bits, so use the classic lowering.
jax.config.update("jax_threefry_partitionable", False)
