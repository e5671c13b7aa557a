"""The dense structure tasks declare for K-FAC and LocoProp (tasks/dense.py).

For every registered family's example task that declares one, the structure's
forward pass and named loss must reproduce ``task.loss`` exactly; the others
must declare none.
"""

import jax
import numpy as np
import pytest

import tasks
from tasks import dense

DECLARING = {"image_mlp", "autoencoder", "deep_autoencoder"}


@pytest.mark.parametrize("family", tasks.families())
def test_dense_structure_reproduces_the_task_loss(family):
  fam = tasks.get_family(family)
  task = fam.build(fam.example_spec())
  structure = task.dense_structure()
  if family not in DECLARING:
    assert structure is None
    return
  assert structure is not None and structure.loss in dense.LOSS_KINDS
  params = task.init(jax.random.key(0))
  assert [l.name for l in structure.layers] == task.layer_order(params)
  batch = task.sample_batch(jax.random.key(1))
  out, trace = dense.forward(structure, params, structure.inputs(batch))
  assert len(trace) == len(structure.layers)
  np.testing.assert_allclose(structure.loss_fn(out, structure.targets(batch)),
                             task.loss(params, jax.random.key(2), batch), rtol=1e-5)


def test_wrapped_tasks_declare_no_structure():
  # A reparameterised task's parameters are not the dense layers' weights.
  fam = tasks.get_family("image_mlp")
  task = tasks.augment(fam.build(fam.example_spec()), jax.random.key(0), reparam=True)
  assert task.dense_structure() is None
