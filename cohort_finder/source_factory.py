"""Turn `--source` into a source: a folder, or a FHIR server read by REST search or Bulk export."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from .criteria import Trial
from .errors import UsageError
from .search_plan import plan
from .settings import ServerSettings
from .sources.auth import auth_from_environment
from .sources.base import Source
from .sources.bulk import BulkRequest, BulkSource
from .sources.files import FileSource
from .sources.http import FetchError, FhirHttp
from .sources.rest import RestSource

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServerOptions:
    settings: ServerSettings
    bulk: bool | None = None  # None: Bulk when the server's CapabilityStatement offers $export
    group: str | None = None  # Group/[id]/$export instead of Patient/$export
    since: str | None = None
    cache: Path = Path.home() / ".cache" / "cohort-finder" / "bulk"
    refresh: bool = False  # export everything now, whatever the cache holds
    full_refresh_days: float = 7.0  # a nightly export asks for changes only, and for everything this often


def is_server(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def offers_export(http: FhirHttp) -> bool:
    try:
        statement = http.get_json(http.url("metadata"))
    except FetchError as exc:
        log.warning("could not read the CapabilityStatement (%s): using REST search", exc)
        return False
    for rest in _objects(statement.get("rest")):
        operations = _objects(rest.get("operation"))
        for resource in _objects(rest.get("resource")):
            operations += _objects(resource.get("operation"))
        if any(op.get("name") == "export" for op in operations):
            return True
    return False


def _objects(value: Any) -> list[dict[str, Any]]:
    """The objects of a list a server sent (anything else in it, or instead of it, is not)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def open_source(
    source: str, trial: Trial, as_of: date, options: ServerOptions | None, ignore: Sequence[str] = ()
) -> Source:
    if not is_server(source):
        return FileSource(Path(source), ignore)
    if options is None:
        raise UsageError("a server source needs server settings")
    http = FhirHttp(source, settings=options.settings.http)
    http.auth = auth_from_environment(http.session, http.base, options.settings.environ)
    searches = plan(trial, as_of, options.settings.page_size)
    bulk = options.bulk if options.bulk is not None else offers_export(http)
    if not bulk:
        return RestSource(http, searches)
    level = f"Group/{options.group}" if options.group else "Patient"
    request = BulkRequest.from_searches(searches, level, options.since)
    return BulkSource(
        http, request, options.cache, reuse=not options.refresh, full_refresh_days=options.full_refresh_days
    )
