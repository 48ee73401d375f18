"""Fault injection for the Bulk `$export` source against a local HTTP server (contract §4).

A local server plays the FHIR server: kick-off, status polling, NDJSON files, error files.
Each fault either recovers or lands in the errors; the only faults that may stop the run are
those that leave nothing to read (the export cannot be started or never finishes), and they
raise FetchError with the server's words.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from cohort_finder.criteria import load_trial
from cohort_finder.errors import FetchError
from cohort_finder.model import ALL_PATIENTS, Result, RunError
from cohort_finder.pipeline import evaluate_source
from cohort_finder.sources.base import Item
from cohort_finder.sources.bulk import BulkRequest, BulkSource, filters_refused
from cohort_finder.sources.http import FhirHttp, HttpSettings

from ..paths import CRITERIA
from .reading import split

FAST = HttpSettings(retries=3, backoff=0.01, backoff_max=0.05, backoff_jitter=0, read_timeout=0.5, connect_timeout=0.5)
REQUEST = BulkRequest(level="Patient", types=("Patient", "Observation"))
KICK_OFF = "/fhir/Patient/$export"
STATUS = "/status/job-1"


# -- helpers ---------------------------------------------------------------------------


def patient(pid: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": "male", "birthDate": "1961-02-03"}


def observation(oid: str, pid: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", "subject": {"reference": f"Patient/{pid}"}}


def medication_request(rid: str, pid: str, med: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{pid}"},
        "medicationReference": {"reference": f"Medication/{med}"},
    }


def medication(mid: str) -> dict[str, Any]:
    return {"resourceType": "Medication", "id": mid, "code": {"text": f"drug {mid}"}}


def ndjson(resources: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in resources)


def outcome(diagnostics: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "exception", "diagnostics": diagnostics}],
    }


def searchset(resources: list[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
    links = [{"relation": "next", "url": next_url}] if next_url else []
    return {"resourceType": "Bundle", "type": "searchset", "link": links, "entry": [{"resource": r} for r in resources]}


PATIENTS = [patient("p1"), patient("p2")]
OBSERVATIONS = [observation("o1", "p1"), observation("o2", "p2"), observation("o3", "p1")]


class ExportServer:
    """Kick-off, status (`pending` answers of 202, then the manifest), DELETE, and the files.

    `files` maps a file name to (resource type, content). A test that wants a file to
    misbehave registers its own handler for `/files/<name>` first (first match wins)."""

    def __init__(
        self,
        httpserver: HTTPServer,
        files: dict[str, tuple[str, bytes]],
        *,
        pending: int = 0,
        requires_token: bool = False,
        error_files: dict[str, bytes] | None = None,
    ) -> None:
        self.httpserver = httpserver
        self.manifest = {
            "transactionTime": "2025-06-01T00:00:00Z",
            "request": httpserver.url_for(KICK_OFF),
            "requiresAccessToken": requires_token,
            "output": [{"type": rtype, "url": self.file_url(name)} for name, (rtype, _) in files.items()],
            "error": [{"type": "OperationOutcome", "url": self.file_url(name)} for name in error_files or {}],
        }
        httpserver.expect_request(KICK_OFF).respond_with_response(
            Response(status=202, headers={"Content-Location": httpserver.url_for(STATUS)})
        )
        for _ in range(pending):
            httpserver.expect_oneshot_request(STATUS, method="GET").respond_with_response(
                Response(status=202, headers={"Retry-After": "7", "X-Progress": "50%"})
            )
        httpserver.expect_request(STATUS, method="GET").respond_with_json(self.manifest)
        httpserver.expect_request(STATUS, method="DELETE").respond_with_response(Response(status=202))
        for name, (_, content) in {**files, **{n: ("", c) for n, c in (error_files or {}).items()}}.items():
            httpserver.expect_request(f"/files/{name}").respond_with_data(
                content, content_type="application/fhir+ndjson"
            )

    def file_url(self, name: str) -> str:
        return self.httpserver.url_for(f"/files/{name}")

    def requests_to(self, path: str) -> list[Request]:
        return [request for request, _ in self.httpserver.log if request.path == path]


def standard_export(httpserver: HTTPServer, **kwargs: Any) -> ExportServer:
    files = {
        "patients.ndjson": ("Patient", ndjson(PATIENTS)),
        "observations.ndjson": ("Observation", ndjson(OBSERVATIONS)),
    }
    return ExportServer(httpserver, files, **kwargs)


def http_for(httpserver: HTTPServer, auth: Any = None) -> FhirHttp:
    return FhirHttp(httpserver.url_for("/fhir"), auth=auth, settings=FAST)


def bulk(httpserver: HTTPServer, cache: Path, sleeps: list[float] | None = None, **kwargs: Any) -> BulkSource:
    kwargs.setdefault("request", REQUEST)
    request = kwargs.pop("request")
    auth = kwargs.pop("auth", None)
    sleep = sleeps.append if sleeps is not None else _no_sleep
    return BulkSource(http_for(httpserver, auth), request, cache, sleep=sleep, **kwargs)


def _no_sleep(seconds: float) -> None:
    pass


def read(source: BulkSource) -> tuple[list[Item], list[RunError]]:
    return split(source)


def ids(items: list[Item]) -> list[str]:
    return sorted(f"{i.resource['resourceType']}/{i.resource['id']}" for i in items)


EVERYTHING = sorted([f"Patient/{p['id']}" for p in PATIENTS] + [f"Observation/{o['id']}" for o in OBSERVATIONS])


class StaticAuth:
    def headers(self) -> dict[str, str]:
        return {"Authorization": "Bearer secret-token"}

    def invalidate(self) -> None:
        pass


# -- the happy path, with waiting ------------------------------------------------------------


def test_polls_with_retry_after_then_reads_every_file(httpserver: HTTPServer, tmp_path: Path) -> None:
    server = standard_export(httpserver, pending=2)
    sleeps: list[float] = []

    items, errors = read(bulk(httpserver, tmp_path, sleeps))

    assert errors == []
    assert ids(items) == EVERYTHING
    assert sleeps == [7.0, 7.0]  # Retry-After honoured, through the injected sleep
    kick_offs = server.requests_to(KICK_OFF)
    assert len(kick_offs) == 1
    assert kick_offs[0].headers.get("Prefer") == "respond-async"
    assert kick_offs[0].args.get("_type") == "Patient,Observation"
    assert len(server.requests_to(STATUS)) == 3 + 1  # two 202s, the manifest, and the DELETE
    assert server.requests_to(STATUS)[-1].method == "DELETE"


@pytest.mark.parametrize("requires_token", [True, False])
def test_files_carry_the_token_only_when_the_manifest_requires_it(
    httpserver: HTTPServer, tmp_path: Path, requires_token: bool
) -> None:
    server = standard_export(httpserver, requires_token=requires_token)

    items, errors = read(bulk(httpserver, tmp_path, auth=StaticAuth()))

    assert (ids(items), errors) == (EVERYTHING, [])
    assert server.requests_to(KICK_OFF)[0].headers.get("Authorization") == "Bearer secret-token"
    file_requests = server.requests_to("/files/patients.ndjson") + server.requests_to("/files/observations.ndjson")
    assert len(file_requests) == 2
    expected = "Bearer secret-token" if requires_token else None
    assert [r.headers.get("Authorization") for r in file_requests] == [expected, expected]


# -- resume and reuse ------------------------------------------------------------------


def test_a_half_downloaded_file_is_resumed_with_a_range_request(httpserver: HTTPServer, tmp_path: Path) -> None:
    full = ndjson(OBSERVATIONS)
    have = len(full) // 2 + 3  # mid-line
    seen_ranges: list[str | None] = []

    def observations_from_range(request: Request) -> Response:
        seen_ranges.append(request.headers.get("Range"))
        if request.headers.get("Range") != f"bytes={have}-":
            return Response(full, status=200)
        return Response(full[have:], status=206, headers={"Content-Range": f"bytes {have}-{len(full) - 1}/{len(full)}"})

    httpserver.expect_request("/files/observations.ndjson").respond_with_handler(observations_from_range)
    server = standard_export(httpserver)
    source = bulk(httpserver, tmp_path)
    incoming = source.folder / "incoming"
    incoming.mkdir(parents=True)
    # an earlier run: the job finished, the Patient file arrived, the Observation file was cut off
    (source.folder / "job.json").write_bytes(
        orjson.dumps(
            {"kind": "full", "since": None, "status_url": httpserver.url_for(STATUS), "manifest": server.manifest}
        )
    )
    (incoming / "Patient.0000.ndjson").write_bytes(ndjson(PATIENTS))
    (incoming / "Observation.0001.part").write_bytes(full[:have])

    items, errors = read(source)

    assert errors == []
    assert ids(items) == EVERYTHING
    assert seen_ranges == [f"bytes={have}-"]
    files = source.folder / "files"
    assert (files / "Observation.0001.ndjson").read_bytes() == full
    assert not (files / "Observation.0001.part").exists() and not incoming.exists()
    assert server.requests_to(KICK_OFF) == []  # the job was not started again
    assert server.requests_to("/files/patients.ndjson") == []  # a finished file is not fetched again


def cut_off(body: bytes) -> Response:
    """Announce the whole body, send half of it, and close: a download cut off in transit."""
    response = Response(body[: len(body) // 2], headers={"Connection": "close"})
    response.headers["Content-Length"] = str(len(body))  # set after the body, which sets its own
    return response


def test_a_download_cut_off_in_transit_recovers_or_is_an_error(httpserver: HTTPServer, tmp_path: Path) -> None:
    full = ndjson(OBSERVATIONS)
    httpserver.expect_oneshot_request("/files/observations.ndjson").respond_with_response(cut_off(full))
    server = standard_export(httpserver)

    items, errors = read(bulk(httpserver, tmp_path))

    url = server.file_url("observations.ndjson")
    recovered = errors == [] and ids(items) == EVERYTHING
    recorded = [(e.source, e.patient_id, e.resource_type) for e in errors] == [(url, ALL_PATIENTS, "Observation")]
    assert recovered or recorded


def _manifest_server(httpserver: HTTPServer, time: str, files: dict[str, tuple[str, bytes]],
                     deleted: bytes | None = None) -> list[Request]:  # fmt: skip
    """An export server whose manifest has `transactionTime` `time`, these files and, if
    given, one `deleted` file (Bulk 2.0); returns the kick-off requests it receives."""
    manifest: dict[str, Any] = {
        "transactionTime": time,
        "request": httpserver.url_for(KICK_OFF),
        "requiresAccessToken": False,
        "output": [{"type": rtype, "url": httpserver.url_for(f"/files/{name}")} for name, (rtype, _) in files.items()],
        "error": [],
    }
    if deleted is not None:
        manifest["deleted"] = [{"type": "Bundle", "url": httpserver.url_for("/files/deleted.ndjson")}]
        httpserver.expect_request("/files/deleted.ndjson").respond_with_data(deleted)
    kick_offs: list[Request] = []

    def kick_off(request: Request) -> Response:
        kick_offs.append(request)
        return Response(status=202, headers={"Content-Location": httpserver.url_for(STATUS)})

    httpserver.expect_request(KICK_OFF).respond_with_handler(kick_off)
    httpserver.expect_request(STATUS, method="GET").respond_with_json(manifest)
    httpserver.expect_request(STATUS, method="DELETE").respond_with_response(Response(status=202))
    for name, (_, content) in files.items():
        httpserver.expect_request(f"/files/{name}").respond_with_data(content)
    return kick_offs


def _updated(resource: dict[str, Any], when: str, **changes: Any) -> dict[str, Any]:
    return {**resource, "meta": {"lastUpdated": when}, **changes}


def test_a_later_run_asks_only_for_what_changed_and_merges_it(httpserver: HTTPServer, tmp_path: Path) -> None:
    first = [_updated(o, "2025-05-01T00:00:00Z") for o in OBSERVATIONS]
    kick_offs = _manifest_server(
        httpserver, "2025-06-01T00:00:00Z",
        {"patients.ndjson": ("Patient", ndjson(PATIENTS)), "observations.ndjson": ("Observation", ndjson(first))},
    )  # fmt: skip
    read(bulk(httpserver, tmp_path))
    assert kick_offs[0].args.get("_since") is None  # the first export is everything

    httpserver.clear()
    changed = _updated(OBSERVATIONS[1], "2025-06-01T10:00:00Z", status="amended")
    older = _updated(OBSERVATIONS[0], "2025-04-01T00:00:00Z", status="cancelled")  # older than the cached copy
    deletion = {"resourceType": "Bundle", "type": "transaction",
                "entry": [{"request": {"method": "DELETE", "url": "Observation/o3"}}]}  # fmt: skip
    kick_offs = _manifest_server(
        httpserver, "2025-06-02T00:00:00Z",
        {"delta.ndjson": ("Observation", ndjson([changed, older, observation("o5", "p2")]))},
        deleted=ndjson([deletion]),
    )  # fmt: skip
    source = bulk(httpserver, tmp_path)

    items, errors = read(source)

    assert errors == []
    assert kick_offs[0].args.get("_since") == "2025-06-01T00:00:00Z"
    by_id = {i.resource["id"]: i.resource for i in items}
    assert sorted(by_id) == ["o1", "o2", "o5", "p1", "p2"]  # o3 deleted, o5 new
    assert by_id["o2"]["status"] == "amended" and by_id["o1"]["status"] == "final"  # newer wins either way
    assert source.notes == {"bulk": "since", "since": "2025-06-01T00:00:00Z", "resources": 2, "deleted": 1}

    httpserver.clear()
    kick_offs = _manifest_server(httpserver, "2025-06-03T00:00:00Z", {})
    items, errors = read(bulk(httpserver, tmp_path))
    assert kick_offs[0].args.get("_since") == "2025-06-02T00:00:00Z" and errors == []
    assert sorted(i.resource["id"] for i in items) == ["o1", "o2", "o5", "p1", "p2"]


def test_every_full_refresh_days_the_whole_export_replaces_the_cache(httpserver: HTTPServer, tmp_path: Path) -> None:
    day = 86400.0
    now = [1_750_000_000.0]
    files = {
        "patients.ndjson": ("Patient", ndjson(PATIENTS)),
        "observations.ndjson": ("Observation", ndjson(OBSERVATIONS)),
    }
    _manifest_server(httpserver, "2025-06-01T00:00:00Z", files)
    read(bulk(httpserver, tmp_path, clock=lambda: now[0], full_refresh_days=7))

    for days, since in ((6.9, "2025-06-01T00:00:00Z"), (7.0, None)):
        httpserver.clear()
        now[0] = 1_750_000_000.0 + days * day
        # the server no longer has o3, and says nothing of it: only a full export can tell
        only = {"patients.ndjson": ("Patient", ndjson(PATIENTS)), "o.ndjson": ("Observation", ndjson(OBSERVATIONS[:2]))}
        kick_offs = _manifest_server(httpserver, "2025-06-08T00:00:00Z", only if since is None else {})
        items, errors = read(bulk(httpserver, tmp_path, clock=lambda: now[0], full_refresh_days=7))
        assert errors == [] and kick_offs[0].args.get("_since") == since
    assert sorted(i.resource["id"] for i in items) == ["o1", "o2", "p1", "p2"]


def test_reuse_false_starts_a_new_export(httpserver: HTTPServer, tmp_path: Path) -> None:
    server = standard_export(httpserver)
    read(bulk(httpserver, tmp_path))
    assert len(server.requests_to(KICK_OFF)) == 1
    # the server's data changed since
    httpserver.clear()
    newer = [observation("o4", "p2")]
    ExportServer(
        httpserver,
        {"patients.ndjson": ("Patient", ndjson(PATIENTS)), "observations.ndjson": ("Observation", ndjson(newer))},
    )

    items, errors = read(bulk(httpserver, tmp_path, reuse=False))

    assert errors == []
    (kick_off,) = server.requests_to(KICK_OFF)  # a new kick-off (the log was cleared above), of everything
    assert kick_off.args.get("_since") is None
    assert ids(items) == ["Observation/o4", "Patient/p1", "Patient/p2"]


# -- files that fail ---------------------------------------------------------------------


def test_a_file_that_always_fails_is_an_error_and_the_other_files_are_read(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    httpserver.expect_request("/files/observations.ndjson").respond_with_data("storage down", status=500)
    server = standard_export(httpserver)

    items, errors = read(bulk(httpserver, tmp_path))

    assert ids(items) == ["Patient/p1", "Patient/p2"]
    url = server.file_url("observations.ndjson")
    assert [(e.source, e.patient_id, e.resource_type) for e in errors] == [(url, ALL_PATIENTS, "Observation")]
    assert "500" in errors[0].message
    assert len(server.requests_to("/files/observations.ndjson")) == FAST.retries + 1


def test_a_file_failing_once_is_retried_and_read(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_oneshot_request("/files/observations.ndjson").respond_with_data("busy", status=503)
    server = standard_export(httpserver)

    items, errors = read(bulk(httpserver, tmp_path))

    assert (ids(items), errors) == (EVERYTHING, [])
    assert len(server.requests_to("/files/observations.ndjson")) == 2


def test_a_file_that_failed_is_not_forgotten_by_the_next_run(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_request("/files/observations.ndjson").respond_with_data("storage down", status=500)
    standard_export(httpserver)
    _, first_errors = read(bulk(httpserver, tmp_path))
    assert len(first_errors) == 1
    httpserver.clear()
    standard_export(httpserver)  # the storage is back

    items, errors = read(bulk(httpserver, tmp_path))

    # either the missing file is fetched now, or the loss is reported again
    assert ids(items) == EVERYTHING or [e.resource_type for e in errors] == ["Observation"]


def test_an_error_file_in_the_manifest_becomes_an_error_quoting_its_diagnostics(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    lines = ndjson([outcome("Observation/o9 could not be exported: value too large")])
    server = standard_export(httpserver, error_files={"errors.ndjson": lines})

    items, errors = read(bulk(httpserver, tmp_path))

    assert ids(items) == EVERYTHING
    assert len(errors) == 1
    assert errors[0].source == server.file_url("errors.ndjson")
    assert "Observation/o9 could not be exported: value too large" in errors[0].message


def test_an_export_the_server_reports_as_incomplete_makes_lab_results_unknown(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    trial = load_trial(CRITERIA / "nct07183761.yaml")
    hba1c_8 = {
        **observation("a1", "p1"),
        "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
        "effectiveDateTime": "2025-05-01",
        "valueQuantity": {"value": 8.0, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
    }
    files = {"patients.ndjson": ("Patient", ndjson([patient("p1")])), "labs.ndjson": ("Observation", ndjson([hba1c_8]))}
    lines = ndjson([outcome("Observation export failed for some resources")])
    ExportServer(httpserver, files, error_files={"errors.ndjson": lines})
    as_of = date(2025, 6, 1)

    result = evaluate_source(trial, bulk(httpserver, tmp_path), as_of, "test export")

    assert len(result.errors) == 1
    hba1c = next(c for c in result.patients[0].criteria if c.id == "hba1c_over_12")
    # 8 % read, but a later HbA1c may be among what the server failed to export
    assert hba1c.result is Result.UNKNOWN


def test_an_unreadable_error_file_line_is_itself_an_error(httpserver: HTTPServer, tmp_path: Path) -> None:
    lines = ndjson([outcome("first problem")]) + b'{"resourceType": "OperationOut\n'
    standard_export(httpserver, error_files={"errors.ndjson": lines})

    items, errors = read(bulk(httpserver, tmp_path))

    assert ids(items) == EVERYTHING
    assert len(errors) == 2
    assert "first problem" in errors[0].message


# -- an export that cannot start or finish --------------------------------------------------


def test_a_kick_off_refused_while_another_export_runs_waits_and_tries_again(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    busy = Response(json.dumps(outcome("another export of this client is running")), status=429,
                    headers={"Retry-After": "0"}, content_type="application/fhir+json")  # fmt: skip
    for _ in range(6):  # more than the HTTP layer retries (FAST: 3), so the source waits itself
        httpserver.expect_oneshot_request(KICK_OFF).respond_with_response(busy)
    server = standard_export(httpserver)
    sleeps: list[float] = []
    items, errors = read(bulk(httpserver, tmp_path, sleeps))
    assert errors == [] and ids(items) == EVERYTHING
    assert len(server.requests_to(KICK_OFF)) == 7 and sleeps[0] == 1.0  # at least a second between tries


def test_a_kick_off_refused_for_longer_than_max_wait_raises(httpserver: HTTPServer, tmp_path: Path) -> None:
    busy = Response(json.dumps(outcome("busy")), status=429, headers={"Retry-After": "600"},
                    content_type="application/fhir+json")  # fmt: skip
    httpserver.expect_request(KICK_OFF).respond_with_response(busy)
    # the HTTP layer's own retries wait nothing here (cap 0); the source waits whole seconds
    http = FhirHttp(httpserver.url_for("/fhir"), settings=dataclasses.replace(FAST, max_retry_after=0))
    sleeps: list[float] = []
    source = BulkSource(http, REQUEST, tmp_path, sleep=sleeps.append, max_wait=3)
    with pytest.raises(FetchError, match="still refused after 3 s"):
        source.fetch()
    assert sleeps == [1.0, 1.0, 1.0]


def test_a_later_run_resumes_polling_the_export_in_progress_instead_of_starting_another(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    for _ in range(3):  # the first night gives up while the export still runs (Epic's take days)
        httpserver.expect_oneshot_request(STATUS, method="GET").respond_with_response(
            Response(status=202, headers={"Retry-After": "7", "X-Progress": "30%"})
        )
    server = standard_export(httpserver)
    with pytest.raises(FetchError, match="not finished"):
        bulk(httpserver, tmp_path, [], max_wait=10).fetch()
    job = json.loads(next(tmp_path.glob("*/job.json")).read_text())
    assert job["status_url"] == httpserver.url_for(STATUS)
    items, errors = read(bulk(httpserver, tmp_path))  # the next night
    assert errors == [] and ids(items) == EVERYTHING
    assert len(server.requests_to(KICK_OFF)) == 1  # one export, polled by both nights


def test_a_refused_kick_off_raises_with_the_servers_diagnostics(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_request(KICK_OFF).respond_with_json(
        outcome("_typeFilter is not supported"), status=400, content_type="application/fhir+json"
    )

    with pytest.raises(FetchError, match="_typeFilter is not supported") as raised:
        read(bulk(httpserver, tmp_path))

    assert "400" in str(raised.value)
    assert raised.value.url.startswith(httpserver.url_for(KICK_OFF))


def test_an_export_that_never_finishes_raises_after_max_wait(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_request(KICK_OFF).respond_with_response(
        Response(status=202, headers={"Content-Location": httpserver.url_for(STATUS)})
    )
    httpserver.expect_request(STATUS).respond_with_response(
        Response(status=202, headers={"Retry-After": "7", "X-Progress": "10%"})
    )
    sleeps: list[float] = []

    with pytest.raises(FetchError, match="not finished") as raised:
        read(bulk(httpserver, tmp_path, sleeps, max_wait=20))

    assert sleeps == [7.0, 7.0]  # a third wait would pass max_wait
    assert raised.value.url == httpserver.url_for(STATUS)


def test_an_export_job_the_server_reports_as_failed_raises_with_its_diagnostics(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    httpserver.expect_request(KICK_OFF).respond_with_response(
        Response(status=202, headers={"Content-Location": httpserver.url_for(STATUS)})
    )
    httpserver.expect_request(STATUS).respond_with_json(outcome("export job ran out of disk"), status=500)

    with pytest.raises(FetchError, match="export job ran out of disk"):
        read(bulk(httpserver, tmp_path))


def test_a_truncated_manifest_is_fetched_again(httpserver: HTTPServer, tmp_path: Path) -> None:
    server = standard_export(httpserver)
    text = json.dumps(server.manifest)
    httpserver.clear_all_handlers()
    # the first status answer is the manifest cut in half (oneshot handlers win over permanent ones)
    httpserver.expect_oneshot_request(STATUS, method="GET").respond_with_data(text[: len(text) // 2])
    standard_export(httpserver)

    items, errors = read(bulk(httpserver, tmp_path))

    assert (ids(items), errors) == (EVERYTHING, [])


# -- Medications a Patient-level export leaves out --------------------------------------------


def medication_export(httpserver: HTTPServer) -> ExportServer:
    return ExportServer(
        httpserver,
        {
            "patients.ndjson": ("Patient", ndjson(PATIENTS)),
            "requests.ndjson": (
                "MedicationRequest",
                ndjson(
                    [
                        medication_request("r1", "p1", "m1"),
                        medication_request("r2", "p2", "m2"),
                        medication_request("r3", "p2", "m3"),
                    ]
                ),
            ),
            "medications.ndjson": ("Medication", ndjson([medication("m1")])),
        },
    )


MEDICATION_REQUEST = BulkRequest(level="Patient", types=("Medication", "MedicationRequest", "Patient"))


def test_medications_missing_from_the_export_are_fetched_by_id(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_request("/fhir/Medication").respond_with_json(
        searchset([medication("m2"), medication("m3")]), content_type="application/fhir+json"
    )
    server = medication_export(httpserver)

    items, errors = read(bulk(httpserver, tmp_path, request=MEDICATION_REQUEST))

    assert errors == []
    assert [i for i in ids(items) if i.startswith("Medication/")] == ["Medication/m1", "Medication/m2", "Medication/m3"]
    searched = server.requests_to("/fhir/Medication")
    assert len(searched) == 1
    assert searched[0].args.get("_id") == "m2,m3"  # only the missing ones


def test_a_failed_medication_fetch_is_an_error(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_request("/fhir/Medication").respond_with_json(outcome("nope"), status=500)
    medication_export(httpserver)

    items, errors = read(bulk(httpserver, tmp_path, request=MEDICATION_REQUEST))

    assert "MedicationRequest/r2" in ids(items)
    assert len(errors) == 1
    assert errors[0].source.startswith(httpserver.url_for("/fhir/Medication"))
    assert "nope" in errors[0].message


def test_medication_search_pages_are_followed(httpserver: HTTPServer, tmp_path: Path) -> None:
    page2 = httpserver.url_for("/fhir/Medication") + "?_page=2"
    httpserver.expect_request("/fhir/Medication", query_string="_page=2").respond_with_json(
        searchset([medication("m3")])
    )
    httpserver.expect_request("/fhir/Medication").respond_with_json(searchset([medication("m2")], page2))
    medication_export(httpserver)

    items, errors = read(bulk(httpserver, tmp_path, request=MEDICATION_REQUEST))

    assert errors == []
    assert "Medication/m3" in ids(items)


def test_a_broken_line_in_the_medication_file_is_an_error_not_a_crash(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_request("/fhir/Medication").respond_with_json(searchset([medication("m2"), medication("m3")]))
    ExportServer(
        httpserver,
        {
            "patients.ndjson": ("Patient", ndjson(PATIENTS)),
            "requests.ndjson": ("MedicationRequest", ndjson([medication_request("r1", "p1", "m1")])),
            "medications.ndjson": ("Medication", ndjson([medication("m1")]) + b'{"resourceType": "Medic\n'),
        },
    )

    items, errors = read(bulk(httpserver, tmp_path, request=MEDICATION_REQUEST))

    assert "Medication/m1" in ids(items)
    assert len(errors) == 1
    assert errors[0].source.endswith(":2")


def test_a_manifest_that_is_not_an_export_manifest_raises(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_request(KICK_OFF).respond_with_response(
        Response(status=202, headers={"Content-Location": httpserver.url_for(STATUS)})
    )
    httpserver.expect_request(STATUS).respond_with_json({"output": {"type": "Patient"}})

    with pytest.raises(FetchError, match="not an object with an `output` list"):
        read(bulk(httpserver, tmp_path))


def test_odd_manifest_entries_are_errors_and_a_type_never_becomes_a_path(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    server = standard_export(httpserver)
    server.manifest["output"] = [
        {"type": "../../escape", "url": server.file_url("patients.ndjson")},
        {"type": "Observation"},  # no url
        "not an entry",
        {"type": "Observation", "url": server.file_url("observations.ndjson")},
    ]
    server.manifest["error"] = {"not": "a list"}
    httpserver.clear_all_handlers()
    ExportServer(httpserver, {"patients.ndjson": ("Patient", ndjson(PATIENTS)), **{
        "observations.ndjson": ("Observation", ndjson(OBSERVATIONS))}})  # fmt: skip
    httpserver.expect_oneshot_request(STATUS, method="GET").respond_with_json(server.manifest)
    source = bulk(httpserver, tmp_path)

    items, errors = read(source)

    assert ids(items) == EVERYTHING
    assert [e.message for e in errors] == ["manifest entry without a file url"] * 2
    assert all(e.patient_id == ALL_PATIENTS for e in errors)
    names = sorted(p.name for p in (source.folder / "incoming").iterdir())  # incomplete: not merged
    assert names == ["Observation.0003.ndjson", "Resource.0000.ndjson"]


def test_a_kick_off_refusing_type_filter_is_asked_again_without_it_and_remembered(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    """Oracle Health answers 422 to a `_typeFilter` it does not support: the export is asked
    for again unfiltered (wider, still correct: the rules reduce it), and later runs do not
    send the filter again."""
    filtered = BulkRequest(level="Patient", types=("Patient", "Observation"), type_filters=("Observation?code=x",))

    def kick_off(request: Request) -> Response:
        if request.args.getlist("_typeFilter"):
            return Response(json.dumps(outcome("_typeFilter is not supported")), status=422)
        return Response(status=202, headers={"Content-Location": httpserver.url_for(STATUS)})

    httpserver.expect_request(KICK_OFF).respond_with_handler(kick_off)
    server = standard_export(httpserver)  # its own kick-off handler comes second: never reached
    items, errors = read(bulk(httpserver, tmp_path, request=filtered))
    assert errors == [] and ids(items) == EVERYTHING
    asked = [r.args.getlist("_typeFilter") for r in server.requests_to(KICK_OFF)]
    assert asked == [["Observation?code=x"], []]
    assert filters_refused(tmp_path, http_for(httpserver).base)
    assert not filters_refused(tmp_path, "https://another.example/fhir")
