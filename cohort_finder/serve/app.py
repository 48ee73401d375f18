"""`cohort-finder serve`: the review team's web app over the run store (Starlette).

Pages: the trials, a trial's latest complete run (the report's overview, funnel, criteria,
excluded patients and errors, and what changed since the run before), a patient (criteria
grouped by effect, evidence in words, decision form and decision history), the runs and their
diffs. The same under /api as JSON for scripts. Every route but /login, /static and /healthz
needs a session or the bearer token (security.py); unauthenticated page requests go to
/login, API requests get 401, and neither carries patient data.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from cohort_finder.errors import BadRequest, CohortFinderError
from cohort_finder.report.funnel import bars
from cohort_finder.report.html_report import TEMPLATES as REPORT_TEMPLATES
from cohort_finder.report.html_report import environment
from cohort_finder.report.views import PatientView
from cohort_finder.serve import data
from cohort_finder.serve.security import COOKIE, AuditLog, Session, Sessions, token_matches
from cohort_finder.store import Store, db, decisions, runs
from cohort_finder.store.changes import diff
from cohort_finder.store.decisions import DECISIONS, Proposed
from cohort_finder.store.queries import compare

_TEMPLATES = Path(__file__).resolve().parent / "templates"
_STATIC = {"report.css": "text/css; charset=utf-8", "overview.js": "text/javascript; charset=utf-8"}
_OPEN = ("/login", "/static/", "/healthz")  # the only routes served without authentication
_SECURITY_HEADERS = {
    # no script but our own file, no framing, nothing cached: every page holds PHI
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # not "no-referrer": that makes browsers send Origin: null on our own forms
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True)
class Config:
    store: Path
    token: str | None  # None: no authentication (only ever on 127.0.0.1, checked by the CLI)
    audit: Path
    secure_cookie: bool = False  # set the cookie's Secure flag (behind an HTTPS proxy)
    local_user: str = "local"  # who decides when there is no authentication


@dataclass
class Caller:
    user: str
    session: Session | None  # None: the bearer token (no CSRF needed: no ambient credential)


def create_app(config: Config) -> Starlette:
    sessions = Sessions()
    audit = AuditLog(config.audit)
    env = environment(_TEMPLATES)

    @contextmanager
    def store() -> Iterator[sqlite3.Connection]:
        con = db.connect(config.store)
        try:
            yield con
        finally:
            con.close()

    def page(request: Request, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        caller: Caller | None = request.state.caller if hasattr(request.state, "caller") else None
        context: dict[str, Any] = {
            "caller": caller,
            "csrf": caller.session.csrf if caller and caller.session else "",
            "auth": config.token is not None,
            "decisions": DECISIONS,
        }
        context.update(values)
        html = env.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status)

    def is_api(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    def caller_of(request: Request) -> Caller | None:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            if config.token is not None and token_matches(config.token, header[7:].strip()):
                return Caller(request.headers.get("x-reviewer", "").strip()[:100] or "api", None)
            return None
        session = sessions.get(request.cookies.get(COOKIE))
        if session is not None:
            return Caller(session.user, session)
        return None

    def same_origin(request: Request) -> bool:
        origin = request.headers.get("origin") or request.headers.get("referer")
        if not origin:
            return True  # browsers send Origin on POST; its absence is a script or an old client
        return urlsplit(origin).netloc == request.headers.get("host", "")

    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = request.url.path
        if not any(path == p or (p.endswith("/") and path.startswith(p)) for p in _OPEN):
            caller = caller_of(request)
            if caller is None and config.token is None:
                started, session = sessions.start(config.local_user)
                caller = Caller(session.user, session)
                request.state.new_sid = started
            if caller is None:
                audit.write(None, "refused", path=path)
                if is_api(request):
                    return JSONResponse({"error": "authentication required"}, status_code=401)
                return RedirectResponse("/login?next=" + quote(path), status_code=303)
            if request.method not in ("GET", "HEAD") and caller.session is not None:
                # a cookie rides along on any site's request: the CSRF token proves it is ours
                given = request.headers.get("x-csrf-token") or await _form_field(request, "csrf")
                if not same_origin(request) or not token_matches(caller.session.csrf, given):
                    audit.write(caller.user, "csrf-refused", path=path)
                    return PlainTextResponse("CSRF check failed: reload the page and try again", status_code=403)
            request.state.caller = caller
        response = await call_next(request)
        new_sid: str | None = getattr(request.state, "new_sid", None)
        if new_sid:
            response.set_cookie(
                COOKIE, new_sid, httponly=True, samesite="strict", secure=config.secure_cookie, path="/"
            )
        for key, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    # -- login -------------------------------------------------------------------------

    async def login_form(request: Request) -> Response:
        if config.token is None:
            return RedirectResponse("/", status_code=303)
        return page(request, "login.html.j2", next=_safe_next(request.query_params.get("next")), error=None)

    async def login(request: Request) -> Response:
        if config.token is None:
            return RedirectResponse("/", status_code=303)
        form = await request.form()
        name = str(form.get("name", "")).strip()[:100]
        nxt = _safe_next(str(form.get("next", "/")))
        if not same_origin(request) or not token_matches(config.token, str(form.get("token", ""))) or not name:
            audit.write(name or None, "login-failed")
            error = "Give your name and the team token." if not name else "That token is not right."
            return page(request, "login.html.j2", status=401, next=nxt, error=error)
        sid, _ = sessions.start(name)
        audit.write(name, "login")
        response = RedirectResponse(nxt, status_code=303)
        response.set_cookie(COOKIE, sid, httponly=True, samesite="strict", secure=config.secure_cookie, path="/")
        return response

    async def logout(request: Request) -> Response:
        caller: Caller = request.state.caller
        sessions.end(request.cookies.get(COOKIE))
        audit.write(caller.user, "logout")
        response = RedirectResponse("/login" if config.token else "/", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # -- pages -------------------------------------------------------------------------

    def trial_or_404(con: sqlite3.Connection, trial: str) -> runs.RunInfo:
        info = data.latest(con, trial)
        if info is None:
            raise _NotFound(f"no complete run of trial {trial!r} in this store")
        return info

    async def home(request: Request) -> Response:
        with store() as con:
            infos = data.trials(con)
        audit.write(request.state.caller.user, "view-trials")
        if is_api(request):
            return JSONResponse([i.as_json() for i in infos])
        return page(request, "trials.html.j2", trials=infos)

    async def trial_page(request: Request) -> Response:
        trial = request.path_params["trial"]
        with store() as con:
            info = trial_or_404(con, trial)
            view = data.trial_view(con, info)
            before = runs.last_complete(con, trial, before=info.run)
            since = diff(trial, runs.state(con, before), view.state) if before is not None else None
        audit.write(request.state.caller.user, "view-trial", trial=trial, run=info.run)
        if is_api(request):
            return JSONResponse({"run": info.as_json(), "patients": [_view_json(v) for v in view.views]})
        return page(
            request,
            "trial.html.j2",
            t=view,
            bars=bars(view.funnel),
            since=since,
            link=lambda pid: f"/trials/{quote(trial, safe='')}/patients/{quote(pid, safe='')}",
        )

    async def patient_page(request: Request) -> Response:
        trial, pid = request.path_params["trial"], request.path_params["patient"]
        with store() as con:
            info = trial_or_404(con, trial)
            view = data.patient(con, info, pid)
            if view is None:
                raise _NotFound(f"patient {pid!r} is not in run {info.run} of {trial}")
            history = data.decision_history(con, trial, pid)
        audit.write(request.state.caller.user, "view-patient", trial=trial, patient=pid, run=info.run)
        if is_api(request):
            return JSONResponse({**_view_json(view), "decisions": [_decision_json(d) for d in history]})
        return page(
            request, "patient.html.j2", info=info, v=view, history=history, saved=request.query_params.get("saved")
        )

    async def decide(request: Request) -> Response:
        trial, pid = request.path_params["trial"], request.path_params["patient"]
        caller: Caller = request.state.caller
        if is_api(request):
            try:
                body = await request.json()
            except ValueError:
                return JSONResponse({"error": "the body must be JSON"}, status_code=400)
            body = body if isinstance(body, dict) else {}
        else:
            body = dict(await request.form())
        choice = str(body.get("decision", ""))
        note = str(body.get("note") or "").strip()[:2000] or None
        with store() as con:
            trial_or_404(con, trial)
            try:
                done = decisions.record(con, [Proposed(trial, pid, choice, note, caller.user)])
            except CohortFinderError as exc:
                if is_api(request):
                    return JSONResponse({"error": str(exc)}, status_code=400)
                return PlainTextResponse(str(exc), status_code=400)
        audit.write(caller.user, "decide", trial=trial, patient=pid, decision=choice)
        if is_api(request):
            return JSONResponse({"recorded": bool(done), "decision": choice})
        target = f"/trials/{quote(trial, safe='')}/patients/{quote(pid, safe='')}?saved=1"
        return RedirectResponse(target, status_code=303)

    async def runs_page(request: Request) -> Response:
        trial = request.path_params["trial"]
        with store() as con:
            infos = list(reversed(runs.history(con, trial)))
        if not infos:
            raise _NotFound(f"no run of trial {trial!r} in this store")
        audit.write(request.state.caller.user, "view-runs", trial=trial)
        if is_api(request):
            return JSONResponse([i.as_json() for i in infos])
        return page(request, "runs.html.j2", trial=trial, runs=infos)

    async def diff_page(request: Request) -> Response:
        trial = request.path_params["trial"]
        try:
            a, b = (_int(request.query_params.get(k)) for k in ("from", "to"))
            with store() as con:
                d = compare(Store(config.store, con), trial, a, b)
        except CohortFinderError as exc:
            if is_api(request):
                return JSONResponse({"error": str(exc)}, status_code=400)
            return page(request, "message.html.j2", status=400, title="No diff", message=str(exc))
        audit.write(request.state.caller.user, "view-diff", trial=trial, run=d.after.run)
        if is_api(request):
            return JSONResponse(d.as_json())
        link = lambda pid: f"/trials/{quote(trial, safe='')}/patients/{quote(pid, safe='')}"  # noqa: E731
        return page(request, "diff.html.j2", trial=trial, d=d, link=link)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:
            return PlainTextResponse("not found", status_code=404)
        return Response((REPORT_TEMPLATES / name).read_bytes(), media_type=_STATIC[name])

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def not_found(request: Request, exc: Exception) -> Response:
        if is_api(request):
            return JSONResponse({"error": str(exc)}, status_code=404)
        return page(request, "message.html.j2", status=404, title="Not found", message=str(exc))

    routes = [
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/healthz", healthz),
        Route("/static/{name}", static),
        Route("/", home),
        Route("/trials/{trial}", trial_page),
        Route("/trials/{trial}/patients/{patient}", patient_page),
        Route("/trials/{trial}/patients/{patient}/decision", decide, methods=["POST"]),
        Route("/trials/{trial}/runs", runs_page),
        Route("/trials/{trial}/diff", diff_page),
        Route("/api/trials", home),
        Route("/api/trials/{trial}", trial_page),
        Route("/api/trials/{trial}/patients/{patient}", patient_page),
        Route("/api/trials/{trial}/patients/{patient}/decision", decide, methods=["POST"]),
        Route("/api/trials/{trial}/runs", runs_page),
        Route("/api/trials/{trial}/diff", diff_page),
    ]
    app = Starlette(routes=routes, exception_handlers={_NotFound: not_found})
    app.add_middleware(BaseHTTPMiddleware, dispatch=guard)
    return app


class _NotFound(Exception):
    pass


async def _form_field(request: Request, name: str) -> str:
    """One field of a urlencoded form, read from the body the endpoint will read again (our
    forms are urlencoded; Starlette replays a body read in middleware, not a parsed form)."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return ""
    values = parse_qs((await request.body()).decode("utf-8", "replace")).get(name)
    return values[0] if values else ""


def _int(text: str | None) -> int | None:
    if text is None or text == "":
        return None
    if not text.isdigit():
        raise BadRequest(f"run numbers are whole numbers, not {text!r}")
    return int(text)


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect to another host."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _decision_json(d: decisions.Decision) -> dict[str, Any]:
    return {**d.as_json(), "before": d.before}


def _view_json(v: PatientView) -> dict[str, Any]:
    return {
        "id": v.id,
        "status": v.status,
        "name": v.name,
        "identifier": v.identifier,
        "age": v.age,
        "gender": v.gender,
        "change": v.change,
        "review": dict(v.review) if v.review else None,
        "keys": [{"label": k.label, "value": k.value, "date": k.date} for k in v.keys],
        "unknown": v.unknown_count,
        "manual": v.manual_count,
        "criteria": [
            {"id": c.id, "kind": c.kind, "result": c.result, "group": c.group, "note": c.note}
            for _, _, rows in v.groups
            for c in rows
        ],
    }
