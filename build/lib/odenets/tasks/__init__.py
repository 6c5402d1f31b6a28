"""Task registry: a data module's `task` attribute names the LightningModule that trains on it."""

from __future__ import annotations

from odenets.tasks.base import Task
from odenets.tasks.classification import ClassificationTask
from odenets.tasks.forecast import ForecastTask

TASKS: dict[str, type[Task]] = {"classification": ClassificationTask, "forecast": ForecastTask}
