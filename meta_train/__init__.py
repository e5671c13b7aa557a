"""meta_train: meta-training learned optimizers by evolution strategies, and evaluating them.

How the parts fit (read ``base.py`` first: estimator hyperparameters, state
containers and the ``Estimator`` protocol):

* **Estimators** (``es.py``, ``pes.py``; the registry in ``estimators.py``)
  are pure ``init / ask / evaluate / tell`` functions over explicit state,
  registered by name (``es``, ``pes``, ``tes``, ``nres``); ``unroll.py`` runs the inner
  trainings they evaluate and ``noise.py`` draws their perturbations.
* **The engine** (``engine.py``) samples the run's task groups, builds their
  pools, places them on a device ``Mesh`` and jits one outer step (estimate,
  then an optax update of theta) over it; ``checkpoint.py`` saves and restores
  the outer state with orbax.
* **The job** (``train.py``) chains library stages: ``restore_or_init``,
  ``train_steps`` (with ``evaluate_and_export`` every ``eval_every`` steps) and
  ``finish``; ``config.py`` holds the config fields and their validation, and
  ``logs.py`` the metrics, TensorBoard and plot files. ``python -m meta_train``
  (``__main__.py``) is its CLI.
* **Evaluation** (``evaluation/``) scores a theta against per-task LR-tuned
  Adam and the other baselines: the benchmark (``scripts/evaluate.py``), the
  meta-validation that picks ``export/best`` and the main job's table share it.
* **Seeds** (``seeds.py``): two recipes compared over several meta-training
  seeds, each at its ``export/best``; the CLI is ``scripts/compare_seeds.py``.
* **Plug-ins** (``plugins.py``): ``--import MODULE`` on both CLIs imports a
  user's task family, estimator or architecture before anything is resolved.

Entry points:

  >>> import meta_train
  >>> c = meta_train.load_config("configs/tiny.py")       # doctest: +SKIP
  >>> meta_train.run(c, "runs/tiny")                       # doctest: +SKIP
  >>> meta_train.estimators.estimators()
  ('es', 'nres', 'pes', 'tes')
"""

from meta_train import estimators, evaluation, plugins
from meta_train.base import Estimator, EstimatorError
from meta_train.config import ConfigError, default as default_config, load_file as load_config
from meta_train.config import validate as validate_config
from meta_train.estimators import get_estimator, register_estimator
from meta_train.train import WorkdirError, run

__all__ = [
    "ConfigError", "Estimator", "EstimatorError", "WorkdirError", "default_config",
    "estimators", "evaluation", "get_estimator", "load_config", "plugins",
    "register_estimator", "run", "validate_config",
]
