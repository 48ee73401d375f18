"""SMART Backend Services end to end: a real FHIR server that demands tokens, cohort-finder
signing its own RS384 client assertion, REST and Bulk (requiresAccessToken) both working, and
a bad key refused without a traceback or a secret in the output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ..e2e import cohort_finder
from ..fhir_server import FhirServer, load_folder
from ..paths import CRITERIA, FIXTURES
from .conftest import require_sekmet

LOADER_TOKEN = "loader-token-for-tests-only"


def _write_key(path: Path) -> rsa.RSAPrivateKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.write_bytes(pem)
    path.chmod(0o600)
    return key


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keys")
    good = _write_key(folder / "client.pem")
    (folder / "client.pub.pem").write_bytes(
        good.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    _write_key(folder / "stranger.pem")
    return {"good": folder / "client.pem", "public": folder / "client.pub.pem", "bad": folder / "stranger.pem"}


@pytest.fixture(scope="module")
def secured(keys: dict[str, Path]) -> Iterator[FhirServer]:
    require_sekmet()
    auth = {
        "types": ["bearer", "smart"],
        "tokens": [LOADER_TOKEN],
        "smart_clients": [
            {"client_id": "cohort-finder-test", "public_key_path": str(keys["public"]), "scopes": "system/*.read"}
        ],
    }
    with FhirServer(auth=auth) as server:
        load_folder(server.base, FIXTURES / "fhir_bundles" / "baseline", headers=server.headers)
        yield server


def _env(key: Path) -> dict[str, str]:
    return {
        "COHORT_FINDER_SMART_CLIENT_ID": "cohort-finder-test",
        "COHORT_FINDER_SMART_KEY_FILE": str(key),
        "COHORT_FINDER_SMART_KID": "test-key-1",
    }


def _run(server: FhirServer, out: Path, env: dict[str, str], *extra: str) -> tuple[int, str, str, Path]:
    done = cohort_finder(
        "run",
        "--criteria",
        str(CRITERIA / "nct07183761.yaml"),
        "--source",
        server.base,
        "--out",
        str(out),
        "--as-of",
        "2026-06-30",
        *extra,
        env=env,
    )
    return done.returncode, done.stdout, done.stderr, out


def test_the_server_really_demands_a_token(secured: FhirServer) -> None:
    assert requests.get(f"{secured.base}/Patient", timeout=10).status_code == 401


def test_rest_with_smart_backend_services(secured: FhirServer, keys: dict[str, Path], tmp_path: Path) -> None:
    code, _, err, out = _run(secured, tmp_path, _env(keys["good"]), "--rest")
    assert code == 0, err
    patients = json.loads((out / "candidates.json").read_text())["patients"]
    assert patients and {p["status"] for p in patients} <= {"candidate", "possible", "excluded"}


def test_bulk_with_smart_backend_services_sends_the_token_for_files(
    secured: FhirServer, keys: dict[str, Path], tmp_path: Path
) -> None:
    code, _, err, out = _run(secured, tmp_path / "out", _env(keys["good"]), "--bulk", "--cache", str(tmp_path / "c"))
    assert code == 0, err
    rest_code, _, _, rest_out = _run(secured, tmp_path / "rest", _env(keys["good"]), "--rest")
    bulk_doc, rest_doc = (json.loads((o / "candidates.json").read_text()) for o in (out, rest_out))
    assert rest_code == 0 and bulk_doc["patients"] == rest_doc["patients"]


def test_a_key_the_server_does_not_know_is_refused_cleanly(
    secured: FhirServer, keys: dict[str, Path], tmp_path: Path
) -> None:
    code, _, err, out = _run(secured, tmp_path, _env(keys["bad"]), "--rest")
    assert code == 1
    assert "cohort-finder: error:" in err and "Traceback" not in err
    assert "token" in err.lower()
    assert keys["bad"].read_text().splitlines()[1] not in err  # no key material
    assert not (out / "candidates.json").exists()  # no half-truth written
