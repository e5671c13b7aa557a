"""tasks: training problems for meta-training and evaluation."""

from tasks.base import (MAX_NORMALIZED_LOSS, Task, TaskError, TaskFamily, normalize_loss,
                        stack_tasks)
