"""Task families and data sets."""

from imaml_jax.data.sinusoid import sample_sinusoid_tasks
