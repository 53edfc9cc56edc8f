"""The `orchestrator` agent's own logic: YOURS to edit.

QPF wrote this file once, from Agent/orchestrator@1.2.0 (py-api 0.2.0), and never writes it
again: `qpf extract` keeps it as it is, `qpf drift` ignores your edits, and nothing prunes it.
`create_app` runs the `Handlers` class below. Override a capability to implement it; the ones you
do not override answer 501 Not Implemented. Each method gets the validated request body and
returns the output model; raise a declared error from `errors` to answer with its status.
`self.agent` is the running agent (settings, memory, sub-agents, anomalies).

When the schema gains a capability, the generated `capabilities.Handlers` gains its method (501
until you override it here); this file is not changed.
"""

from __future__ import annotations

from . import errors, models  # noqa: F401  (for the methods you write)
from .capabilities import Handlers as GeneratedHandlers

__all__ = ["Handlers"]


class Handlers(GeneratedHandlers):
    """The capabilities this team implements."""

    # async def dispatch(self, body: models.Task) -> models.Assignment:
    #     """Assign a task to the best available agent."""
    #     return models.Assignment(...)

    # async def status(self, body: models.Assignment) -> models.TaskStatus:
    #     """Report the state of a task."""
    #     return models.TaskStatus(...)

    # async def run_subagent_task(self, subagent: str, task: dict[str, Any]) -> Any:
    #     """Runs a task of an in-process sub-agent (trainer, auditor) and returns its result."""
    #     return {"subagent": subagent, "done": task}
