"""The `monitor-metric-drift-handler` agent's own logic: YOURS to edit.

QPF wrote this file once, from Agent/monitor-metric-drift-handler@0.9.0 (py-api 0.2.0), and never writes it
again: `qpf extract` keeps it as it is, `qpf drift` ignores your edits, and nothing prunes it.
`create_app` runs the `Handlers` class below. Override a capability to implement it; the ones you
do not override answer 501 Not Implemented. Each method gets the validated request body and
returns the output model; raise a declared error from `errors` to answer with its status.
`self.agent` is the running agent (settings, memory, anomalies).

When the schema gains a capability, the generated `capabilities.Handlers` gains its method (501
until you override it here); this file is not changed.
"""

from __future__ import annotations

from . import errors, models  # noqa: F401  (for the methods you write)
from .capabilities import Handlers as GeneratedHandlers

__all__ = ["Handlers"]


class Handlers(GeneratedHandlers):
    """The capabilities this team implements."""

    # async def handle(self, body: models.AnomalyEvent) -> models.Handling:
    #     """Receive one raise of the anomaly and act on it."""
    #     return models.Handling(...)
