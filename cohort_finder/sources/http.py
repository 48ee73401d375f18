"""HTTP for FHIR servers: one pooled `requests.Session`, timeouts, retries with back-off.

Retries (urllib3 `Retry`): connection errors, read timeouts, 429 and 5xx, with exponential
back-off and jitter, honouring `Retry-After`. A 200 whose body is not FHIR JSON (a truncated
page, a gzip body cut short, a proxy's HTML login or maintenance page, a Content-Type that is
not JSON) is fetched again too, after the same back-off: such answers are often passing.
What still fails raises FetchError with the server's OperationOutcome diagnostics, or with
what was wrong with the body; sources turn that into a run error (contract §4), never into
silence. JSON is read as every source reads it (jsontext.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .. import __version__
from ..errors import FetchError
from . import jsontext
from .auth import Auth, NoAuth

log = logging.getLogger(__name__)
FHIR_JSON = "application/fhir+json"
RETRY_STATUSES = (429, 500, 502, 503, 504)
Params = Mapping[str, str] | list[tuple[str, str]]


def full_url(url: str, params: Params | None) -> str:
    """The URL as sent, query included, so an error says which search failed."""
    if not params:
        return url
    return str(requests.Request("GET", url, params=params).prepare().url)


@dataclass
class HttpSettings:
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    retries: int = 5
    backoff: float = 0.5  # seconds; doubles each retry
    backoff_max: float = 60.0
    backoff_jitter: float = 0.5
    verify: bool | str = True  # a CA bundle path for private PKI; never False by default
    extra_headers: dict[str, str] = field(default_factory=dict)
    # the longest wait a Retry-After is obeyed for (Oracle Health says 600 s; a production
    # client caps it, as smart-fetch does at 300 s): longer ones wait this long, and try again
    max_retry_after: float = 300.0


class CappedRetry(Retry):
    """urllib3's Retry, with every Retry-After wait capped and logged (a nightly job must not
    sleep for an hour because a server said so, and the log must say why it waited)."""

    def __init__(self, *args: Any, max_retry_after: float = 300.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_retry_after = max_retry_after

    def new(self, **kwargs: Any) -> CappedRetry:
        fresh = super().new(**kwargs)
        assert isinstance(fresh, CappedRetry)
        fresh.max_retry_after = self.max_retry_after
        return fresh

    def get_retry_after(self, response: Any) -> float | None:
        asked = super().get_retry_after(response)
        if asked is None:
            return None
        waited = min(asked, self.max_retry_after)
        capped = f", capped at {self.max_retry_after:g} s" if asked > self.max_retry_after else ""
        log.info("HTTP %s: the server asks to retry after %g s%s; waiting %g s", response.status, asked, capped, waited)
        return waited


def operation_outcome_text(body: Any) -> str | None:
    """The diagnostics (else details text, else code) of an OperationOutcome's issues."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return None
    parts = []
    issues = body.get("issue")
    for issue in issues if isinstance(issues, list) else []:
        if not isinstance(issue, dict):
            continue
        details = issue["details"] if isinstance(issue.get("details"), dict) else {}
        text = issue.get("diagnostics") or details.get("text") or issue.get("code")
        if text:
            parts.append(f"{issue.get('severity', 'error')}: {text}")
    return "; ".join(parts) or None


def _describe_failure(response: requests.Response) -> str:
    try:
        outcome = operation_outcome_text(jsontext.loads(response.content))
    except (jsontext.JSONTextError, requests.RequestException):
        outcome = None
    reason = f"HTTP {response.status_code} {response.reason or ''}".strip()
    return f"{reason}: {outcome}" if outcome else reason


class FhirHttp:
    """GETs and POSTs against one FHIR base URL, returning parsed JSON."""

    def __init__(
        self,
        base: str,
        auth: Auth | None = None,
        settings: HttpSettings | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.base = base.rstrip("/")
        self.auth = auth or NoAuth()
        self.settings = settings or HttpSettings()
        self.session = session or requests.Session()
        s = self.settings
        retry = CappedRetry(
            max_retry_after=s.max_retry_after,
            total=s.retries,
            connect=s.retries,
            read=s.retries,
            status=s.retries,
            other=0,
            backoff_factor=s.backoff,
            backoff_max=s.backoff_max,
            backoff_jitter=s.backoff_jitter,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET", "POST", "HEAD"}),
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=8)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update(
            {"Accept": FHIR_JSON, "User-Agent": f"cohort-finder/{__version__}", **s.extra_headers}
        )
        self.session.verify = s.verify
        self.requests = 0

    def url(self, path_or_url: str) -> str:
        return urljoin(self.base + "/", path_or_url)

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Params | None = None,
        data: Mapping[str, str] | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        expect: tuple[int, ...] = (200,),
        auth: bool = True,
    ) -> requests.Response:
        """One request (urllib3 retries beneath it); one fresh token and retry after a 401.
        `auth=False` sends no token (Bulk files on storage that must not see it)."""
        timeout = (self.settings.connect_timeout, self.settings.read_timeout)
        for attempt in (1, 2):
            merged = {**(self.auth.headers() if auth else {}), **(headers or {})}
            self.requests += 1
            try:
                response = self.session.request(
                    method, url, params=params, data=data, headers=merged, timeout=timeout, stream=stream
                )
            except requests.RequestException as exc:
                # a body broken off mid-read is not covered by urllib3's Retry (it retries
                # before the body): say so, so that get_json asks again
                cut = isinstance(
                    exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)
                )
                kind = "timed out" if isinstance(exc, requests.Timeout) else type(exc).__name__
                raise FetchError(full_url(url, params), f"{kind}: {_reason(exc)}", cut_short=cut) from exc
            if response.status_code == 401 and attempt == 1:
                self.auth.invalidate()
                continue
            if response.status_code not in expect:
                raise FetchError(response.url or url, _describe_failure(response))
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def get_json(
        self, url: str, params: Params | None = None, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """GET a JSON object. A body that is not one (cut short in transit, HTML, another
        Content-Type) is asked for again, after a pause, as many times as the settings'
        retries allow."""
        last = ""
        for attempt in range(self.settings.retries + 1):
            if attempt:
                self.pause(attempt)
            try:
                response = self.request("GET", url, params=params, headers=headers)
                body = json_body(response)
            except FetchError as exc:
                if not exc.cut_short:
                    raise
                last = str(exc)
                log.warning("retrying %s: %s", exc.url, last)
                continue
            if not isinstance(body, dict):
                raise FetchError(response.url, f"response is JSON but not an object ({type(body).__name__})")
            return body
        raise FetchError(full_url(url, params), last)

    def pause(self, attempt: int) -> None:
        """The back-off before asking again for a body that was not usable."""
        s = self.settings
        time.sleep(min(s.backoff * 2 ** (attempt - 1), s.backoff_max))


def json_body(response: requests.Response) -> Any:
    """A 200's body as JSON, or FetchError(cut_short=True) saying what it is instead."""
    kind = response.headers.get("Content-Type", "")
    media = kind.split(";", 1)[0].strip().lower()
    try:
        content = response.content
    except requests.RequestException as exc:  # a gzip body cut short fails as it is decoded
        raise FetchError(response.url, f"body could not be read: {_reason(exc)}", cut_short=True) from exc
    if media and "json" not in media:
        sample = content[:60].decode("utf-8", "replace").strip()
        raise FetchError(
            response.url, f"answered Content-Type {media}, not FHIR JSON (body starts {sample!r})", cut_short=True
        )
    try:
        return jsontext.loads(content)
    except jsontext.JSONTextError as exc:
        raise FetchError(response.url, f"response is not valid JSON ({exc})", cut_short=True) from exc


def _reason(exc: requests.RequestException) -> str:
    """The innermost cause, which names what really went wrong (timeout, refused, TLS)."""
    inner: BaseException = exc
    for _ in range(10):  # chains are short; the bound only guards against a cycle
        nxt = inner.__cause__ or inner.__context__
        if nxt is None:
            break
        inner = nxt
    text = str(inner) or type(inner).__name__
    return text[:300]
