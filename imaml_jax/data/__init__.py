"""Task families and data sets."""

from imaml_jax.data.episodes import ImageSet
from imaml_jax.data.episodes import sample_episodes
from imaml_jax.data.episodes import with_rotations
from imaml_jax.data.sinusoid import sample_sinusoid_tasks
