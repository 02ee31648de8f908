"""Tasks: what differs between kinds of training, behind one interface the engine drives.

``base`` (``Task``, ``TASKS``), ``classify`` (``ClassificationTask``), ``fewshot``
(``FewShotTask``), whose names are also names of this package (``tfresnet.tasks.TASKS``).
Importing the package registers both tasks.
"""

from tfresnet.tasks.base import TASKS, Metrics, Task
from tfresnet.tasks.classify import ClassificationTask
from tfresnet.tasks.fewshot import FewShotTask

__all__ = ["TASKS", "Metrics", "Task", "ClassificationTask", "FewShotTask"]
