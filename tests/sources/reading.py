"""What a source yielded, split into resources and errors (shared by the source tests)."""

from __future__ import annotations

from cohort_finder.model import RunError
from cohort_finder.sources.base import Item, Source


def split(source: Source) -> tuple[list[Item], list[RunError]]:
    items: list[Item] = []
    errors: list[RunError] = []
    for thing in source.read():
        if isinstance(thing, RunError):
            errors.append(thing)
        else:
            items.append(thing)
    return items, errors
