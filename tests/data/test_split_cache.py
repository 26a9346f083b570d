"""The decoded split kept beside the TFDS files."""

import os
import types

import numpy as np

from imaml_jax.data import split_cache


def test_a_remote_data_dir_is_read_through_tfds_and_nothing_is_written(
    tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  builder = types.SimpleNamespace(data_dir="gs://bucket/omniglot/1.0.0")
  calls = []
  read = lambda: calls.append(1) or np.ones(3, np.uint8)
  for _ in range(2):
    np.testing.assert_array_equal(
        split_cache.cached_split(builder, "test", read), np.ones(3))
  assert len(calls) == 2 and os.listdir(tmp_path) == []


def test_the_kept_array_is_a_copy_in_memory(tmp_path):
  builder = types.SimpleNamespace(data_dir=str(tmp_path))
  split_cache.cached_split(builder, "train", lambda: np.arange(4))
  again = split_cache.cached_split(builder, "train", lambda: None)
  assert isinstance(again, np.ndarray) and not isinstance(again, np.memmap)
  again[0] = 7   # writable, and the file is unchanged
  np.testing.assert_array_equal(np.load(split_cache.path(builder, "train")),
                                np.arange(4))
