"""evaluation test fixtures: the small real model every baseline must train."""

import pytest

import tasks


@pytest.fixture(scope="module")
def task():
  """An 8-unit MLP on 8x8 digits: cheap, and a real classifier every baseline can lower."""
  return tasks.build_task("image_mlp", tasks.ImageMLPSpec(
      dataset="digits", image_size=8, hidden_sizes=(8,), batch_size=16))
