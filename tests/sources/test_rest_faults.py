"""Fault injection for the REST source against a local HTTP server (contract §4, §6).

Every fault either recovers (the resources all arrive, once, in order) or lands in the
errors as a RunError naming the page, marked as affecting every patient for that type.
Nothing may disappear silently, and nothing may escape as an exception.
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import date
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from cohort_finder.criteria import load_trial
from cohort_finder.errors import SourceError
from cohort_finder.model import ALL_PATIENTS, Result, RunError
from cohort_finder.pipeline import evaluate_source
from cohort_finder.search_plan import Search, plan
from cohort_finder.sources.base import Item
from cohort_finder.sources.capability import read_capability
from cohort_finder.sources.http import FhirHttp, HttpSettings
from cohort_finder.sources.rest import RestSource

from ..paths import CRITERIA
from .reading import split

FAST = HttpSettings(retries=3, backoff=0.01, backoff_max=0.05, backoff_jitter=0, read_timeout=0.5, connect_timeout=0.5)
FHIR_JSON = "application/fhir+json"
PATIENTS = Search("Patient", (("_count", "2"),))


@pytest.fixture(scope="module")
def make_httpserver() -> Iterator[HTTPServer]:
    """A threaded server: a handler kept busy (a timeout) must not hold up the client's retry."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


# -- helpers ---------------------------------------------------------------------------


def patient(pid: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1960-05-01"}


def observation(oid: str, pid: str = "p1") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", "subject": {"reference": f"Patient/{pid}"}}


def condition(cid: str, pid: str = "p1") -> dict[str, Any]:
    return {"resourceType": "Condition", "id": cid, "subject": {"reference": f"Patient/{pid}"}}


def bundle(resources: Iterable[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
    entries = [{"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r} for r in resources]
    links = [{"relation": "next", "url": next_url}] if next_url else []
    return {"resourceType": "Bundle", "type": "searchset", "link": links, "entry": entries}


def outcome(diagnostics: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "diagnostics": diagnostics}],
    }


def fhir(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, content_type=FHIR_JSON)


def http_for(httpserver: HTTPServer, **changes: Any) -> FhirHttp:
    return FhirHttp(httpserver.url_for("/fhir"), settings=replace(FAST, **changes))


def read(source: RestSource) -> tuple[list[Item], list[RunError]]:
    """What the source yielded, page errors included, also when no page at all could be read
    (then it ends with SourceError: tested on its own below)."""
    return split(source, unreadable_ok=True)


def ids(items: list[Item]) -> list[str]:
    return [f"{i.resource['resourceType']}/{i.resource['id']}" for i in items]


def hits(httpserver: HTTPServer, path: str) -> list[Request]:
    return [request for request, _ in httpserver.log if request.path == path]


def serve(httpserver: HTTPServer, path: str, body: dict[str, Any]) -> None:
    """A permanent answer for `path` with any query."""
    httpserver.expect_request(path).respond_with_json(body, content_type=FHIR_JSON)


# -- paging ----------------------------------------------------------------------------


def test_follows_absolute_next_links_through_three_pages_in_order(httpserver: HTTPServer) -> None:
    page2 = httpserver.url_for("/fhir/Patient") + "?_getpages=abc&_page=2"
    page3 = httpserver.url_for("/fhir/Patient") + "?_getpages=abc&_page=3"
    pages = {
        "_count=2": bundle([patient("p1"), patient("p2")], page2),
        "_getpages=abc&_page=2": bundle([patient("p3"), patient("p4")], page3),
        "_getpages=abc&_page=3": bundle([patient("p5")]),
    }
    for query, body in pages.items():
        httpserver.expect_request("/fhir/Patient", query_string=query).respond_with_json(body)
    source = RestSource(http_for(httpserver), [PATIENTS])

    items, errors = read(source)

    assert errors == []
    assert ids(items) == [f"Patient/p{n}" for n in range(1, 6)]
    assert source.pages == 3
    queries = [r.query_string.decode() for r in hits(httpserver, "/fhir/Patient")]
    assert queries == list(pages)  # each next link followed as given, search parameters not re-added


def test_a_next_link_that_leads_back_stops_with_an_error_and_keeps_what_was_read(httpserver: HTTPServer) -> None:
    first = httpserver.url_for("/fhir/Patient") + "?_count=2"
    page2 = httpserver.url_for("/fhir/Patient") + "?_page=2"
    httpserver.expect_request("/fhir/Patient", query_string="_count=2").respond_with_json(
        bundle([patient("p1"), patient("p2")], page2)
    )
    httpserver.expect_request("/fhir/Patient", query_string="_page=2").respond_with_json(
        bundle([patient("p3"), patient("p4")], first)
    )
    source = RestSource(http_for(httpserver), [PATIENTS, Search("Condition")])
    serve(httpserver, "/fhir/Condition", bundle([condition("c1")]))

    items, errors = read(source)

    assert ids(items) == ["Patient/p1", "Patient/p2", "Patient/p3", "Patient/p4", "Condition/c1"]
    assert len(errors) == 1
    assert errors[0].source == first
    assert "leads back" in errors[0].message
    assert (errors[0].patient_id, errors[0].resource_type) == (ALL_PATIENTS, "Patient")
    assert len(hits(httpserver, "/fhir/Patient")) == 2  # no page read twice


# -- retried statuses --------------------------------------------------------------------


def test_429_with_retry_after_waits_then_recovers(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request("/fhir/Patient").respond_with_response(
        fhir(outcome("slow down"), 429, {"Retry-After": "1"})
    )
    serve(httpserver, "/fhir/Patient", bundle([patient("p1"), patient("p2")]))
    source = RestSource(http_for(httpserver), [PATIENTS])

    started = time.monotonic()
    items, errors = read(source)
    waited = time.monotonic() - started

    assert errors == []
    assert ids(items) == ["Patient/p1", "Patient/p2"]
    assert waited >= 0.9  # Retry-After: 1 honoured, not the 0.01 s back-off
    assert len(hits(httpserver, "/fhir/Patient")) == 2


def test_a_long_retry_after_is_capped_and_logged(httpserver: HTTPServer, caplog: pytest.LogCaptureFixture) -> None:
    httpserver.expect_oneshot_request("/fhir/Patient").respond_with_response(
        fhir(outcome("an export of yours runs"), 429, {"Retry-After": "600"})  # Oracle Health's
    )
    serve(httpserver, "/fhir/Patient", bundle([patient("p1")]))
    http = http_for(httpserver, max_retry_after=0.5)
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="cohort_finder.sources.http"):
        items, errors = read(RestSource(http, [PATIENTS]))
    waited = time.monotonic() - started
    assert errors == [] and ids(items) == ["Patient/p1"]
    assert 0.4 <= waited < 5  # 0.5 s, not 600
    assert "HTTP 429: the server asks to retry after 600 s, capped at 0.5 s; waiting 0.5 s" in caplog.text


def test_500_once_then_200_recovers(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request("/fhir/Patient").respond_with_response(fhir(outcome("oops"), 500))
    serve(httpserver, "/fhir/Patient", bundle([patient("p1")]))
    source = RestSource(http_for(httpserver), [PATIENTS])

    items, errors = read(source)

    assert errors == []
    assert ids(items) == ["Patient/p1"]
    assert len(hits(httpserver, "/fhir/Patient")) == 2


def test_503_on_every_try_becomes_an_error_for_every_patient_and_other_searches_still_run(
    httpserver: HTTPServer,
) -> None:
    serve(httpserver, "/fhir/Patient", bundle([patient("p1")]))
    httpserver.expect_request("/fhir/Observation").respond_with_response(fhir(outcome("down"), 503))
    serve(httpserver, "/fhir/Condition", bundle([condition("c1")]))
    observations = Search("Observation", (("code", "http://loinc.org|4548-4"), ("_count", "2")))
    source = RestSource(http_for(httpserver), [PATIENTS, observations, Search("Condition")])

    items, errors = read(source)

    assert ids(items) == ["Patient/p1", "Condition/c1"]
    assert len(errors) == 1
    error = errors[0]
    assert error.source.startswith(httpserver.url_for("/fhir/Observation") + "?")
    assert "code=http" in error.source and "4548-4" in error.source  # names the page, query included
    assert "503" in error.message
    assert (error.patient_id, error.resource_type) == (ALL_PATIENTS, "Observation")
    assert len(hits(httpserver, "/fhir/Observation")) == FAST.retries + 1  # failed only after its retries


# -- timeouts --------------------------------------------------------------------------


class Stall:
    """A handler that holds its first `stalls` requests past the read timeout (released at the
    end of the test, so no thread lingers), then answers at once."""

    def __init__(self, body: dict[str, Any], stalls: int, hold: float = 1.0) -> None:
        self.body, self.stalls, self.hold = body, stalls, hold
        self.calls = 0
        self.release = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, request: Request) -> Response:
        with self.lock:
            self.calls += 1
            stall = self.calls <= self.stalls
        if stall:
            self.release.wait(self.hold)
        return fhir(self.body)


def test_a_read_timeout_once_is_retried_and_recovers(httpserver: HTTPServer) -> None:
    stall = Stall(bundle([patient("p1"), patient("p2")]), stalls=1)
    httpserver.expect_request("/fhir/Patient").respond_with_handler(stall)
    source = RestSource(http_for(httpserver, read_timeout=0.3), [PATIENTS])
    try:
        items, errors = read(source)
    finally:
        stall.release.set()

    assert errors == []
    assert ids(items) == ["Patient/p1", "Patient/p2"]
    assert stall.calls == 2


def test_a_page_that_always_times_out_becomes_an_error_naming_the_timeout(httpserver: HTTPServer) -> None:
    stall = Stall(bundle([patient("p1")]), stalls=100)
    httpserver.expect_request("/fhir/Patient").respond_with_handler(stall)
    serve(httpserver, "/fhir/Condition", bundle([condition("c1")]))
    source = RestSource(http_for(httpserver, read_timeout=0.2, retries=2), [PATIENTS, Search("Condition")])
    try:
        items, errors = read(source)
    finally:
        stall.release.set()

    assert ids(items) == ["Condition/c1"]
    assert len(errors) == 1
    assert errors[0].source.startswith(httpserver.url_for("/fhir/Patient"))
    assert "timed out" in errors[0].message.lower() or "timeout" in errors[0].message.lower()
    assert (errors[0].patient_id, errors[0].resource_type) == (ALL_PATIENTS, "Patient")
    assert stall.calls == 3  # the first try and its 2 retries


def test_a_failed_first_page_is_named_with_its_query_whatever_the_failure(httpserver: HTTPServer) -> None:
    stall = Stall(bundle([]), stalls=100)
    httpserver.expect_request("/fhir/Observation").respond_with_handler(stall)
    search = Search("Observation", (("code", "http://loinc.org|4548-4"), ("_count", "2")))
    source = RestSource(http_for(httpserver, read_timeout=0.2, retries=0), [search])
    try:
        _, errors = read(source)
    finally:
        stall.release.set()

    assert len(errors) == 1
    assert "4548-4" in errors[0].source


# -- broken bodies -----------------------------------------------------------------------


def test_a_truncated_json_page_is_fetched_again_and_recovers(httpserver: HTTPServer) -> None:
    full = json.dumps(bundle([patient("p1"), patient("p2")]))
    httpserver.expect_oneshot_request("/fhir/Patient").respond_with_data(full[: len(full) // 2], content_type=FHIR_JSON)
    httpserver.expect_request("/fhir/Patient").respond_with_data(full, content_type=FHIR_JSON)
    source = RestSource(http_for(httpserver), [PATIENTS])

    items, errors = read(source)

    assert errors == []
    assert ids(items) == ["Patient/p1", "Patient/p2"]
    assert len(hits(httpserver, "/fhir/Patient")) == 2


def test_a_page_that_is_always_truncated_becomes_a_not_valid_json_error(httpserver: HTTPServer) -> None:
    full = json.dumps(bundle([patient("p1"), patient("p2")]))
    httpserver.expect_request("/fhir/Patient").respond_with_data(full[: len(full) // 2], content_type=FHIR_JSON)
    source = RestSource(http_for(httpserver), [PATIENTS])

    items, errors = read(source)

    assert items == []
    assert len(errors) == 1
    assert "not valid JSON" in errors[0].message
    assert errors[0].source.startswith(httpserver.url_for("/fhir/Patient"))
    assert (errors[0].patient_id, errors[0].resource_type) == (ALL_PATIENTS, "Patient")
    assert len(hits(httpserver, "/fhir/Patient")) == FAST.retries + 1


def cut_connection(body: bytes) -> Response:
    """Announce the whole body, send half of it, and close: a page cut off in transit."""
    response = Response(body[: len(body) // 2], headers={"Connection": "close"}, content_type=FHIR_JSON)
    response.headers["Content-Length"] = str(len(body))  # set after the body, which sets its own
    return response


def test_a_page_whose_connection_drops_mid_body_is_fetched_again(httpserver: HTTPServer) -> None:
    full = json.dumps(bundle([patient("p1"), patient("p2")])).encode()
    httpserver.expect_oneshot_request("/fhir/Patient").respond_with_response(cut_connection(full))
    httpserver.expect_request("/fhir/Patient").respond_with_data(full, content_type=FHIR_JSON)
    source = RestSource(http_for(httpserver), [PATIENTS])

    items, errors = read(source)

    assert errors == []
    assert ids(items) == ["Patient/p1", "Patient/p2"]


def test_a_page_whose_connection_always_drops_mid_body_becomes_an_error(httpserver: HTTPServer) -> None:
    full = json.dumps(bundle([patient("p1"), patient("p2")])).encode()
    httpserver.expect_request("/fhir/Patient").respond_with_handler(lambda _: cut_connection(full))
    serve(httpserver, "/fhir/Condition", bundle([condition("c1")]))
    source = RestSource(http_for(httpserver), [PATIENTS, Search("Condition")])

    items, errors = read(source)

    assert ids(items) == ["Condition/c1"]
    assert len(errors) == 1
    assert errors[0].source.startswith(httpserver.url_for("/fhir/Patient"))
    assert (errors[0].patient_id, errors[0].resource_type) == (ALL_PATIENTS, "Patient")


def test_a_200_html_page_is_asked_for_again_then_an_error_naming_what_came(httpserver: HTTPServer) -> None:
    login = "<html><body>Please sign in</body></html>"
    httpserver.expect_oneshot_request("/fhir/Patient").respond_with_data(login, content_type="text/html")
    serve(httpserver, "/fhir/Patient", bundle([patient("p1")]))
    items, errors = read(RestSource(http_for(httpserver), [PATIENTS]))
    assert errors == [] and ids(items) == ["Patient/p1"]  # a proxy's page in passing: the retry recovers

    httpserver.clear()
    httpserver.expect_request("/fhir/Patient").respond_with_data(login, content_type="text/html; charset=utf-8")
    serve(httpserver, "/fhir/Condition", bundle([condition("c1")]))
    items, errors = read(RestSource(http_for(httpserver), [PATIENTS, Search("Condition")]))
    assert ids(items) == ["Condition/c1"]
    assert len(errors) == 1 and errors[0].source.startswith(httpserver.url_for("/fhir/Patient"))
    assert (
        "answered Content-Type text/html, not FHIR JSON (body starts '<html><body>Please sign in" in errors[0].message
    )
    assert (errors[0].patient_id, errors[0].resource_type) == (ALL_PATIENTS, "Patient")
    assert len(hits(httpserver, "/fhir/Patient")) == FAST.retries + 1


def test_json_under_another_json_content_type_is_read_and_a_plain_text_type_is_not(httpserver: HTTPServer) -> None:
    body = json.dumps(bundle([patient("p1")]))
    httpserver.expect_request("/fhir/Patient").respond_with_data(body, content_type="application/json+fhir")
    items, errors = read(RestSource(http_for(httpserver), [PATIENTS]))
    assert errors == [] and ids(items) == ["Patient/p1"]

    httpserver.clear()
    httpserver.expect_request("/fhir/Patient").respond_with_data(body, content_type="text/plain")
    items, errors = read(RestSource(http_for(httpserver), [PATIENTS]))
    assert items == [] and "answered Content-Type text/plain" in errors[0].message


def test_a_page_with_nan_is_read_and_only_the_resource_that_needs_the_value_is_unusable(
    httpserver: HTTPServer,
) -> None:
    page = json.dumps(bundle([patient("p1"), patient("p2")]))
    observations = bundle([observation("o1"), observation("o2", "p2")])
    observations["entry"][0]["resource"]["valueQuantity"] = {"value": float("nan"), "unit": "%"}
    httpserver.expect_request("/fhir/Patient").respond_with_data(page, content_type=FHIR_JSON)
    httpserver.expect_request("/fhir/Observation").respond_with_data(json.dumps(observations), content_type=FHIR_JSON)
    items, errors = read(RestSource(http_for(httpserver), [PATIENTS, Search("Observation")]))
    assert errors == []  # the page is JSON as every source reads it; the value is judged by facts.py
    value = next(i for i in items if i.resource["id"] == "o1").resource["valueQuantity"]["value"]
    assert value != value  # NaN
    assert len(hits(httpserver, "/fhir/Observation")) == 1


def test_a_bundle_whose_entry_is_not_a_list_is_an_error_for_every_patient(httpserver: HTTPServer) -> None:
    serve(httpserver, "/fhir/Observation", {"resourceType": "Bundle", "type": "searchset", "entry": {"x": 1}})
    items, errors = read(RestSource(http_for(httpserver), [Search("Observation")]))
    assert items == []
    assert [(e.message, e.patient_id, e.resource_type) for e in errors] == [
        ("Bundle.entry is not a list", ALL_PATIENTS, "Observation")
    ]


def test_an_entry_without_a_resource_type_names_its_patient_or_else_every_patient(httpserver: HTTPServer) -> None:
    page = bundle([observation("o1")])
    page["entry"] += [
        {"resource": {"id": "x", "subject": {"reference": "Patient/p2"}}},
        {"resource": {"id": "y"}},
        {"resource": {"resourceType": "Conditon", "id": "z"}},
        "not an entry",
    ]
    page["link"] = {"relation": "next"}  # not a list: whether more pages follow cannot be told
    serve(httpserver, "/fhir/Observation", page)
    items, errors = read(RestSource(http_for(httpserver), [Search("Observation")]))
    assert ids(items) == ["Observation/o1"]
    where = httpserver.url_for("/fhir/Observation")
    assert [(e.source.removeprefix(where), e.patient_id) for e in errors] == [
        ("#entry[1]", "Patient/p2"),
        ("#entry[2]", ALL_PATIENTS),
        ("#entry[3]", ALL_PATIENTS),
        ("#entry[4]", ALL_PATIENTS),
        ("", ALL_PATIENTS),
    ]
    assert "resourceType 'Conditon' is not one FHIR defines" in errors[2].message
    assert "Bundle.link is not a list" in errors[4].message


def test_a_gzip_body_cut_short_is_fetched_again_then_an_error(httpserver: HTTPServer) -> None:
    whole = gzip.compress(json.dumps(bundle([patient("p1")])).encode())
    cut = Response(whole[: len(whole) - 12], content_type=FHIR_JSON, headers={"Content-Encoding": "gzip"})
    httpserver.expect_oneshot_request("/fhir/Patient").respond_with_response(cut)
    httpserver.expect_request("/fhir/Patient").respond_with_response(
        Response(whole, content_type=FHIR_JSON, headers={"Content-Encoding": "gzip"})
    )
    items, errors = read(RestSource(http_for(httpserver), [PATIENTS]))
    assert errors == [] and ids(items) == ["Patient/p1"]

    httpserver.clear()
    httpserver.expect_request("/fhir/Patient").respond_with_handler(
        lambda _: Response(whole[: len(whole) - 12], content_type=FHIR_JSON, headers={"Content-Encoding": "gzip"})
    )
    items, errors = read(RestSource(http_for(httpserver), [PATIENTS]))
    assert items == [] and len(errors) == 1
    assert (errors[0].patient_id, errors[0].resource_type) == (ALL_PATIENTS, "Patient")
    assert len(hits(httpserver, "/fhir/Patient")) == FAST.retries + 1


# -- the server's own errors ---------------------------------------------------------------


def test_an_operation_outcome_400_is_quoted_in_the_error(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/fhir/Observation").respond_with_response(
        fhir(outcome("Unknown search parameter 'foo'"), 400)
    )
    source = RestSource(http_for(httpserver), [Search("Observation", (("foo", "bar"),))])

    items, errors = read(source)

    assert items == []
    assert len(errors) == 1
    assert "Unknown search parameter 'foo'" in errors[0].message
    assert "400" in errors[0].message
    assert errors[0].source.startswith(httpserver.url_for("/fhir/Observation") + "?foo=bar")
    assert len(hits(httpserver, "/fhir/Observation")) == 1  # a 400 is not retried


def test_a_search_answered_with_something_other_than_a_bundle_is_an_error(httpserver: HTTPServer) -> None:
    serve(httpserver, "/fhir/Patient", patient("p1"))
    source = RestSource(http_for(httpserver), [PATIENTS])

    items, errors = read(source)

    assert items == []
    assert len(errors) == 1
    assert "not a Bundle" in errors[0].message
    assert (errors[0].patient_id, errors[0].resource_type) == (ALL_PATIENTS, "Patient")


def test_searches_and_their_next_pages_ask_for_strict_handling(httpserver: HTTPServer) -> None:
    page2 = httpserver.url_for("/fhir/Patient") + "?_page=2"
    httpserver.expect_request("/fhir/Patient", query_string="_count=2").respond_with_json(
        bundle([patient("p1")], page2)
    )
    httpserver.expect_request("/fhir/Patient", query_string="_page=2").respond_with_json(bundle([patient("p2")]))
    source = RestSource(http_for(httpserver), [PATIENTS])

    items, errors = read(source)

    assert (ids(items), errors) == (["Patient/p1", "Patient/p2"], [])
    sent = hits(httpserver, "/fhir/Patient")
    assert len(sent) == 2
    assert [r.headers.get("Prefer") for r in sent] == ["handling=strict"] * 2
    assert [r.headers.get("Accept") for r in sent] == [FHIR_JSON] * 2


# -- auth ------------------------------------------------------------------------------


class CountingAuth:
    """A token that changes each time it is invalidated."""

    def __init__(self) -> None:
        self.invalidations = 0

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer token-{self.invalidations}"}

    def invalidate(self) -> None:
        self.invalidations += 1


def test_a_401_invalidates_the_token_once_and_the_retry_recovers(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request("/fhir/Patient").respond_with_response(fhir(outcome("expired"), 401))
    serve(httpserver, "/fhir/Patient", bundle([patient("p1")]))
    auth = CountingAuth()
    http = FhirHttp(httpserver.url_for("/fhir"), auth=auth, settings=FAST)

    items, errors = read(RestSource(http, [PATIENTS]))

    assert (ids(items), errors) == (["Patient/p1"], [])
    assert auth.invalidations == 1
    sent = [r.headers.get("Authorization") for r in hits(httpserver, "/fhir/Patient")]
    assert sent == ["Bearer token-0", "Bearer token-1"]


def test_a_401_that_persists_becomes_an_error_after_one_new_token(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/fhir/Patient").respond_with_response(fhir(outcome("not allowed"), 401))
    auth = CountingAuth()
    http = FhirHttp(httpserver.url_for("/fhir"), auth=auth, settings=FAST)

    items, errors = read(RestSource(http, [PATIENTS]))

    assert items == []
    assert len(errors) == 1
    assert "401" in errors[0].message and "not allowed" in errors[0].message
    assert auth.invalidations == 1
    assert len(hits(httpserver, "/fhir/Patient")) == 2


# -- end to end: a failed search makes results unknown, not not_met -------------------------


def test_a_failing_observation_search_makes_every_patients_lab_results_unknown(httpserver: HTTPServer) -> None:
    trial = load_trial(CRITERIA / "nct07183761.yaml")
    as_of = date(2025, 6, 1)
    searches = plan(trial, as_of)
    assert {s.resource_type for s in searches} >= {"Patient", "Observation"}
    serve(httpserver, "/fhir/Patient", bundle([patient("p1"), patient("p2")]))
    httpserver.expect_request("/fhir/Observation").respond_with_response(fhir(outcome("database down"), 500))
    for rtype in {s.resource_type for s in searches} - {"Patient", "Observation"}:
        serve(httpserver, f"/fhir/{rtype}", bundle([]))
    source = RestSource(http_for(httpserver), searches)

    result = evaluate_source(trial, source, as_of, "test server")

    assert [p.id for p in result.patients] == ["p1", "p2"]
    for person in result.patients:
        by_id = {c.id: c for c in person.criteria}
        for lab in ("hba1c_over_12", "neutrophils_under_1_5", "platelets_under_90", "alt_over_3x_uln"):
            assert by_id[lab].result is Result.UNKNOWN, (person.id, lab)
            assert "could not be read" in (by_id[lab].note or ""), (person.id, lab)  # not merely "no data"
        assert by_id["age_18_80"].result is Result.MET  # what was read still decides
        assert person.status.value != "candidate"
    observation_searches = [s for s in searches if s.resource_type == "Observation"]
    failed = [e for e in result.errors if e.source.startswith(httpserver.url_for("/fhir/Observation"))]
    assert len(failed) == len(observation_searches) == len(result.errors)
    assert all("500" in e.message and "database down" in e.message for e in failed)
    assert all("Observation" in e.message for e in failed)  # says whose data it was


@pytest.mark.parametrize(
    ("statement", "offers"),
    [
        ({"resourceType": "CapabilityStatement", "rest": [{"operation": [{"name": "export"}]}]}, True),
        (
            {"resourceType": "CapabilityStatement", "rest": [{"resource": [{"operation": [{"name": "export"}]}]}]},
            False,  # an operation of a resource that names no type belongs to nothing
        ),
        ({"resourceType": "CapabilityStatement", "rest": {"operation": [{"name": "export"}]}}, False),
        (
            {"resourceType": "CapabilityStatement", "rest": [5, {"resource": "x", "operation": {"name": "export"}}]},
            False,
        ),
        ({"resourceType": "CapabilityStatement", "rest": [{"resource": [None, 1, {"operation": [7]}]}]}, False),
    ],
)
def test_a_capability_statement_of_any_shape_is_read_without_a_crash(
    httpserver: HTTPServer, statement: dict[str, Any], offers: bool
) -> None:
    serve(httpserver, "/fhir/metadata", statement)
    assert read_capability(http_for(httpserver)).export is offers


def test_a_server_where_every_search_fails_could_not_be_read_at_all(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/fhir/Patient").respond_with_response(fhir(outcome("down for maintenance"), 503))
    httpserver.expect_request("/fhir/Condition").respond_with_response(fhir(outcome("down"), 503))
    source = RestSource(http_for(httpserver), [PATIENTS, Search("Condition")])
    with pytest.raises(SourceError, match=r"every search failed \(http://.*/fhir/Patient\?_count=2: .*maintenance"):
        split(source)

    httpserver.clear()
    serve(httpserver, "/fhir/Patient", bundle([]))  # one page read, even empty: the server answered
    httpserver.expect_request("/fhir/Condition").respond_with_response(fhir(outcome("down"), 503))
    items, errors = split(RestSource(http_for(httpserver), [PATIENTS, Search("Condition")]))
    assert items == [] and len(errors) == 1


def test_a_count_over_the_servers_cap_is_asked_again_with_200_and_not_asked_again(httpserver: HTTPServer) -> None:
    """A server that caps `_count` says so only by refusing (Oracle Health: 422 over 200): the
    refused page is asked for again with 200, and the run's later searches start at 200."""
    asked: list[str] = []

    def capped(request: Request) -> Response:
        asked.append(f"{request.path.rsplit('/', 1)[-1]}:{request.args['_count']}")
        if int(request.args["_count"]) > 200:
            return fhir(outcome("_count may not exceed 200"), 422)
        kind = request.path.rsplit("/", 1)[-1]
        return fhir(bundle([patient("p1")] if kind == "Patient" else [condition("c1")]))

    httpserver.expect_request("/fhir/Patient").respond_with_handler(capped)
    httpserver.expect_request("/fhir/Condition").respond_with_handler(capped)
    searches = [Search("Patient", (("_count", "1000"),)), Search("Condition", (("_count", "1000"),))]
    items, errors = split(RestSource(http_for(httpserver), searches))
    assert errors == [] and sorted(i.resource["id"] for i in items) == ["c1", "p1"]
    assert asked == ["Patient:1000", "Patient:200", "Condition:200"]


def test_medications_the_orders_reference_are_read_by_id_when_include_is_not_listed(httpserver: HTTPServer) -> None:
    order = {
        "resourceType": "MedicationRequest",
        "id": "mr1",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medicationReference": {"reference": "Medication/m1"},
    }
    httpserver.expect_request("/fhir/Patient").respond_with_response(fhir(bundle([patient("p1")])))
    httpserver.expect_request("/fhir/MedicationRequest").respond_with_response(fhir(bundle([order])))
    medication = {"resourceType": "Medication", "id": "m1", "code": {"text": "pregabalin"}}
    httpserver.expect_request("/fhir/Medication", query_string={"_id": "m1", "_count": "100"}).respond_with_response(
        fhir(bundle([medication]))
    )
    searches = [PATIENTS, Search("MedicationRequest", (("_count", "2"),))]
    items, errors = split(RestSource(http_for(httpserver), searches, medications_by_id=True))
    assert errors == []
    assert [f"{i.resource['resourceType']}/{i.resource['id']}" for i in items] == [
        "Patient/p1",
        "MedicationRequest/mr1",
        "Medication/m1",
    ]


def test_a_type_whose_search_answers_404_is_absent_data_not_an_error(httpserver: HTTPServer) -> None:
    """Contract §3: a type the server refuses as unsupported holds no data; it is named, and
    is neither an error nor a reason for `unknown`. A 404 on a later page is still an error."""
    httpserver.expect_request("/fhir/Patient").respond_with_response(fhir(bundle([patient("p1")])))
    httpserver.expect_request("/fhir/MedicationStatement").respond_with_response(
        fhir(outcome("Resource type MedicationStatement is not supported"), 404)
    )
    source = RestSource(http_for(httpserver), [PATIENTS, Search("MedicationStatement", (("_count", "2"),))])
    items, errors = read(source)
    assert errors == [] and ids(items) == ["Patient/p1"]
    assert source.lacks == ("MedicationStatement",)

    httpserver.clear()
    page2 = httpserver.url_for("/fhir/Condition/page2")
    httpserver.expect_request("/fhir/Patient").respond_with_response(fhir(bundle([patient("p1")])))
    httpserver.expect_request("/fhir/Condition").respond_with_response(fhir(bundle([condition("c1")], page2)))
    httpserver.expect_request("/fhir/Condition/page2").respond_with_response(fhir(outcome("gone"), 404))
    later = RestSource(http_for(httpserver), [PATIENTS, Search("Condition", (("_count", "2"),))])
    items, errors = read(later)
    assert ids(items) == ["Patient/p1", "Condition/c1"] and len(errors) == 1 and "404" in errors[0].message
    assert later.lacks == ()
