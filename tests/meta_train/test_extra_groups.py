"""config.extra_groups: one more task group per named family, the drawn groups unchanged."""

import jax
import pytest

from meta_train import config as config_lib
from meta_train import engine, train
from tests.meta_train import helpers


_tiny = helpers.tiny_config


def test_extra_groups_follow_the_drawn_ones_and_leave_them_unchanged():
  key = jax.random.key(3)
  drawn = engine.sample_groups(key, num_groups=3, distribution="default")
  more = engine.sample_groups(key, num_groups=3, distribution="default",
                              extra=("quadratic_ill", "quadratic_ill"))
  assert more[:3] == drawn
  assert [g.family for g in more[3:]] == ["quadratic_ill", "quadratic_ill"]
  assert more[3].spec != more[4].spec  # each extra group has a key of its own


def test_a_run_builds_and_steps_its_extra_group(tmp_path):
  c = _tiny(extra_groups="quadratic_ill", num_groups=1, outer_steps=2)
  groups, pools = train.build_pools(c, engine.make_mesh())
  assert [g.family for g in groups] == [groups[0].family, "quadratic_ill"]
  assert len(pools) == 2
  train.run(c, str(tmp_path))  # step 1 trains on the extra group (step % 2)
  assert [r["step"] for r in train.read_metrics(str(tmp_path / "metrics.jsonl"))][-1] == 2


@pytest.mark.parametrize("value,needle", [
    ("quadratic_il", r"unknown task family 'quadratic_il'; valid: \[.*'quadratic_ill'"),
    (None, "comma-separated task families"),
])
def test_bad_extra_groups_name_the_fix(value, needle):
  with pytest.raises(config_lib.ConfigError, match=needle):
    config_lib.validate(_tiny(extra_groups=value), devices=False)


def test_a_run_cannot_resume_with_other_extra_groups(tmp_path):
  """Its task groups, and so its trajectory, would change under it."""
  train.check_workdir(str(tmp_path), _tiny())
  with pytest.raises(train.WorkdirError, match="extra_groups"):
    train.check_workdir(str(tmp_path), _tiny(extra_groups="quadratic_ill"))
