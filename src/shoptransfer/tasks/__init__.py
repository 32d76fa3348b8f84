"""Tasks: what is learned and how it is judged; importing the package registers them."""

from shoptransfer.tasks import classification, recommendation  # noqa: F401  (registers)
from shoptransfer.tasks.base import Task, TaskData, list_tasks, make_task, register_task

__all__ = ["Task", "TaskData", "list_tasks", "make_task", "register_task"]
