"""What a source yielded, split into resources and errors (shared by the source tests)."""

from __future__ import annotations

from cohort_finder.errors import SourceError
from cohort_finder.model import RunError
from cohort_finder.sources.base import Item, Source


def split(source: Source, unreadable_ok: bool = False) -> tuple[list[Item], list[RunError]]:
    """`unreadable_ok`: a source that ends by saying it could not be read at all (SourceError,
    after yielding its errors) gives what it yielded; the tests of that failure are separate."""
    items: list[Item] = []
    errors: list[RunError] = []
    try:
        for thing in source.read():
            if isinstance(thing, RunError):
                errors.append(thing)
            else:
                items.append(thing)
    except SourceError:
        if not unreadable_ok:
            raise
        assert not items, "a source that yielded resources was read"
    return items, errors
