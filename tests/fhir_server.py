"""A real FHIR R4 server for integration tests, and a loader that fills it from a source folder.

The server is sekmet-fhir (PyPI), installed by `scripts/setup` in its own virtual environment
(`.venv-fhir-server/`, it pins its own dependencies). Each `FhirServer` is one `sekmet serve`
process on 127.0.0.1 and a free port, with an in-memory database, the order simulator off (it
would add resources by itself) and request logging off (it keeps every body in memory).

`load_folder` PUTs every resource of a folder read the way a file run reads it (contract §3):
ids kept, `urn:uuid:` references rewritten to `Type/id`, and for a Type/id met twice only the
winner sent. So the server holds what `cohort-finder run --source FOLDER` would read.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import requests
import yaml

from .paths import ROOT

SEKMET_VERSION = "0.1.1"
SEKMET = Path(os.environ.get("COHORT_FINDER_TEST_SEKMET") or ROOT / ".venv-fhir-server" / "bin" / "sekmet")

FHIR_JSON = "application/fhir+json"
STRICT = {"Prefer": "handling=strict", "Accept": FHIR_JSON}  # for searches: an unknown parameter is an error

START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
BATCH_SIZE = 500


def sekmet_available(executable: Path = SEKMET) -> bool:
    return executable.is_file() and os.access(executable, os.X_OK)


def session() -> requests.Session:
    """A session for the local server: proxies and .netrc from the environment are not used."""
    s = requests.Session()
    s.trust_env = False
    return s


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerError(RuntimeError):
    pass


class FhirServer:
    """`with FhirServer() as server:` a running sekmet on `server.base`; stopped (and its temp
    folder removed) on exit.

    `auth` is sekmet's `server_auth` setting, passed through as is, e.g.
    `{"types": ["bearer", "smart"], "tokens": ["secret123"],
      "smart_clients": [{"client_id": "cf", "client_secret": "s3cret", "scopes": "system/*.read"}]}`
    (types: none, basic, bearer, smart; `users` for basic; `token_lifetime`; `enforce_scopes`).
    With auth on, `/metadata` stays public and `server.headers` carries a credential that
    `load_folder` can use. `config` is merged last into the settings (e.g. `{"validation":
    {"inbound": "warn"}}`).
    """

    def __init__(
        self,
        auth: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
        executable: Path = SEKMET,
    ) -> None:
        self.auth = auth
        self.extra_config = config or {}
        self.executable = executable
        self.port = 0
        self.base = ""
        self.tmp: Path | None = None
        self.log_path: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.started_in = 0.0  # seconds from spawn to the first 200 from /metadata

    @property
    def pid(self) -> int:
        assert self.process is not None, "server not started"
        return self.process.pid

    @property
    def headers(self) -> dict[str, str]:
        """An Authorization header the server accepts (empty with auth off)."""
        auth = self.auth or {}
        types = auth.get("types", ["none"])
        if "none" in types:
            return {}
        if "bearer" in types and auth.get("tokens"):
            return {"Authorization": f"Bearer {auth['tokens'][0]}"}
        if "basic" in types and auth.get("users"):
            user, password = next(iter(auth["users"].items()))
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            return {"Authorization": f"Basic {token}"}
        return {}

    def settings(self) -> dict[str, Any]:
        assert self.tmp is not None
        settings: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "base_url": self.base,  # not derived from the port: every link the server writes uses it
            "db_path": ":memory:",
            "data_dir": str(self.tmp / "data"),  # bulk export files
            "own_private_key_path": str(self.tmp / "keys" / "sekmet_private.pem"),
            "simulator": {"enabled": False},
            "log_inbound": False,
        }
        if self.auth is not None:
            settings["server_auth"] = self.auth
        settings.update(self.extra_config)
        return settings

    def __enter__(self) -> FhirServer:
        if not sekmet_available(self.executable):
            raise ServerError(f"{self.executable} not found: run `bash scripts/setup`")
        self.tmp = Path(tempfile.mkdtemp(prefix="cohort-finder-sekmet-"))
        try:
            for _attempt in range(3):  # a free port can be taken between bind and the server's bind
                self._start()
                if self._wait_ready():
                    return self
        except BaseException:
            self._stop()
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        tail = self.log_tail()
        self._stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
        raise ServerError(f"sekmet could not bind a port:\n{tail}")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop()
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _start(self) -> None:
        assert self.tmp is not None
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        config = self.tmp / "sekmet.yaml"
        config.write_text(yaml.safe_dump(self.settings(), sort_keys=False), encoding="utf-8")
        self.log_path = self.tmp / "sekmet.log"
        # SEKMET_* variables would override the config file; the server has its own interpreter.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("SEKMET_") and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(self.executable), "serve", "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.tmp,  # anything it writes relative to its working folder stays in tmp
                env=env,
            )

    def _wait_ready(self) -> bool:
        """True once /metadata answers 200; False when the port was taken. Raises otherwise."""
        assert self.process is not None
        started = time.monotonic()
        deadline = started + START_TIMEOUT
        with session() as http:
            while True:
                code = self.process.poll()
                if code is not None:
                    tail = self.log_tail()
                    if "address already in use" in tail.lower():
                        return False
                    raise ServerError(f"sekmet exited with {code} before answering:\n{tail}")
                try:
                    if http.get(f"{self.base}/metadata", timeout=2).status_code == 200:
                        self.started_in = time.monotonic() - started
                        return True
                except (requests.ConnectionError, requests.Timeout):
                    pass
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"sekmet did not answer {self.base}/metadata within {START_TIMEOUT:.0f} s:\n{self.log_tail()}"
                    )
                time.sleep(0.1)

    def _stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)
        self.process = process  # keeps .pid readable after exit; poll() is not None

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


# ---------------------------------------------------------------- loading a folder


@dataclass
class _Found:
    resource: dict[str, Any]
    origin: str  # file (and NDJSON line), relative to the folder


class LoadError(RuntimeError):
    def __init__(self, folder: Path, failures: list[str]) -> None:
        self.failures = failures
        super().__init__(f"{len(failures)} resource(s) of {folder} rejected by the server:\n" + "\n".join(failures))


def source_files(folder: Path) -> list[Path]:
    """The files a file run reads, in its order: *.json and *.ndjson, recursively, sorted, no hidden."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in (".json", ".ndjson") and not p.name.startswith(".")
    )


def _read(folder: Path) -> Iterator[tuple[dict[str, Any], str | None, str]]:
    """(resource, entry fullUrl, origin) for every resource of a folder, in read order."""
    for path in source_files(folder):
        name = path.relative_to(folder).as_posix()
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".ndjson":
            for number, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    yield json.loads(line), None, f"{name}:{number}"
            continue
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: not a JSON object")
        if "resourceType" not in data:  # e.g. Synthea's SOURCE_MANIFEST.json
            continue
        if data["resourceType"] != "Bundle":
            yield data, None, name
            continue
        for index, entry in enumerate(data.get("entry") or []):
            if isinstance(entry.get("resource"), dict):
                yield entry["resource"], entry.get("fullUrl"), f"{name} entry {index}"


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _replaces(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """Does the resource read now win over the one read before? The later meta.lastUpdated as an
    instant; a tie, or a missing or unreadable lastUpdated on either side: the one read later."""
    a, b = _instant((new.get("meta") or {}).get("lastUpdated")), _instant((old.get("meta") or {}).get("lastUpdated"))
    if a is None or b is None:
        return True
    try:
        return a >= b
    except TypeError:  # one with a time zone, one without: compare as written
        return str(new["meta"]["lastUpdated"]) >= str(old["meta"]["lastUpdated"])


def _rewrite_references(node: Any, full_urls: dict[str, str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and value in full_urls:
                node[key] = full_urls[value]
            else:
                _rewrite_references(value, full_urls)
    elif isinstance(node, list):
        for item in node:
            _rewrite_references(item, full_urls)


def folder_resources(folder: Path) -> list[_Found]:
    """The resources a file run of `folder` ends up with (one per Type/id, the contract's winner),
    ready to PUT: `urn:uuid:` references rewritten to `Type/id`."""
    winners: dict[str, _Found] = {}
    full_urls: dict[str, str] = {}
    for resource, full_url, origin in _read(folder):
        rid = resource.get("id")
        if not rid and full_url and full_url.startswith("urn:uuid:"):
            rid = resource["id"] = full_url.removeprefix("urn:uuid:")  # its identity is the fullUrl (decisions.md)
        if not isinstance(rid, str) or not rid:
            raise ValueError(f"{folder / origin}: {resource.get('resourceType')} has no id")
        key = f"{resource['resourceType']}/{rid}"
        if full_url and full_url.startswith("urn:uuid:"):
            full_urls[full_url] = key
        old = winners.get(key)
        if old is None or _replaces(resource, old.resource):
            winners[key] = _Found(resource, origin)
    for found in winners.values():
        _rewrite_references(found.resource, full_urls)
    return list(winners.values())


def _diagnostics(outcome: Any) -> str:
    if not isinstance(outcome, dict):
        return ""
    return "; ".join(
        str(issue.get("diagnostics") or issue.get("details", {}).get("text") or issue.get("code"))
        for issue in outcome.get("issue") or []
    )


def load_folder(
    base: str,
    folder: Path,
    *,
    headers: dict[str, str] | None = None,
    batch_size: int = BATCH_SIZE,
    http: requests.Session | None = None,
    expected_rejections: Mapping[str, str] | None = None,
) -> int:
    """PUT every resource of `folder` into the server at `base` (batch Bundles of `batch_size`
    PUT entries) and return how many were loaded. Raises LoadError naming every resource the
    server rejected (file, Type/id, status, OperationOutcome diagnostics), after sending all.

    `expected_rejections` ({"Type/id": why}) names resources the server is known to refuse:
    they are not counted and not an error, but one of them accepted is (the list is stale)."""
    found = folder_resources(folder)
    expected = dict(expected_rejections or {})
    keys = {f"{f.resource['resourceType']}/{f.resource['id']}" for f in found}
    failures = [
        f"{key}: listed as rejected ({why}), but not in the folder" for key, why in expected.items() if key not in keys
    ]
    rejected = 0
    owned = http is None
    http = http or session()
    send = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON, "Prefer": "return=minimal", **(headers or {})}
    try:
        for start in range(0, len(found), batch_size):
            chunk = found[start : start + batch_size]
            bundle = {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [
                    {
                        "resource": f.resource,
                        "request": {"method": "PUT", "url": f"{f.resource['resourceType']}/{f.resource['id']}"},
                    }
                    for f in chunk
                ],
            }
            response = http.post(base, data=json.dumps(bundle), headers=send, timeout=300)
            if response.status_code != 200:
                raise LoadError(
                    folder,
                    [
                        f"batch {start}-{start + len(chunk)}: HTTP {response.status_code}: "
                        f"{_diagnostics(_json(response)) or response.text[:2000]}"
                    ],
                )
            body = response.json()
            entries = body.get("entry") or []
            if body.get("type") != "batch-response" or len(entries) != len(chunk):
                raise LoadError(folder, [f"batch {start}: unexpected response {str(body)[:500]}"])
            for f, entry in zip(chunk, entries, strict=True):
                answer = entry.get("response") or {}
                status = str(answer.get("status", ""))
                key = f"{f.resource['resourceType']}/{f.resource['id']}"
                accepted = status.startswith(("200", "201"))
                if key in expected:
                    if accepted:
                        failures.append(f"{f.origin}: {key}: accepted, but listed as rejected ({expected[key]})")
                    rejected += 1
                elif not accepted:
                    failures.append(f"{f.origin}: {key}: {status}: {_diagnostics(answer.get('outcome'))}")
    finally:
        if owned:
            http.close()
    if failures:
        raise LoadError(folder, failures)
    return len(found) - rejected


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def search_all(base: str, query: str, *, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every entry of a search (`Type?params`), following `next` links to the end, strict handling."""
    entries: list[dict[str, Any]] = []
    url: str | None = f"{base}/{query}"
    with session() as http:
        while url:
            response = http.get(url, headers={**STRICT, **(headers or {})}, timeout=60)
            if response.status_code != 200:
                raise AssertionError(f"GET {url}: HTTP {response.status_code}: {response.text[:2000]}")
            page = response.json()
            entries.extend(page.get("entry") or [])
            url = next((link["url"] for link in page.get("link") or [] if link.get("relation") == "next"), None)
    return entries
