"""Emulated EHRs: a layer in front of the real test server (sekmet) that behaves as Epic or
Oracle Health do, from docs/ehr-profiles.md, so that a run that would fail in a
hospital fails here first.

The layer is a Starlette app on 127.0.0.1 (uvicorn in a thread). It rewrites the server's
CapabilityStatement (types hidden, search parameters removed, the export operation renamed and
offered at the Group level only), refuses what the profile refuses (population searches,
parameters it does not list, a `_count` over its cap, `_typeFilter`, some types in `_type`, a
second export of the client while one runs), issues its own tokens (client secret by HTTP Basic,
or a JWT assertion checked as Epic checks it), and forwards everything else to the server,
rewriting the server's URLs into its own. Bulk files go by 307 to "signed storage" on another
host name that refuses a request carrying a token, as S3 does.
"""

from __future__ import annotations

import base64
import itertools
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import jwt
import orjson
import requests
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from .fhir_server import free_port

FHIR_JSON = "application/fhir+json"
RESULT_PARAMS = {"_count", "_sort", "_total", "_summary", "_elements"}
PATIENT_PARAMS = {"patient", "subject", "_id"}


@dataclass(frozen=True)
class Profile:
    name: str
    refusal: int  # the status of a refused search: Epic 400, Oracle Health 422
    hidden_types: frozenset[str]  # not offered: absent from the statement, 404 when asked
    removed_params: dict[str, frozenset[str]]  # type -> search parameters it does not support
    includes: bool  # does the statement list `_include` (searchInclude)?
    export_operation: dict[str, str]  # the Group-level export operation as the statement names it
    type_filter: bool  # False: 422 on `_typeFilter`
    export_refused_types: frozenset[str]  # `_type` naming these: 400
    group_members: bool  # False: a Group read shows no `member`
    max_count: int | None  # a `_count` over this is refused
    auth: str  # "secret" (HTTP Basic) or "jwt" (SMART Backend Services, RS384)
    scopes_v2: bool  # does smart-configuration list v2 scopes?
    retry_after: int = 600  # on 429
    busy_seconds: float = 0.0  # an export is "in progress" this long after its kick-off


EPIC = Profile(
    name="epic",
    refusal=400,
    hidden_types=frozenset({"MedicationStatement"}),
    removed_params={},
    includes=False,
    export_operation={
        "name": "group-export",
        "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export",
    },
    type_filter=True,
    export_refused_types=frozenset({"MedicationStatement"}),
    group_members=False,
    max_count=None,
    auth="jwt",
    scopes_v2=False,
)

ORACLE = Profile(
    name="oracle",
    refusal=422,
    hidden_types=frozenset({"MedicationStatement", "Medication"}),
    removed_params={"Condition": frozenset({"code"}), "Procedure": frozenset({"code"})},
    includes=False,
    export_operation={
        "name": "export",
        "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export",
    },
    type_filter=False,
    export_refused_types=frozenset({"MedicationStatement", "Medication"}),
    group_members=True,
    max_count=200,
    auth="secret",
    scopes_v2=True,
)


@dataclass
class Client:
    client_id: str
    secret: str | None = None  # auth "secret"
    public_key_pem: bytes | None = None  # auth "jwt"


@dataclass
class Job:
    client: str
    upstream: str
    started: float
    done: bool = False


@dataclass
class Seen:
    """What the emulated EHR was asked, for tests to assert on."""

    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path?query)
    refused: list[tuple[int, str]] = field(default_factory=list)  # (status, why)
    kickoffs: int = 0
    token_requests: int = 0
    jtis: set[str] = field(default_factory=set)
    assertion_lifetimes: list[int] = field(default_factory=list)


def _outcome(status: int, text: str, seen: Seen, headers: dict[str, str] | None = None) -> Response:
    seen.refused.append((status, text))
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "not-supported", "diagnostics": text}],
    }
    return Response(orjson.dumps(body), status, headers=headers, media_type=FHIR_JSON)


class Emulator:
    def __init__(self, profile: Profile, upstream: str, client: Client) -> None:
        self.profile = profile
        self.upstream = upstream.rstrip("/")
        self.client = client
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        self.token_url = f"http://127.0.0.1:{self.port}/token"
        self.storage = f"http://localhost:{self.port}/storage"  # another host name: no token follows a redirect
        self.seen = Seen()
        self.tokens: dict[str, str] = {}  # token -> client id
        self.jobs: dict[str, Job] = {}
        self.files: dict[str, str] = {}  # id -> upstream url
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.http = requests.Session()
        self.http.trust_env = False
        self._statement: dict[str, Any] | None = None
        self.app = Starlette(
            routes=[
                Route("/token", self.token, methods=["POST"]),
                Route("/storage/{name}", self.stored_file, methods=["GET"]),
                Route("/fhir/.well-known/smart-configuration", self.smart_configuration, methods=["GET"]),
                Route("/fhir/metadata", self.metadata, methods=["GET"]),
                Route("/fhir/_status/{job}", self.status, methods=["GET", "DELETE"]),
                Route("/fhir/_file/{name}", self.file, methods=["GET"]),
                Route("/fhir/Group/{gid}/$export", self.kick_off, methods=["GET"]),
                Route("/fhir/{path:path}", self.fhir, methods=["GET"]),
            ]
        )

    # -- auth ---------------------------------------------------------------------------------
    def smart_configuration(self, request: Request) -> Response:
        scopes = ["system/*.rs", "system/Patient.rs"] if self.profile.scopes_v2 else ["system/*.read"]
        jwt_auth = self.profile.auth == "jwt"
        body = {
            "token_endpoint": self.token_url,
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt" if jwt_auth else "client_secret_basic"],
            "scopes_supported": scopes,
            "capabilities": [f"client-confidential-{'asymmetric' if jwt_auth else 'symmetric'}"],
        }
        return Response(orjson.dumps(body), media_type="application/json")

    async def token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        self.seen.token_requests += 1
        if form.get("grant_type") != "client_credentials":
            return self._oauth_error("unsupported_grant_type")
        if self.profile.auth == "secret":
            expected = base64.b64encode(f"{self.client.client_id}:{self.client.secret}".encode()).decode()
            if request.headers.get("authorization") != f"Basic {expected}":
                return self._oauth_error("invalid_client", 401)
        else:
            problem = self._check_assertion(form)
            if problem:
                return self._oauth_error(problem, 401)
        token = secrets.token_urlsafe(24)
        self.tokens[token] = self.client.client_id
        body = {"access_token": token, "token_type": "bearer", "expires_in": 600, "scope": form.get("scope", "")}
        return Response(orjson.dumps(body), media_type="application/json")

    def _check_assertion(self, form: dict[str, str]) -> str | None:
        """Epic's checks: RS384, aud the token URL, iss = sub = client id, exp at most 5 minutes
        out, a jti never seen before."""
        if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            return "invalid_client: no client assertion"
        assert self.client.public_key_pem is not None
        try:
            claims = jwt.decode(
                form.get("client_assertion", ""),
                self.client.public_key_pem,
                algorithms=["RS384"],
                audience=self.token_url,
                options={"require": ["exp", "jti", "iss", "sub"]},
            )
        except jwt.PyJWTError as exc:
            return f"invalid_client: {type(exc).__name__}"
        if claims["iss"] != self.client.client_id or claims["sub"] != self.client.client_id:
            return "invalid_client: iss and sub must be the client id"
        lifetime = int(claims["exp"] - time.time())
        self.seen.assertion_lifetimes.append(lifetime)
        if lifetime > 300:
            return "invalid_client: exp more than 5 minutes out"
        if claims["jti"] in self.seen.jtis:
            return "invalid_client: jti reused"
        self.seen.jtis.add(claims["jti"])
        return None

    @staticmethod
    def _oauth_error(error: str, status: int = 400) -> Response:
        return Response(orjson.dumps({"error": error}), status, media_type="application/json")

    def _caller(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        return self.tokens.get(header.removeprefix("Bearer ")) if header.startswith("Bearer ") else None

    # -- the CapabilityStatement --------------------------------------------------------------
    def statement(self) -> dict[str, Any]:
        if self._statement is None:
            upstream = self.http.get(f"{self.upstream}/metadata", timeout=30).json()
            for rest in upstream.get("rest", []):
                rest["operation"] = [o for o in rest.get("operation", []) if o.get("name") != "export"]
                kept = []
                for resource in rest.get("resource", []):
                    rtype = resource["type"]
                    if rtype in self.profile.hidden_types:
                        continue
                    removed = self.profile.removed_params.get(rtype, frozenset())
                    resource["searchParam"] = [p for p in resource.get("searchParam", []) if p["name"] not in removed]
                    if not self.profile.includes:
                        resource["searchInclude"] = []
                    operations = [o for o in resource.get("operation", []) if o.get("name") != "export"]
                    if rtype == "Group":
                        operations.append(dict(self.profile.export_operation))
                    resource["operation"] = operations
                    kept.append(resource)
                rest["resource"] = kept
            self._statement = upstream
        return self._statement

    def metadata(self, request: Request) -> Response:
        return Response(orjson.dumps(self.statement()), media_type=FHIR_JSON)

    def _listed(self, rtype: str) -> set[str] | None:
        for rest in self.statement().get("rest", []):
            for resource in rest.get("resource", []):
                if resource["type"] == rtype:
                    return {p["name"] for p in resource.get("searchParam", [])}
        return None

    # -- searches and reads -------------------------------------------------------------------
    def fhir(self, request: Request) -> Response:
        if self._caller(request) is None:
            return _outcome(401, "a bearer token is required", self.seen)
        path = request.url.path.removeprefix("/fhir/")
        self.seen.requests.append(("GET", f"{path}?{request.url.query}"))
        parts = path.split("/")
        rtype = parts[0]
        if rtype in self.profile.hidden_types or self._listed(rtype) is None:
            return _outcome(404, f"resource type {rtype} is not supported", self.seen)
        params = parse_qsl(request.url.query, keep_blank_values=True)
        if len(parts) == 1:
            refusal = self._refuse_search(rtype, params)
            if refusal is not None:
                return refusal
        upstream = self.http.get(f"{self.upstream}/{path}", params=params, headers={"Accept": FHIR_JSON}, timeout=60)
        body = upstream.content.replace(self.upstream.encode(), self.base.encode())
        if rtype == "Group" and len(parts) == 2 and not self.profile.group_members and upstream.status_code == 200:
            group = orjson.loads(body)
            group.pop("member", None)  # a large Group's members are not listed by a read
            body = orjson.dumps(group)
        return Response(body, upstream.status_code, media_type=FHIR_JSON)

    def _refuse_search(self, rtype: str, params: list[tuple[str, str]]) -> Response | None:
        listed = self._listed(rtype) or set()
        names = {name.split(":", 1)[0] for name, _ in params}
        for name in sorted(names - RESULT_PARAMS):
            if name == "_include" or name not in listed:
                return _outcome(self.profile.refusal, f"search parameter {name} is not supported on {rtype}", self.seen)
        if not names & PATIENT_PARAMS:
            return _outcome(self.profile.refusal, f"a {rtype} search needs patient, subject or _id", self.seen)
        count = dict(params).get("_count")
        if self.profile.max_count is not None and count is not None and int(count) > self.profile.max_count:
            return _outcome(self.profile.refusal, f"_count may not exceed {self.profile.max_count}", self.seen)
        return None

    # -- Bulk export ----------------------------------------------------------------------------
    def kick_off(self, request: Request) -> Response:
        client = self._caller(request)
        if client is None:
            return _outcome(401, "a bearer token is required", self.seen)
        params = parse_qsl(request.url.query, keep_blank_values=True)
        self.seen.requests.append(("GET", f"{request.url.path}?{request.url.query}"))
        types = {t for name, value in params if name == "_type" for t in value.split(",")}
        refused = sorted(types & (self.profile.export_refused_types | self.profile.hidden_types))
        if refused:
            return _outcome(400, f"_type may not name {', '.join(refused)}", self.seen)
        filters = [value for name, value in params if name == "_typeFilter"]
        if filters and not self.profile.type_filter:
            return _outcome(422, "_typeFilter is not supported", self.seen)
        with self._lock:
            now = time.monotonic()
            running = [j for j in self.jobs.values() if j.client == client and not j.done]
            for job in running:
                if now - job.started >= self.profile.busy_seconds:
                    job.done = True  # finished on the server's side, whether or not it was fetched
            if any(not j.done for j in running):
                return _outcome(
                    429,
                    "another export of this client is in progress",
                    self.seen,
                    {"Retry-After": str(self.profile.retry_after)},
                )
            self.seen.kickoffs += 1
            gid = request.path_params["gid"]
            upstream = self.http.get(
                f"{self.upstream}/Group/{gid}/$export",
                params=params,
                headers={"Prefer": "respond-async", "Accept": FHIR_JSON},
                timeout=60,
            )
            if upstream.status_code != 202:
                return Response(upstream.content, upstream.status_code, media_type=FHIR_JSON)
            job_id = str(next(self._ids))
            self.jobs[job_id] = Job(client, upstream.headers["Content-Location"], now)
        return Response(status_code=202, headers={"Content-Location": f"{self.base}/_status/{job_id}"})

    def status(self, request: Request) -> Response:
        if self._caller(request) is None:
            return _outcome(401, "a bearer token is required", self.seen)
        job = self.jobs.get(request.path_params["job"])
        if job is None:
            return _outcome(404, "no such export", self.seen)
        if request.method == "DELETE":
            job.done = True
            self.http.delete(job.upstream, timeout=30)
            return Response(status_code=202)
        if time.monotonic() - job.started < self.profile.busy_seconds:
            return Response(status_code=202, headers={"Retry-After": "1", "X-Progress": "exporting"})
        upstream = self.http.get(job.upstream, timeout=60)
        if upstream.status_code != 200:
            return Response(upstream.content, upstream.status_code, headers={"Retry-After": "1"})
        job.done = True
        manifest = upstream.json()
        for entry in manifest.get("output", []) + manifest.get("error", []):
            name = secrets.token_hex(8)
            self.files[name] = entry["url"]
            entry["url"] = f"{self.base}/_file/{name}"
        manifest["requiresAccessToken"] = True
        return Response(orjson.dumps(manifest), media_type="application/json")

    def file(self, request: Request) -> Response:
        if self._caller(request) is None:
            return _outcome(401, "a bearer token is required", self.seen)
        name = request.path_params["name"]
        if name not in self.files:
            return _outcome(404, "no such file", self.seen)
        return RedirectResponse(f"{self.storage}/{name}?signature={secrets.token_hex(8)}", status_code=307)

    def stored_file(self, request: Request) -> Response:
        """Signed storage: it refuses a request that also carries a token (S3: only one auth
        mechanism allowed)."""
        if "authorization" in request.headers:
            return Response(b"<Error><Code>InvalidArgument</Code></Error>", 400, media_type="application/xml")
        upstream_url = self.files.get(request.path_params["name"])
        if upstream_url is None:
            return Response(b"", 404)
        headers = {"Range": request.headers["range"]} if "range" in request.headers else {}
        upstream = self.http.get(upstream_url, headers=headers, timeout=60)
        return Response(upstream.content, upstream.status_code, media_type="application/fhir+ndjson")


@contextmanager
def emulate(profile: Profile, upstream: str, client: Client) -> Iterator[Emulator]:
    """The emulated EHR on 127.0.0.1, in front of `upstream`, until the block ends."""
    emulator = Emulator(profile, upstream, client)
    server = uvicorn.Server(
        uvicorn.Config(emulator.app, host="127.0.0.1", port=emulator.port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the emulated EHR did not start")
        time.sleep(0.02)
    try:
        yield emulator
    finally:
        server.should_exit = True
        thread.join(timeout=10)
