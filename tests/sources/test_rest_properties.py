"""Property-based: whatever a server answers to a search page, the REST reader never raises;
every entry it could not use is an error at the page (`URL#entry[i]`), every other entry is
read, and a page it could not read at all is an error of the page for every patient's data of
that type (contract §4, §6).

The server is a mock transport (fault injection, as the brief allows); the real server's paging
is tested in tests/integration.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import os
from typing import Any

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from requests.adapters import BaseAdapter

from cohort_finder.errors import SourceError
from cohort_finder.model import ALL_PATIENTS, RunError
from cohort_finder.search_plan import Search
from cohort_finder.sources.base import Item
from cohort_finder.sources.http import FhirHttp, HttpSettings
from cohort_finder.sources.rest import RestSource

BASE = "https://ehr.example.org/fhir"
PAGE = f"{BASE}/Observation"
FAST = HttpSettings(retries=2, backoff=0.0, backoff_max=0.0, backoff_jitter=0)
EXAMPLES = int(os.environ.get("COHORT_FINDER_PROPERTY_EXAMPLES", "25")) * 3


def observation(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"o{n}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
        "subject": {"reference": f"Patient/p{n}"},
        "effectiveDateTime": "2026-05-01",
        "valueQuantity": {"value": 8.0 + n / 10, "unit": "%", "code": "%"},
    }


ENTRIES = [{"fullUrl": f"{BASE}/Observation/o{n}", "resource": observation(n)} for n in range(5)]


class Canned(BaseAdapter):
    """Answers every request with the same status, headers and body."""

    def __init__(self, body: bytes, content_type: str | None, encoding: str | None) -> None:
        super().__init__()
        self.body, self.content_type, self.encoding = body, content_type, encoding
        self.calls = 0

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.calls += 1
        response = requests.Response()
        response.status_code, response.url, response.request = 200, str(request.url), request
        response.headers = requests.structures.CaseInsensitiveDict()
        if self.content_type:
            response.headers["Content-Type"] = self.content_type
        if self.encoding:
            response.headers["Content-Encoding"] = self.encoding
        raw = requests.packages.urllib3.response.HTTPResponse(  # type: ignore[attr-defined]
            body=__import__("io").BytesIO(self.body), headers=dict(response.headers), preload_content=False
        )
        response.raw = raw
        return response

    def close(self) -> None:
        pass


def read(body: bytes, content_type: str | None = "application/fhir+json", encoding: str | None = None) -> Any:
    http = FhirHttp(BASE, settings=FAST)
    adapter = Canned(body, content_type, encoding)
    http.session.mount("https://", adapter)
    http.pause = lambda attempt: None  # type: ignore[method-assign]
    found: list[Item | RunError] = []
    with contextlib.suppress(SourceError):  # no page read at all: what it yielded before is what counts
        found.extend(RestSource(http, [Search("Observation")]).read())
    return [i for i in found if isinstance(i, Item)], [e for e in found if isinstance(e, RunError)], adapter.calls


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6,
)
broken_entries = st.one_of(
    json_values.filter(lambda v: not isinstance(v, dict)),  # not an entry
    st.builds(lambda r: {"resource": r}, json_values.filter(lambda v: not isinstance(v, dict))),
    st.builds(lambda r: {"resource": {k: v for k, v in r.items() if k != "resourceType"}}, st.just(observation(9))),
    st.builds(lambda t: {"resource": {**observation(9), "resourceType": t}}, st.sampled_from(["Obs", "", "x y"])),
)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_broken_entry_is_an_error_at_its_place_and_the_others_are_read(data: st.DataObject) -> None:
    entries: list[Any] = [dict(e) for e in ENTRIES]
    at = data.draw(st.integers(min_value=0, max_value=len(entries)))
    entries.insert(at, data.draw(broken_entries))
    if data.draw(st.booleans()):  # and a value no rule could use: still read; facts.py judges it
        entries[0 if at else 1] = {**ENTRIES[0], "resource": {**observation(0), "valueQuantity": {"value": math.nan}}}
    body = json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": entries}, allow_nan=True)

    items, errors, calls = read(body.encode())

    read_ids = sorted(i.resource["id"] for i in items)
    broken = entries[at]
    readable = isinstance(broken, dict) and broken.get("resource") is None  # an entry without a resource: nothing
    assert calls == 1
    assert read_ids == [f"o{n}" for n in range(5)], (broken, errors)
    if readable:
        assert errors == []
    else:
        assert [e.source for e in errors] == [f"{PAGE}#entry[{at}]"], (broken, errors)
        assert errors[0].patient_id in (ALL_PATIENTS, "Patient/p9")


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.builds(lambda n: ("cut", n), st.integers(min_value=1, max_value=400)),
        st.sampled_from([("html", 0), ("text", 0), ("gzip-cut", 0), ("not-object", 0), ("entry-not-list", 0)]),
        st.builds(lambda b: ("bytes", b), st.binary(max_size=40)),
    )
)
def test_a_page_that_cannot_be_read_is_an_error_for_every_patients_data(kind: tuple[str, Any]) -> None:
    whole = json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": ENTRIES}).encode()
    name, n = kind
    content_type: str | None = "application/fhir+json"
    encoding = None
    if name == "cut":
        body = whole[: min(n, len(whole) - 1)]
    elif name == "html":
        body, content_type = b"<html>maintenance</html>", "text/html"
    elif name == "text":
        body, content_type = whole, "text/plain"
    elif name == "gzip-cut":
        body, encoding = gzip.compress(whole)[:-10], "gzip"
    elif name == "not-object":
        body = b"[1, 2, 3]"
    elif name == "entry-not-list":
        body = b'{"resourceType": "Bundle", "entry": {"resource": {}}}'
    else:
        body = n

    items, errors, calls = read(body, content_type, encoding)

    try:
        parsed = json.loads(body) if content_type == "application/fhir+json" and not encoding else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("resourceType") == "Bundle" and isinstance(parsed.get("entry"), list):
        return  # random bytes that happen to be a readable Bundle: the other test's business
    assert items == []
    assert len(errors) == 1 and errors[0].source.startswith(PAGE), errors
    assert (errors[0].patient_id, errors[0].resource_type) == (ALL_PATIENTS, "Observation")
    retried = name in ("cut", "html", "text", "gzip-cut") or (name == "bytes" and not isinstance(parsed, dict))
    if retried and parsed is None:
        assert calls == FAST.retries + 1  # what a retry may mend is asked for again
