"""The review app over HTTP, against a real uvicorn on 127.0.0.1: authentication on every
route, the login cookie, CSRF, bearer tokens for scripts, decisions that reach the next run and
the worklist, and the audit log (ids only)."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
import requests
from starlette.routing import Route

from cohort_finder.serve.app import create_app
from cohort_finder.serve.security import COOKIE

from ..e2e import cohort_finder, run_trial
from ..paths import CRITERIA, FIXTURES
from .live import HOSTILE, TOKEN, TRIAL, LiveApp, StoreRuns

CANDIDATE = "age-18-today-met"
OPEN_ROUTES = {"/login", "/healthz", "/static/{name}"}


def _routes(app: LiveApp) -> list[tuple[str, str]]:
    """(method, path) of every route of the app, with real ids in place of parameters."""
    out = []
    for route in create_app(app.config).routes:
        assert isinstance(route, Route)
        if route.path in OPEN_ROUTES:
            continue
        path = route.path.replace("{trial}", TRIAL).replace("{patient}", CANDIDATE)
        out.extend((method, path) for method in sorted(route.methods or {"GET"}) if method != "HEAD")
    return out


def _login(app: LiveApp, name: str = "Ana Reviewer") -> requests.Session:
    s = requests.Session()
    r = s.post(f"{app.base}/login", data={"name": name, "token": TOKEN, "next": "/"}, allow_redirects=False)
    assert r.status_code == 303, r.text
    return s


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "the page carries the session's CSRF token"
    return found.group(1)


def test_every_route_refuses_unauthenticated_requests_without_patient_data(app: LiveApp) -> None:
    routes = _routes(app)
    assert len(routes) == 13  # pages and API, GET and POST: a new route is tested here too
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}):
            r = requests.request(method, app.base + path, headers=headers, allow_redirects=False, timeout=10)
            if path.startswith("/api/"):
                assert r.status_code == 401, (method, path, r.status_code)
            else:
                assert r.status_code == 303 and r.headers["location"].startswith("/login"), (method, path)
            assert CANDIDATE not in r.text and "Testwell" not in r.text, (method, path)


def test_open_routes_hold_no_patient_data(app: LiveApp) -> None:
    for path in ("/login", "/healthz", "/static/report.css", "/static/overview.js"):
        r = requests.get(app.base + path, timeout=10)
        assert r.status_code == 200, path
        assert CANDIDATE not in r.text and "Testwell" not in r.text
    assert requests.get(app.base + "/static/..%2Fhistory.sqlite", timeout=10).status_code == 404


def test_login_sets_an_httponly_samesite_cookie_and_a_wrong_token_gets_nothing(app: LiveApp) -> None:
    r = requests.post(f"{app.base}/login", data={"name": "Ana", "token": "not-the-token"}, allow_redirects=False)
    assert r.status_code == 401 and COOKIE not in r.headers.get("set-cookie", "")
    r = requests.post(f"{app.base}/login", data={"name": "Ana", "token": TOKEN, "next": "//evil.example/x"},
                      allow_redirects=False)  # fmt: skip
    assert r.status_code == 303 and r.headers["location"] == "/"  # never an open redirect
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert TOKEN not in cookie  # the cookie holds a session id, never the token


def test_pages_carry_security_headers(app: LiveApp) -> None:
    r = _login(app).get(f"{app.base}/trials/{TRIAL}")
    assert r.status_code == 200
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["cache-control"] == "no-store" and r.headers["x-frame-options"] == "DENY"


def test_the_trial_page_shows_the_reports_views(app: LiveApp, runs: StoreRuns) -> None:
    page = _login(app).get(f"{app.base}/trials/{TRIAL}").text
    document = json.loads((runs.out / "candidates.json").read_text())
    open_ids = [p["id"] for p in document["patients"] if p["status"] != "excluded"]
    assert page.count("<tr data-id=") == len(open_ids)
    for section in ('id="since"', 'id="overview"', 'id="funnel"', 'id="criteria"', 'id="excluded"', 'id="errors"'):
        assert section in page
    # the hostile name is text, never markup
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<script") == 1 and '<script src="/static/overview.js"></script>' in page


def test_a_decision_needs_the_csrf_token_and_a_same_origin(app: LiveApp) -> None:
    s = _login(app)
    url = f"{app.base}/trials/{TRIAL}/patients/{CANDIDATE}"
    token = _csrf(s.get(url).text)
    form = {"decision": "contacted", "note": "left a message"}
    assert s.post(url + "/decision", data=form, allow_redirects=False).status_code == 403
    assert s.post(url + "/decision", data={**form, "csrf": "forged"}, allow_redirects=False).status_code == 403
    cross = s.post(url + "/decision", data={**form, "csrf": token}, headers={"Origin": "http://evil.example"},
                   allow_redirects=False)  # fmt: skip
    assert cross.status_code == 403
    assert "contacted" not in s.get(url).text.split('id="decide"')[1].split("</form>")[1]  # no history yet
    ok = s.post(url + "/decision", data={**form, "csrf": token}, allow_redirects=False)
    assert ok.status_code == 303
    after = s.get(app.base + ok.headers["location"]).text
    assert "Decision saved." in after and "left a message" in after and "Ana Reviewer" in after


def test_a_decision_reaches_the_next_run_and_the_worklist(app: LiveApp, fresh_runs: StoreRuns, tmp_path: Path) -> None:
    s = _login(app, "Coordinator Kim")
    url = f"{app.base}/trials/{TRIAL}/patients/{CANDIDATE}"
    token = _csrf(s.get(url).text)
    assert s.post(url + "/decision", data={"decision": "eligible", "csrf": token}).status_code == 200
    worklist = tmp_path / "worklist.csv"
    done = cohort_finder("review", "export", "--store", str(fresh_runs.store), "--trial", TRIAL, "--out", str(worklist))
    assert done.returncode == 0, done.stderr
    row = next(line for line in worklist.read_text().splitlines() if CANDIDATE in line)
    assert "eligible" in row
    again = run_trial(CRITERIA / "nct07183761.yaml", FIXTURES / "fhir_bundles", tmp_path / "next", "2026-07-01",
                      "--store", str(fresh_runs.store))  # fmt: skip
    assert again.exit_code == 0, again.stderr
    review = again.patient(CANDIDATE)["review"]
    assert review["decision"] == "eligible" and review["by"] == "Coordinator Kim"


def test_scripts_use_the_bearer_token_without_csrf(app: LiveApp) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}", "X-Reviewer": "nightly-bot"}
    url = f"{app.base}/api/trials/{TRIAL}/patients/{CANDIDATE}"
    r = requests.post(url + "/decision", json={"decision": "to_review", "note": "auto"}, headers=bearer, timeout=10)
    assert r.status_code == 200 and r.json() == {"recorded": True, "decision": "to_review"}
    detail = requests.get(url, headers=bearer, timeout=10).json()
    assert detail["review"]["by"] == "nightly-bot" and detail["decisions"][0]["decision"] == "to_review"
    bad = requests.post(url + "/decision", json={"decision": "maybe"}, headers=bearer, timeout=10)
    assert bad.status_code == 400 and "unknown decision" in bad.json()["error"]
    listed = requests.get(f"{app.base}/api/trials/{TRIAL}", headers=bearer, timeout=10).json()
    assert listed["run"]["run"] == 2 and any(p["id"] == CANDIDATE for p in listed["patients"])
    assert requests.get(f"{app.base}/api/trials/{TRIAL}/diff", headers=bearer, timeout=10).json()["to"]["run"] == 2


def test_unknown_trial_patient_and_run_numbers_are_clear_errors(app: LiveApp) -> None:
    s = _login(app)
    assert s.get(f"{app.base}/trials/NCT00000000").status_code == 404
    assert s.get(f"{app.base}/trials/{TRIAL}/patients/nobody").status_code == 404
    r = s.get(f"{app.base}/trials/{TRIAL}/diff", params={"from": "x"})
    assert r.status_code == 400 and "whole numbers" in r.text
    assert s.get(f"{app.base}/trials/{TRIAL}/diff", params={"from": "1", "to": "2"}).status_code == 200


def test_the_audit_log_records_who_saw_and_changed_what_with_ids_only(app: LiveApp) -> None:
    s = _login(app, "Ana Reviewer")
    url = f"{app.base}/trials/{TRIAL}/patients/{HOSTILE}"
    token = _csrf(s.get(url).text)
    s.post(url + "/decision", data={"decision": "ineligible", "note": "private words", "csrf": token})
    requests.get(f"{app.base}/trials/{TRIAL}", timeout=10)  # refused: logged without a user
    log = app.config.audit
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    actions = [(e["user"], e["action"], e.get("patient")) for e in entries]
    assert ("Ana Reviewer", "login", None) in actions
    assert ("Ana Reviewer", "view-patient", HOSTILE) in actions
    assert ("Ana Reviewer", "decide", HOSTILE) in actions
    assert (None, "refused", None) in actions
    text = log.read_text()
    assert "private words" not in text and "alert(1)" not in text  # no notes, no names


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], {}, "refusing to serve patient data without authentication"),
        (["--no-auth", "--host", "0.0.0.0"], {}, "--no-auth serves only on a loopback address"),
        ([], {"COHORT_FINDER_SERVE_TOKEN": "short"}, "at least 16 characters"),
    ],
)
def test_serve_refuses_to_start_unsafely(runs: StoreRuns, args: list[str], env: dict[str, str], message: str) -> None:
    done = cohort_finder("serve", "--store", str(runs.store), *args, env={"COHORT_FINDER_SERVE_TOKEN": "", **env})
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_serve_refuses_a_missing_store(tmp_path: Path) -> None:
    done = cohort_finder("serve", "--store", str(tmp_path / "none.sqlite"), env={"COHORT_FINDER_SERVE_TOKEN": TOKEN})
    assert done.returncode == 2 and "no run store there" in done.stderr
    assert not (tmp_path / "none.sqlite").exists()
