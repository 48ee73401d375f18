"""Auth against a local SMART token endpoint that really checks the client assertion.

The endpoint verifies what a real authorization server would (SMART App Launch v2, Backend
Services): the signature with the client's registered public key, alg RS384/ES384/RS256/ES256,
kid, aud == its own URL, iss == sub == client id, exp in the future and at most 5 minutes ahead,
and a jti never seen before; or a client secret sent as HTTP Basic.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from cohort_finder.sources.auth import (
    ASSERTION_TYPE,
    AuthError,
    BearerToken,
    ClientSecretAuth,
    NoAuth,
    SmartBackendAuth,
    auth_from_environment,
)

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP384R1())
P256 = ec.generate_private_key(ec.SECP256R1())
CLIENTS: dict[str, tuple[Any, str]] = {
    "rsa-client": (RSA_KEY.public_key(), "rsa-kid"),
    "ec-client": (EC_KEY.public_key(), "ec-kid"),
    "p256-client": (P256.public_key(), "p256-kid"),
}
SECRETS = {"secret-client": "s3cret:with/odd+chars"}


class FakeClock:
    """Shared by the client and the server, as if their clocks were in sync."""

    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


class TokenServer:
    def __init__(self, httpserver: HTTPServer) -> None:
        self.httpserver = httpserver
        self.url = httpserver.url_for("/auth/token")
        self.fhir_base = httpserver.url_for("/fhir")
        self.now: Any = time.time
        self.expires_in: int | None = 3600
        self.echo_assertion = False  # a careless server that quotes what it was sent
        self.override: tuple[int, Any] | None = None
        self.forms: list[dict[str, str]] = []  # every token request
        self.accepted: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (header, claims)
        self.issued: list[str] = []
        self.seen_jti: set[str] = set()
        self.fail_next: list[int] = []  # statuses to answer before working normally
        httpserver.expect_request("/auth/token", method="POST").respond_with_handler(self.handle)
        httpserver.expect_request("/fhir/.well-known/smart-configuration").respond_with_json(
            {"token_endpoint": self.url, "token_endpoint_auth_methods_supported": ["private_key_jwt"]}
        )

    def basic(self, request: Request, form: dict[str, str]) -> Response:
        raw = base64.b64decode(request.headers["Authorization"][6:]).decode()
        client, _, secret = (unquote(part) for part in raw.partition(":"))
        if form.get("grant_type") != "client_credentials" or SECRETS.get(client) != secret:
            return self.refuse("bad client secret")
        token = f"access-{secrets.token_urlsafe(16)}"
        self.issued.append(token)
        return Response(json.dumps({"access_token": token, "token_type": "bearer"}), content_type="application/json")

    def discovery_requests(self) -> int:
        return sum(request.path.endswith("smart-configuration") for request, _ in self.httpserver.log)

    def refuse(self, description: str, status: int = 401) -> Response:
        body = {"error": "invalid_client", "error_description": description}
        return Response(json.dumps(body), status=status, content_type="application/json")

    def handle(self, request: Request) -> Response:
        form = dict(request.form)
        self.forms.append(form)
        if self.fail_next:
            return self.refuse("try again", self.fail_next.pop(0))
        if request.headers.get("Authorization", "").startswith("Basic "):
            return self.basic(request, form)
        if self.override is not None:
            status, canned = self.override
            return Response(json.dumps(canned), status=status, content_type="application/json")
        if form.get("grant_type") != "client_credentials" or form.get("client_assertion_type") != ASSERTION_TYPE:
            return self.refuse("wrong grant_type or client_assertion_type", 400)
        assertion = form.get("client_assertion", "")
        if self.echo_assertion:
            return self.refuse(f"cannot use assertion {assertion}")
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return self.refuse("malformed assertion", 400)
        if header.get("alg") not in ("RS384", "ES384", "RS256", "ES256") or header.get("typ") != "JWT":
            return self.refuse(f"alg {header.get('alg')} typ {header.get('typ')} refused")
        if unverified.get("iss") not in CLIENTS:
            return self.refuse("unknown client")
        public_key, kid = CLIENTS[unverified["iss"]]
        if header.get("kid") != kid:
            return self.refuse("unknown kid")
        try:
            claims = jwt.decode(
                assertion,
                public_key,
                algorithms=[header["alg"]],
                audience=self.url,
                # times are checked below against the server's (possibly fake) clock
                options={"verify_exp": False, "verify_iat": False, "require": ["iss", "sub", "aud", "exp", "jti"]},
            )
        except jwt.InvalidSignatureError:
            return self.refuse("signature does not verify with the registered key")
        except jwt.PyJWTError as exc:
            return self.refuse(f"assertion refused: {type(exc).__name__}")
        now = self.now()
        if claims["sub"] != claims["iss"]:
            return self.refuse("sub differs from iss")
        if not now < claims["exp"] <= now + 300:
            return self.refuse("exp is past or more than 5 minutes ahead")
        if claims["jti"] in self.seen_jti:
            return self.refuse("jti replayed")
        self.seen_jti.add(claims["jti"])
        self.accepted.append((header, claims))
        token = f"access-{secrets.token_urlsafe(16)}"
        self.issued.append(token)
        body: dict[str, Any] = {"access_token": token, "token_type": "bearer", "scope": form["scope"]}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        return Response(json.dumps(body), status=200, content_type="application/json")


@pytest.fixture
def server(httpserver: HTTPServer) -> TokenServer:
    return TokenServer(httpserver)


def write_pem(path: Path, key: Any) -> Path:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


def private_jwk(key: Any, kid: str | None) -> dict[str, Any]:
    algorithm = RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else ECAlgorithm
    jwk: dict[str, Any] = algorithm.to_jwk(key, as_dict=True)
    if kid:
        jwk["kid"] = kid
    return jwk


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def smart(server: TokenServer, key_path: Path, client_id: str = "rsa-client", **kwargs: Any) -> SmartBackendAuth:
    kwargs.setdefault("token_endpoint", server.url)
    return SmartBackendAuth(requests.Session(), server.fhir_base, client_id, key_path, **kwargs)


def test_discovers_the_token_endpoint_from_smart_configuration(server: TokenServer, tmp_path: Path) -> None:
    auth = smart(server, write_pem(tmp_path / "k.pem", RSA_KEY), kid="rsa-kid", token_endpoint=None)
    assert auth.headers() == {"Authorization": f"Bearer {server.issued[0]}"}
    assert server.discovery_requests() == 1
    assert auth.token_endpoint == server.url


def test_rs384_pem_key_gets_a_token(server: TokenServer, tmp_path: Path) -> None:
    auth = smart(server, write_pem(tmp_path / "k.pem", RSA_KEY), kid="rsa-kid")
    assert auth.headers() == {"Authorization": f"Bearer {server.issued[0]}"}
    header, claims = server.accepted[0]
    assert (header["alg"], header["kid"], claims["aud"]) == ("RS384", "rsa-kid", server.url)
    assert server.forms[0]["scope"] == "system/*.read"
    assert server.forms[0]["grant_type"] == "client_credentials"


@pytest.mark.parametrize("as_set", [False, True], ids=["jwk", "jwks"])
def test_es384_jwk_key_gets_a_token_with_the_jwk_kid(server: TokenServer, tmp_path: Path, as_set: bool) -> None:
    jwk = private_jwk(EC_KEY, "ec-kid")
    # a JWKS: the public half first; the first key with "d" is the one to sign with
    public = {k: v for k, v in jwk.items() if k != "d"}
    key_file = write_json(tmp_path / "k.json", {"keys": [public, jwk]} if as_set else jwk)
    auth = smart(server, key_file, client_id="ec-client")
    assert (auth.alg, auth.kid) == ("ES384", "ec-kid")
    assert auth.headers() == {"Authorization": f"Bearer {server.issued[0]}"}
    assert server.accepted[0][0]["alg"] == "ES384"


def test_an_rsa_jwk_signs_rs384_whatever_alg_it_names(server: TokenServer, tmp_path: Path) -> None:
    key_file = write_json(tmp_path / "k.json", private_jwk(RSA_KEY, "rsa-kid") | {"alg": "RS256"})
    auth = smart(server, key_file)
    assert auth.headers() == {"Authorization": f"Bearer {server.issued[0]}"}
    assert server.accepted[0][0]["alg"] == "RS384"


def test_a_key_other_than_the_registered_one_is_refused_with_invalid_client(
    server: TokenServer, tmp_path: Path
) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    auth = smart(server, write_pem(tmp_path / "other.pem", other), kid="rsa-kid")
    with pytest.raises(AuthError, match=r"HTTP 401: invalid_client: signature does not verify") as caught:
        auth.headers()
    assert server.url in str(caught.value)
    assert caught.value.exit_code == 1


def test_operation_outcome_diagnostics_are_quoted(server: TokenServer, tmp_path: Path) -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "diagnostics": "client disabled"}]}
    server.override = (403, outcome)
    auth = smart(server, write_pem(tmp_path / "k.pem", RSA_KEY), kid="rsa-kid")
    with pytest.raises(AuthError, match=r"HTTP 403: client disabled"):
        auth.headers()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"token_type": "bearer", "expires_in": 60}, "no usable access_token"),
        ({"access_token": "has space", "token_type": "bearer"}, "no usable access_token"),
        ({"access_token": "abc", "token_type": "DPoP"}, "token_type 'DPoP'"),
    ],
)
def test_unusable_token_responses_are_errors(server: TokenServer, tmp_path: Path, body: Any, message: str) -> None:
    server.override = (200, body)
    auth = smart(server, write_pem(tmp_path / "k.pem", RSA_KEY), kid="rsa-kid")
    with pytest.raises(AuthError, match=message):
        auth.headers()


def test_token_is_cached(server: TokenServer, tmp_path: Path) -> None:
    auth = smart(server, write_pem(tmp_path / "k.pem", RSA_KEY), kid="rsa-kid", token_endpoint=None)
    first = auth.headers()
    assert auth.headers() == first
    assert auth.headers() == first
    assert len(server.forms) == 1
    assert server.discovery_requests() == 1


def test_token_is_refreshed_within_60_s_of_expiry(server: TokenServer, tmp_path: Path) -> None:
    clock = FakeClock()
    server.now, server.expires_in = clock, 120
    auth = smart(server, write_pem(tmp_path / "k.pem", RSA_KEY), kid="rsa-kid", clock=clock)
    first = auth.headers()
    clock.t += 59  # 61 s left: still good
    assert auth.headers() == first
    assert len(server.forms) == 1
    clock.t += 2  # 59 s left: time for a new one, with a new assertion
    second = auth.headers()
    assert len(server.forms) == 2
    assert second == {"Authorization": f"Bearer {server.issued[1]}"} != first
    assert server.accepted[0][1]["jti"] != server.accepted[1][1]["jti"]
    assert server.accepted[1][1]["exp"] == int(clock.t) + 240  # 4 minutes: inside the 5 SMART allows


def test_expires_in_defaults_to_300_s(server: TokenServer, tmp_path: Path) -> None:
    clock = FakeClock()
    server.now, server.expires_in = clock, None
    auth = smart(server, write_pem(tmp_path / "k.pem", RSA_KEY), kid="rsa-kid", clock=clock)
    auth.headers()
    clock.t += 239
    auth.headers()
    assert len(server.forms) == 1
    clock.t += 2
    auth.headers()
    assert len(server.forms) == 2


def test_invalidate_forces_a_new_token(server: TokenServer, tmp_path: Path) -> None:
    auth = smart(server, write_pem(tmp_path / "k.pem", RSA_KEY), kid="rsa-kid", token_endpoint=None)
    first = auth.headers()
    auth.invalidate()
    second = auth.headers()
    assert len(server.forms) == 2
    assert second != first
    assert second == {"Authorization": f"Bearer {server.issued[1]}"}
    assert server.discovery_requests() == 1  # the endpoint is remembered; only the token is not


def test_a_replayed_jti_is_refused(server: TokenServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # proves the endpoint would catch a client that reused its jti
    fixed = uuid.uuid4()
    monkeypatch.setattr(uuid, "uuid4", lambda: fixed)
    auth = smart(server, write_pem(tmp_path / "k.pem", RSA_KEY), kid="rsa-kid")
    auth.headers()
    auth.invalidate()
    with pytest.raises(AuthError, match="invalid_client: jti replayed"):
        auth.headers()


def test_secrets_never_appear_in_repr_errors_or_logs(
    server: TokenServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    pem = write_pem(tmp_path / "k.pem", RSA_KEY)
    auth = smart(server, pem, kid="rsa-kid")
    auth.headers()
    token = server.issued[0]
    pem_body = pem.read_text().splitlines()[1]
    assert token not in repr(auth) and pem_body not in repr(auth)
    assert "rsa-client" in repr(auth)

    server.echo_assertion = True
    auth.invalidate()
    with pytest.raises(AuthError, match="invalid_client: cannot use assertion <hidden>") as caught:
        auth.headers()
    assertion = server.forms[-1]["client_assertion"]
    assert assertion not in str(caught.value)
    assert assertion not in caplog.text and token not in caplog.text

    # PyJWT's own message would quote the whole JWK, private exponent included
    broken = {k: v for k, v in private_jwk(RSA_KEY, "rsa-kid").items() if k != "kty"}
    with pytest.raises(AuthError) as caught:
        smart(server, write_json(tmp_path / "broken.json", broken))
    assert broken["d"] not in str(caught.value)

    static = BearerToken("s3cret-token")
    assert "s3cret-token" not in repr(static)


def test_bearer_token_from_env_var_and_from_file(tmp_path: Path) -> None:
    from_env = BearerToken.from_env_or_file(environ={"COHORT_FINDER_TOKEN": "abc.def"})
    assert from_env is not None and from_env.headers() == {"Authorization": "Bearer abc.def"}
    (tmp_path / "token").write_text("  xyz.123\n")
    from_file = BearerToken.from_env_or_file(environ={"COHORT_FINDER_TOKEN_FILE": str(tmp_path / "token")})
    assert from_file is not None and from_file.headers() == {"Authorization": "Bearer xyz.123"}
    from_file.invalidate()  # a static token stays what it is
    assert from_file.headers() == {"Authorization": "Bearer xyz.123"}
    assert BearerToken.from_env_or_file(environ={}) is None
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(AuthError, match="empty"):
        BearerToken.from_env_or_file(environ={"COHORT_FINDER_TOKEN_FILE": str(tmp_path / "empty")})
    with pytest.raises(AuthError, match="missing"):
        BearerToken.from_env_or_file(environ={"COHORT_FINDER_TOKEN_FILE": str(tmp_path / "missing")})


def test_auth_from_environment_picks_the_mode(server: TokenServer, tmp_path: Path) -> None:
    session = requests.Session()
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    key_file = write_json(tmp_path / "k.json", private_jwk(EC_KEY, None))

    assert isinstance(auth_from_environment(session, server.fhir_base, environ={}), NoAuth)
    assert auth_from_environment(session, server.fhir_base, environ={}).headers() == {}
    by_env = auth_from_environment(session, server.fhir_base, environ={"COHORT_FINDER_TOKEN": "from-env"})
    assert isinstance(by_env, BearerToken) and by_env.headers() == {"Authorization": "Bearer from-env"}
    by_file = auth_from_environment(session, server.fhir_base, environ={"COHORT_FINDER_TOKEN_FILE": str(token_file)})
    assert isinstance(by_file, BearerToken) and by_file.headers() == {"Authorization": "Bearer from-file"}

    smart_env = {
        "COHORT_FINDER_SMART_CLIENT_ID": "ec-client",
        "COHORT_FINDER_SMART_KEY_FILE": str(key_file),
        "COHORT_FINDER_SMART_ALG": "ES384",
        "COHORT_FINDER_SMART_KID": "ec-kid",
        "COHORT_FINDER_SMART_SCOPE": "system/Patient.rs system/Observation.rs",
        "COHORT_FINDER_SMART_TOKEN_URL": server.url,
        "COHORT_FINDER_TOKEN": "ignored: SMART comes first",
    }
    chosen = auth_from_environment(session, server.fhir_base, environ=smart_env)
    assert isinstance(chosen, SmartBackendAuth)
    assert chosen.headers() == {"Authorization": f"Bearer {server.issued[0]}"}
    assert server.forms[0]["scope"] == "system/Patient.rs system/Observation.rs"
    assert server.accepted[0][0]["kid"] == "ec-kid"
    assert server.discovery_requests() == 0

    with pytest.raises(AuthError, match=r"SMART_KEY_FILE .* or COHORT_FINDER_SMART_CLIENT_SECRET_FILE"):
        auth_from_environment(session, server.fhir_base, environ={"COHORT_FINDER_SMART_CLIENT_ID": "ec-client"})
    with pytest.raises(AuthError, match="needs COHORT_FINDER_SMART_CLIENT_ID"):
        auth_from_environment(session, server.fhir_base, environ={"COHORT_FINDER_SMART_KEY_FILE": str(key_file)})
    both = {**smart_env, "COHORT_FINDER_SMART_CLIENT_SECRET": "s3cret-value"}
    with pytest.raises(AuthError, match="not both"):
        auth_from_environment(session, server.fhir_base, environ=both)


def _ed25519_jwk() -> dict[str, Any]:
    from jwt.algorithms import OKPAlgorithm

    jwk: dict[str, Any] = OKPAlgorithm.to_jwk(ed25519.Ed25519PrivateKey.generate(), as_dict=True)
    return jwk | {"kid": "k"}


def _public_pem(path: Path) -> None:
    public = RSA_KEY.public_key()
    path.write_bytes(public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


@pytest.mark.parametrize(
    ("make_key_file", "alg", "message"),
    [
        pytest.param(lambda p: write_pem(p, P256), "ES384", "P-384", id="p256-es384"),
        pytest.param(lambda p: write_pem(p, P256), "RS256", "ES key and cannot sign RS256", id="p256-rs256"),
        pytest.param(
            lambda p: write_pem(p, ed25519.Ed25519PrivateKey.generate()), None, "Ed25519.* not supported", id="ed-pem"
        ),
        pytest.param(lambda p: write_json(p, _ed25519_jwk()), None, "not supported", id="ed-jwk"),
        pytest.param(lambda p: write_pem(p, RSA_KEY), "ES384", "RS key and cannot sign ES384", id="rsa-es384"),
        pytest.param(lambda p: write_pem(p, EC_KEY), "RS384", "ES key and cannot sign RS384", id="ec-rs384"),
        pytest.param(lambda p: write_pem(p, RSA_KEY), "PS256", "PS256' is not supported", id="ps256"),
        pytest.param(
            lambda p: write_pem(p, ec.generate_private_key(ec.SECP521R1())),
            None,
            "secp521r1 is not supported",
            id="p521",
        ),
        pytest.param(
            lambda p: write_pem(p, rsa.generate_private_key(public_exponent=65537, key_size=1024)),
            None,
            "shorter than 2048",
            id="rsa1024",
        ),
        pytest.param(
            lambda p: write_json(p, {"keys": [{"kty": "EC", "crv": "P-384", "x": "a", "y": "b"}]}),
            None,
            "no private key",
            id="jwks-without-d",
        ),
        pytest.param(lambda p: p.write_text("not a key"), None, "neither a PEM private key", id="junk"),
        pytest.param(_public_pem, None, "neither a PEM private key", id="public-pem"),
    ],
)
def test_unsupported_keys_are_refused(tmp_path: Path, make_key_file: Any, alg: str | None, message: str) -> None:
    path = tmp_path / "key"
    make_key_file(path)
    with pytest.raises(AuthError, match=message):
        SmartBackendAuth(requests.Session(), "https://fhir.example.org", "c", path, alg=alg, kid="k")


def test_a_key_without_kid_or_a_cleartext_token_endpoint_is_refused(tmp_path: Path) -> None:
    pem = write_pem(tmp_path / "k.pem", RSA_KEY)
    with pytest.raises(AuthError, match="COHORT_FINDER_SMART_KID"):
        SmartBackendAuth(requests.Session(), "https://fhir.example.org", "c", pem)
    with pytest.raises(AuthError, match="not https"):
        SmartBackendAuth(
            requests.Session(),
            "https://fhir.example.org",
            "c",
            pem,
            kid="k",
            token_endpoint="http://auth.example.org/t",
        )


def test_failed_discovery_says_how_to_give_the_token_endpoint(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_request("/fhir/.well-known/smart-configuration").respond_with_data("no", status=404)
    auth = SmartBackendAuth(
        requests.Session(), httpserver.url_for("/fhir"), "c", write_pem(tmp_path / "k.pem", RSA_KEY), kid="k"
    )
    with pytest.raises(AuthError, match="HTTP 404; set COHORT_FINDER_SMART_TOKEN_URL"):
        auth.headers()


def test_rs256_when_asked_and_p256_keys_sign_es256(server: TokenServer, tmp_path: Path) -> None:
    auth = smart(server, write_pem(tmp_path / "k.pem", RSA_KEY), kid="rsa-kid", alg="RS256")
    auth.headers()
    p256 = smart(server, write_pem(tmp_path / "p.pem", P256), "p256-client", kid="p256-kid")
    p256.headers()
    assert [h["alg"] for h, _ in server.accepted] == ["RS256", "ES256"]


def test_a_token_endpoint_that_fails_is_asked_again_with_a_fresh_jti(server: TokenServer, tmp_path: Path) -> None:
    server.fail_next = [503, 502]
    waits: list[float] = []
    auth = smart(server, write_pem(tmp_path / "k.pem", RSA_KEY), kid="rsa-kid", sleep=waits.append)
    assert auth.headers() == {"Authorization": f"Bearer {server.issued[0]}"}
    assert len(server.forms) == 3 and len(waits) == 2
    jtis = {jwt.decode(f["client_assertion"], options={"verify_signature": False})["jti"] for f in server.forms}
    assert len(jtis) == 3  # never the same assertion twice


def test_a_token_endpoint_that_keeps_failing_is_an_auth_error(server: TokenServer, tmp_path: Path) -> None:
    server.fail_next = [503, 503, 503]
    auth = smart(server, write_pem(tmp_path / "k.pem", RSA_KEY), kid="rsa-kid", sleep=lambda s: None)
    with pytest.raises(AuthError, match="HTTP 503"):
        auth.headers()


def test_client_secret_is_sent_as_basic(server: TokenServer, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRETS["secret-client"] + "\n")
    env = {
        "COHORT_FINDER_SMART_CLIENT_ID": "secret-client",
        "COHORT_FINDER_SMART_CLIENT_SECRET_FILE": str(secret_file),
        "COHORT_FINDER_SMART_TOKEN_URL": server.url,
    }
    auth = auth_from_environment(requests.Session(), server.fhir_base, environ=env, types=["Patient", "Condition"])
    assert isinstance(auth, ClientSecretAuth)
    assert auth.headers() == {"Authorization": f"Bearer {server.issued[0]}"}
    assert server.forms[0]["scope"] == "system/Condition.read system/Patient.read"  # v1: nothing said v2
    assert "client_secret" not in server.forms[0] and SECRETS["secret-client"] not in repr(auth)
    wrong = ClientSecretAuth(requests.Session(), server.fhir_base, "secret-client", "nope", token_endpoint=server.url)
    with pytest.raises(AuthError, match="bad client secret") as caught:
        wrong.headers()
    assert "nope" not in str(caught.value)


def test_scopes_per_type_v2_when_the_server_says_so_and_wide_for_bulk(httpserver: HTTPServer, tmp_path: Path) -> None:
    server = TokenServer(httpserver)
    httpserver.clear_all_handlers()
    httpserver.expect_request("/auth/token", method="POST").respond_with_handler(server.handle)
    httpserver.expect_request("/fhir/.well-known/smart-configuration").respond_with_json(
        {"token_endpoint": server.url, "capabilities": ["client-confidential-asymmetric", "permission-v2"]}
    )
    auth = smart(server, write_pem(tmp_path / "k.pem", RSA_KEY), kid="rsa-kid", token_endpoint=None,
                 types=["Observation", "Patient"])  # fmt: skip
    auth.headers()
    assert server.forms[-1]["scope"] == "system/Observation.rs system/Patient.rs"
    auth.widen()  # a Bulk export
    auth.headers()
    assert server.forms[-1]["scope"] == "system/*.rs"
    given = smart(server, write_pem(tmp_path / "k2.pem", RSA_KEY), kid="rsa-kid", scope="system/*.read",
                  types=["Observation"])  # fmt: skip
    given.headers()
    given.widen()
    given.headers()
    assert server.forms[-1]["scope"] == "system/*.read"  # a scope the site set is never changed
