"""meta_train.evaluation: does a learned optimizer beat what a researcher would otherwise use?

How the parts fit: ``base.py`` holds the types (``Setting``, ``RunRecord``,
``EvalError``). ``runner.py`` trains a task with any optax transform in jitted
``lax.scan`` segments (one compiled program per task and method, vmapped over
hyperparameter grids). ``schedules.py`` turns optax schedules into arrays, and
``baselines.py`` is the registry of hand-designed baselines built on them
(tuned Adam, random search, LR range test, cyclical LRs, SGDR, one-cycle,
discriminative LRs, snapshot ensembles, FreezeOut, ...). ``optimizers.py``
resolves learned optimizers and their input ablations. ``suites.py`` reads the
task suites in ``suites/*.json``. ``metrics.py`` defines final loss, speedup,
win rate, IQM and bootstrap CIs; ``report.py`` writes ``report.md`` and plots;
``evaluate.py`` drives it all, resumably. The CLI is ``scripts/evaluate.py``.

The same pieces serve meta-training (``validation.py``): periodic
meta-validation, the choice of ``export/best`` and the main job's final table
train each task with :func:`run_learned` and score it against the
``adam_tuned`` baseline with :func:`against_reference`, exactly as the report
does. The layer sits above ``learned_opt`` and ``tasks`` (which know nothing of
it); what it needs from a task beyond the core contract (predictions for
snapshot ensembles, the layer order for FreezeOut and layer-wise LRs) is the
optional part of ``tasks.Task``.
"""

from meta_train.evaluation.base import EvalError, RunRecord, Setting
from meta_train.evaluation.baselines import Baseline, get_baseline, register_baseline
from meta_train.evaluation.baselines import baselines as baseline_names
from meta_train.evaluation.evaluate import EvalConfig, evaluate, prepare
from meta_train.evaluation.optimizers import ABLATIONS
from meta_train.evaluation.suites import load_suite, resolve_tasks, suite_names
from meta_train.evaluation.metrics import against_reference
from meta_train.evaluation.optimizers import run_learned
from meta_train.evaluation.validation import (SELECT, SELECTABLE, Validator, final_table,
                                              format_table, held_out_tasks, summarize)
from meta_train.evaluation import lr_free, shampoo  # noqa: E402,F401  (registers baselines)
from meta_train.evaluation import locoprop  # noqa: E402,F401  (registers the locoprop baseline)
from meta_train.evaluation import kfac  # noqa: E402,F401  (registers the kfac baseline)
