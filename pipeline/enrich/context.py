"""Global context merge: SDK-wide properties join the action's own context.

Producers that keep global context apart from the action's context send it as
a top-level ``global_context`` object. It is merged into ``context``; on a
conflicting key the action's own value wins, and nested objects merge key by
key with the same rule. Datadog's browser SDK merges before sending, so its
events arrive with a single ``context`` and pass through unchanged.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pipeline.enrich.base import Plugin, Warning


def merge_context(global_context: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """A new dict: ``global_context`` overlaid by ``own``, recursively for nested objects."""
    merged = dict(global_context)
    for key, value in own.items():
        base = merged.get(key)
        if isinstance(value, dict) and isinstance(base, dict):
            merged[key] = merge_context(base, value)
        else:
            merged[key] = value
    return merged


class GlobalContextEnrichment(Plugin):
    """Merges ``global_context`` into ``context``, the action's own keys winning."""

    name: ClassVar[str] = "context"

    def __init__(self) -> None:
        self._merged = 0

    def enrich(self, event: dict[str, Any], warnings: list[Warning]) -> None:
        """Merge and remove ``global_context``; a non-object one is kept aside with a warning."""
        if "global_context" not in event:
            return
        global_context = event.pop("global_context")
        own = event.get("context")
        if not isinstance(global_context, dict):
            event["global_context"] = global_context  # never drop data we cannot merge
            warnings.append(
                {
                    "enrichment": self.name,
                    "path": "global_context",
                    "message": "global_context is not an object; left unmerged",
                }
            )
            return
        event["context"] = merge_context(global_context, own if isinstance(own, dict) else {})
        self._merged += 1

    def stats(self) -> dict[str, float]:
        """How many events had a global context merged."""
        return {"merged": self._merged}
