"""The per-patient crawl (sources/crawl.py) against a server that refuses searches across all
patients, as Epic and Oracle Health do: each patient's searches restricted with `patient=`, a
failed page an error of that patient only, an interrupted crawl resumed without asking again,
and the switch from population searches when they are refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from cohort_finder.errors import SourceError
from cohort_finder.search_plan import Search
from cohort_finder.sources.base import Item
from cohort_finder.sources.crawl import CrawlSource, patients_from_file, patients_of_group
from cohort_finder.sources.http import FhirHttp, HttpSettings
from cohort_finder.sources.rest import RestSource

FAST = HttpSettings(retries=1, backoff=0.01, backoff_max=0.05, backoff_jitter=0, read_timeout=2, connect_timeout=2)
SEARCHES = [Search("Patient"), Search("Observation", (("code", "http://loinc.org|4548-4"),))]
PATIENTS = ["p1", "p2", "p3"]


class EpicLike:
    """Patient by `_id`, Observation only with `patient` (else 400), like Epic."""

    def __init__(self, httpserver: HTTPServer, broken: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.broken = broken  # patients whose Observation search fails with 500
        self.seen: list[dict[str, str]] = []
        httpserver.expect_request("/fhir/Patient").respond_with_handler(self.patient)
        httpserver.expect_request("/fhir/Observation").respond_with_handler(self.observation)
        httpserver.expect_request("/fhir/Group/g1").respond_with_json(
            {
                "resourceType": "Group",
                "id": "g1",
                "member": [{"entity": {"reference": f"Patient/{p}"}} for p in PATIENTS],
            }
        )

    @staticmethod
    def bundle(resources: list[dict[str, Any]]) -> Response:
        body = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}
        return Response(json.dumps(body), content_type="application/fhir+json")

    @staticmethod
    def refuse(text: str) -> Response:
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "required", "diagnostics": text}],
        }
        return Response(json.dumps(outcome), status=400, content_type="application/fhir+json")

    def patient(self, request: Request) -> Response:
        self.seen.append(dict(request.args))
        if "_id" not in request.args:
            return self.refuse("Patient search needs demographics or _id")
        return self.bundle([{"resourceType": "Patient", "id": request.args["_id"]}])

    def observation(self, request: Request) -> Response:
        self.seen.append(dict(request.args))
        pid = request.args.get("patient")
        if pid is None:
            return self.refuse("patient is required")
        if pid in self.broken:
            return Response("down", status=500)
        ref = {"reference": f"Patient/{pid}"}
        return self.bundle([{"resourceType": "Observation", "id": f"{pid}-a1c", "status": "final", "subject": ref}])


def _http(httpserver: HTTPServer) -> FhirHttp:
    return FhirHttp(httpserver.url_for("/fhir"), settings=FAST)


def _crawl(httpserver: HTTPServer, tmp_path: Path, **kw: Any) -> CrawlSource:
    return CrawlSource(_http(httpserver), SEARCHES, PATIENTS, tmp_path, rate=0, **kw)


def _keys(got: list[Any]) -> list[str]:
    return sorted(f"{g.resource['resourceType']}/{g.resource['id']}" for g in got if isinstance(g, Item))


def test_each_patients_searches_carry_the_patient(httpserver: HTTPServer, tmp_path: Path) -> None:
    server = EpicLike(httpserver)
    got = list(_crawl(httpserver, tmp_path, concurrency=2).read())
    assert _keys(got) == ["Observation/p1-a1c", "Observation/p2-a1c", "Observation/p3-a1c",
                          "Patient/p1", "Patient/p2", "Patient/p3"]  # fmt: skip
    observation_searches = [s for s in server.seen if "code" in s]
    assert sorted(s["patient"] for s in observation_searches) == PATIENTS
    assert all(s["code"] == "http://loinc.org|4548-4" for s in observation_searches)


def test_a_failed_page_is_an_error_of_that_patient_only(httpserver: HTTPServer, tmp_path: Path) -> None:
    EpicLike(httpserver, broken={"p2"})
    got = list(_crawl(httpserver, tmp_path).read())
    errors = [g for g in got if not isinstance(g, Item)]
    assert [(e.patient_id, e.resource_type) for e in errors] == [("p2", "Observation")]
    assert "Observation/p1-a1c" in _keys(got) and "Observation/p3-a1c" in _keys(got)


def test_an_interrupted_crawl_resumes_without_asking_again(httpserver: HTTPServer, tmp_path: Path) -> None:
    server = EpicLike(httpserver)
    first = _crawl(httpserver, tmp_path, concurrency=1)
    reading = first.read()
    original = first._crawl_one
    calls: list[str] = []

    def stop_at_p3(pid: str) -> dict[str, Any]:
        calls.append(pid)
        if pid == "p3":
            raise KeyboardInterrupt  # the night's job killed mid-crawl
        return original(pid)

    first._crawl_one = stop_at_p3  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        list(reading)
    asked_before = len(server.seen)
    got = list(_crawl(httpserver, tmp_path, concurrency=1).read())
    assert _keys(got) == ["Observation/p1-a1c", "Observation/p2-a1c", "Observation/p3-a1c",
                          "Patient/p1", "Patient/p2", "Patient/p3"]  # fmt: skip
    asked_now = server.seen[asked_before:]
    assert {s.get("patient") or s.get("_id") for s in asked_now} == {"p3"}  # only the patient not finished


def test_refused_population_searches_stop_with_a_message_or_switch_to_the_list(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    EpicLike(httpserver)
    with pytest.raises(SourceError, match=r"refuses searches across all patients.*--patients-file FILE"):
        list(RestSource(_http(httpserver), SEARCHES).read())
    crawl = _crawl(httpserver, tmp_path)
    got = list(RestSource(_http(httpserver), SEARCHES, lambda: crawl).read())
    assert len(_keys(got)) == 6 and all(isinstance(g, Item) for g in got)  # no population error passed on


def test_patient_lists_from_a_file_and_a_group(httpserver: HTTPServer, tmp_path: Path) -> None:
    EpicLike(httpserver)
    listed = tmp_path / "ids.txt"
    listed.write_text("# the pre-screen list\np1\nPatient/p2\n\np1\n")
    assert patients_from_file(listed) == ["p1", "p2"]
    assert patients_of_group(_http(httpserver), "g1") == PATIENTS
    httpserver.expect_request("/fhir/Group/empty").respond_with_json({"resourceType": "Group", "id": "empty"})
    with pytest.raises(SourceError, match="lists no Patient members"):
        patients_of_group(_http(httpserver), "empty")


def test_a_refused_large_count_is_asked_again_with_200(httpserver: HTTPServer) -> None:
    asked: list[str] = []

    def capped(request: Request) -> Response:
        asked.append(request.args.get("_count", ""))
        if int(request.args.get("_count", "0")) > 200:
            return EpicLike.refuse("_count must not exceed 200")
        return EpicLike.bundle([{"resourceType": "Patient", "id": "p1"}])

    httpserver.expect_request("/fhir/Patient").respond_with_handler(capped)
    got = list(RestSource(_http(httpserver), [Search("Patient", (("_count", "1000"),))]).read())
    assert _keys(got) == ["Patient/p1"] and asked == ["1000", "200"]
