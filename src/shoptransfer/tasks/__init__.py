"""Tasks: what is learned and how it is judged; importing the package registers them."""

from shoptransfer.tasks import (  # noqa: F401  (registers)
    classification,
    multitask,
    rating,
    recommendation,
    regression,
)
from shoptransfer.tasks.base import Task, TaskData, list_tasks, make_task, register_task

__all__ = ["Task", "TaskData", "list_tasks", "make_task", "register_task"]
