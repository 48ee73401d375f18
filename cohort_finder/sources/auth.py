"""Authentication for FHIR servers: none, a static bearer token, SMART Backend Services, or
OAuth client-credentials with a client secret.

SMART Backend Services (SMART App Launch v2) is OAuth client-credentials where the client
proves who it is with a short-lived JWT signed by its private key (RS384 or ES384, and RS256 or
ES256 where a site registered such a key). Oracle Health also issues client secrets, sent as
HTTP Basic (RFC 6749 §2.3.1). Secrets
(tokens, keys) come only from the environment or files (contract §5) and never appear in a
message, a log line or a repr: an error message may end up in a ticket or a cron mail.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..errors import AuthError

log = logging.getLogger(__name__)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# SMART: the assertion's exp is at most 5 minutes ahead; 4 leaves room for clocks that differ
ASSERTION_LIFETIME = 240
TOKEN_ATTEMPTS = 3  # a token endpoint that answers 5xx is asked again, with a fresh assertion
REFRESH_MARGIN = 60.0  # fetch a new token this long before the old one expires
DEFAULT_EXPIRES_IN = 300  # when the server does not say
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")  # printable, no spaces: safe in a header
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
_ALGORITHMS = ("RS384", "ES384", "RS256", "ES256")
_EC_ALGORITHM = {"secp384r1": "ES384", "secp256r1": "ES256"}
_EC_CURVE = {"ES384": "P-384", "ES256": "P-256"}


class Auth(Protocol):
    def headers(self) -> dict[str, str]:
        """Headers for the next request; fetches or refreshes a token when needed."""
        ...

    def invalidate(self) -> None:
        """After a 401: the next headers() fetches a new token (no-op for static tokens)."""
        ...


class NoAuth:
    def headers(self) -> dict[str, str]:
        return {}

    def invalidate(self) -> None:
        pass

    def __repr__(self) -> str:
        return "NoAuth()"


class BearerToken:
    """A static token, e.g. from a vault. A 401 cannot be fixed by asking again."""

    def __init__(self, token: str) -> None:
        token = token.strip()
        if not _TOKEN_CHARS.fullmatch(token):
            raise AuthError("the bearer token is empty or holds spaces or control characters")
        self._token = token

    @classmethod
    def from_env_or_file(
        cls,
        env_var: str = "COHORT_FINDER_TOKEN",
        file_env_var: str = "COHORT_FINDER_TOKEN_FILE",
        environ: Mapping[str, str] | None = None,
    ) -> BearerToken | None:
        """The token in `env_var`, else the content of the file named by `file_env_var`, else None."""
        env = os.environ if environ is None else environ
        if env.get(env_var, "").strip():
            return cls(env[env_var])
        file_name = env.get(file_env_var, "").strip()
        if not file_name:
            return None
        try:
            text = Path(file_name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AuthError(f"{file_env_var}: cannot read {file_name}: {_reason(exc)}") from None
        if not text.strip():
            raise AuthError(f"{file_env_var}: {file_name} is empty")
        return cls(text)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def invalidate(self) -> None:
        pass

    def __repr__(self) -> str:
        return "BearerToken(token=<hidden>)"


class _ClientCredentials:
    """OAuth client-credentials against a SMART server's token endpoint: discovery, the token
    request (retried on 5xx with fresh credentials), caching and refreshing the token. How the
    client proves who it is: the subclasses."""

    kind = "OAuth"

    def __init__(
        self,
        session: requests.Session,
        fhir_base: str,
        client_id: str,
        *,
        scope: str | None = None,
        types: Collection[str] = (),
        token_endpoint: str | None = None,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not client_id:
            raise AuthError(f"{self.kind} client id is empty")
        # token requests get a session of their own without urllib3's retries: a retried POST
        # would resend the same assertion, whose jti the server then refuses as replayed
        self._session = requests.Session()
        self._session.verify = session.verify
        self._session.cert = session.cert
        self._session.proxies = dict(session.proxies)
        self._fhir_base = fhir_base.rstrip("/")
        self.client_id = client_id
        self._asked_scope = scope
        self._types = tuple(sorted(set(types)))
        self._v2 = False
        self.scope = scope or _scopes(self._types, v2=False)
        self.token_endpoint = _checked_endpoint(token_endpoint) if token_endpoint else None
        self._timeout = timeout
        self._clock = clock
        self._sleep = sleep
        self._token: str | None = None
        self._refresh_at = 0.0
        # REST and Bulk code may fetch pages from threads: one token request at a time
        self._lock = threading.Lock()

    def headers(self) -> dict[str, str]:
        with self._lock:
            if self._token is None or self._clock() >= self._refresh_at:
                self._token, self._refresh_at = self._fetch_token()
            return {"Authorization": f"Bearer {self._token}"}

    def invalidate(self) -> None:
        with self._lock:
            self._token = None

    def widen(self) -> None:
        """Read access to every type (`system/*.rs` or `.read`), unless a scope was given: for
        a Bulk export, whose status and file URLs belong to no one resource type."""
        with self._lock:
            if self._asked_scope is None and self._types:
                self._types = ()
                self.scope = _scopes((), v2=self._v2)
                self._token = None

    def _discover(self) -> str:
        url = f"{self._fhir_base}/.well-known/smart-configuration"
        hint = "set COHORT_FINDER_SMART_TOKEN_URL to give the token endpoint"
        try:
            response = self._session.get(url, headers={"Accept": "application/json"}, timeout=self._timeout)
        except requests.RequestException as exc:
            raise AuthError(f"SMART discovery at {url} failed: {_reason(exc)}; {hint}") from None
        if response.status_code != 200:
            raise AuthError(f"SMART discovery at {url} failed: HTTP {response.status_code}; {hint}")
        body = _json(response)
        endpoint = body.get("token_endpoint") if isinstance(body, dict) else None
        if not isinstance(endpoint, str) or not endpoint:
            raise AuthError(f"SMART discovery at {url} gave no token_endpoint; {hint}")
        if self._asked_scope is None and _offers_v2(body):
            self._v2 = True
            self.scope = _scopes(self._types, v2=True)
        return _checked_endpoint(endpoint)

    def _credentials(self, endpoint: str, now: float) -> tuple[dict[str, str], dict[str, str], tuple[str, ...]]:
        """(form fields, headers, secrets to keep out of messages) proving who the client is."""
        raise NotImplementedError

    def _fetch_token(self) -> tuple[str, float]:
        if self.token_endpoint is None:
            self.token_endpoint = self._discover()
        endpoint = self.token_endpoint
        for attempt in range(1, TOKEN_ATTEMPTS + 1):
            now = self._clock()  # before the request: the server's clock starts no earlier
            fields, headers, secrets = self._credentials(endpoint, now)  # fresh each attempt
            form = {"grant_type": "client_credentials", "scope": self.scope, **fields}
            try:
                # no redirects: an assertion's aud names this URL and must go nowhere else
                response = self._session.post(
                    endpoint,
                    data=form,
                    headers={"Accept": "application/json", **headers},
                    timeout=self._timeout,
                    allow_redirects=False,
                )
            except requests.RequestException as exc:
                if attempt < TOKEN_ATTEMPTS:
                    log.info("%s token request failed (%s): asking again", self.kind, type(exc).__name__)
                    self._sleep(float(attempt))
                    continue
                raise AuthError(f"{self.kind} token request to {endpoint} failed: {_reason(exc)}") from None
            if response.status_code >= 500 and attempt < TOKEN_ATTEMPTS:
                log.info("%s token endpoint answered HTTP %d: asking again", self.kind, response.status_code)
                self._sleep(float(attempt))
                continue
            return self._token_from(response, endpoint, now, secrets)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _token_from(
        self, response: requests.Response, endpoint: str, now: float, secrets: tuple[str, ...]
    ) -> tuple[str, float]:
        body = _json(response)
        if response.status_code != 200:
            detail = _scrub(_failure_detail(body), *secrets)
            raise AuthError(f"{self.kind} token request to {endpoint} failed: HTTP {response.status_code}: {detail}")
        if not isinstance(body, dict):
            raise AuthError(f"{self.kind} token endpoint {endpoint} answered 200 without a JSON object")
        token = body.get("access_token")
        if not isinstance(token, str) or not _TOKEN_CHARS.fullmatch(token):
            raise AuthError(f"{self.kind} token endpoint {endpoint} gave no usable access_token")
        token_type = body.get("token_type", "bearer")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise AuthError(f"{self.kind} token endpoint {endpoint} gave token_type {token_type!r}, not bearer")
        lifetime = _expires_in(body.get("expires_in"))
        log.info("%s access token from %s, expires in %d s", self.kind, endpoint, lifetime)
        # a short-lived token is refreshed half-way rather than on every request
        return token, now + lifetime - min(REFRESH_MARGIN, lifetime / 2)


class SmartBackendAuth(_ClientCredentials):
    """SMART Backend Services: client-credentials with a private_key_jwt client assertion.

    The key is loaded at once, so a bad key file fails before any request; the token
    endpoint is discovered and the token fetched on the first headers().
    """

    kind = "SMART"

    def __init__(
        self,
        session: requests.Session,
        fhir_base: str,
        client_id: str,
        key_path: Path,
        *,
        alg: str | None = None,
        kid: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.key_path = Path(key_path)
        self._key, self.alg, self.kid = _load_key(self.key_path, alg, kid)
        super().__init__(session, fhir_base, client_id, **kwargs)

    def __repr__(self) -> str:
        return (
            f"SmartBackendAuth(client_id={self.client_id!r}, key_path={str(self.key_path)!r}, alg={self.alg!r}, "
            f"kid={self.kid!r}, token_endpoint={self.token_endpoint!r}, token=<hidden>)"
        )

    def _assertion(self, endpoint: str, now: float) -> str:
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": endpoint,
            "iat": int(now),
            "exp": int(now) + ASSERTION_LIFETIME,
            # fresh every time, retries included: the server refuses a replayed jti
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._key, algorithm=self.alg, headers={"typ": "JWT", "kid": self.kid})

    def _credentials(self, endpoint: str, now: float) -> tuple[dict[str, str], dict[str, str], tuple[str, ...]]:
        assertion = self._assertion(endpoint, now)
        return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}, {}, (assertion,)


class ClientSecretAuth(_ClientCredentials):
    """OAuth client-credentials with a client secret sent as HTTP Basic (RFC 6749 §2.3.1), as
    Oracle Health and Azure issue them. The secret comes from a file or the environment."""

    kind = "OAuth"

    def __init__(self, session: requests.Session, fhir_base: str, client_id: str, secret: str, **kwargs: Any) -> None:
        if not secret.strip() or not _TOKEN_CHARS.fullmatch(secret.strip()):
            raise AuthError("the client secret is empty or holds spaces or control characters")
        self._secret = secret.strip()
        super().__init__(session, fhir_base, client_id, **kwargs)

    def __repr__(self) -> str:
        return (
            f"ClientSecretAuth(client_id={self.client_id!r}, token_endpoint={self.token_endpoint!r}, secret=<hidden>)"
        )

    def _credentials(self, endpoint: str, now: float) -> tuple[dict[str, str], dict[str, str], tuple[str, ...]]:
        # RFC 6749 §2.3.1: id and secret form-urlencoded, then Basic
        pair = f"{quote(self.client_id, safe='')}:{quote(self._secret, safe='')}"
        basic = "Basic " + base64.b64encode(pair.encode()).decode()
        return {}, {"Authorization": basic}, (self._secret, basic)


def _offers_v2(configuration: dict[str, Any]) -> bool:
    """The server's smart-configuration says it takes SMART v2 scopes (system/Observation.rs)."""
    capabilities = configuration.get("capabilities")
    scopes = configuration.get("scopes_supported")
    if isinstance(capabilities, list) and "permission-v2" in capabilities:
        return True
    return isinstance(scopes, list) and any(
        isinstance(s, str) and re.fullmatch(r"system/.+\.c?r?u?d?s?", s) and not s.endswith((".read", ".write", ".*"))
        for s in scopes
    )


def _scopes(types: Collection[str], v2: bool) -> str:
    """Read access to each type the run reads: `system/Observation.rs` (v2) or `.read` (v1);
    `system/*.read` when the run names none."""
    if not types:
        return "system/*.rs" if v2 else "system/*.read"
    return " ".join(f"system/{t}.{'rs' if v2 else 'read'}" for t in sorted(types))


def auth_from_environment(
    session: requests.Session,
    fhir_base: str,
    environ: Mapping[str, str] = os.environ,
    types: Collection[str] = (),
) -> Auth:
    """SMART Backend Services if a client id and key file are set, OAuth with a client secret if
    a client id and secret are, else a bearer token if one is set, else none. `types`: the
    resource types the run reads, for per-type scopes (unless COHORT_FINDER_SMART_SCOPE)."""

    def get(name: str) -> str | None:
        return environ.get(f"COHORT_FINDER_{name}", "").strip() or None

    client_id, key_file = get("SMART_CLIENT_ID"), get("SMART_KEY_FILE")
    secret = get("SMART_CLIENT_SECRET") or _secret_file(get("SMART_CLIENT_SECRET_FILE"))
    common: dict[str, Any] = {"scope": get("SMART_SCOPE"), "types": types, "token_endpoint": get("SMART_TOKEN_URL")}
    if client_id or key_file or secret:
        if not client_id:
            raise AuthError("a SMART key file or client secret needs COHORT_FINDER_SMART_CLIENT_ID")
        if key_file and secret:
            raise AuthError("give a SMART key file or a client secret, not both")
        if secret:
            return ClientSecretAuth(session, fhir_base, client_id, secret, **common)
        if not key_file:
            raise AuthError(
                "SMART needs COHORT_FINDER_SMART_KEY_FILE (a private key) or COHORT_FINDER_SMART_CLIENT_SECRET_FILE"
            )
        return SmartBackendAuth(
            session, fhir_base, client_id, Path(key_file), alg=get("SMART_ALG"), kid=get("SMART_KID"), **common
        )
    return BearerToken.from_env_or_file(environ=environ) or NoAuth()


def _secret_file(name: str | None) -> str | None:
    if name is None:
        return None
    try:
        text = Path(name).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthError(f"COHORT_FINDER_SMART_CLIENT_SECRET_FILE: cannot read {name}: {_reason(exc)}") from None
    if not text:
        raise AuthError(f"COHORT_FINDER_SMART_CLIENT_SECRET_FILE: {name} is empty")
    return text


def _load_key(path: Path, alg: str | None, kid: str | None) -> tuple[PrivateKey, str, str]:
    """The signing key, its algorithm and kid. Messages name the file, never its content."""
    if alg is not None and alg not in _ALGORITHMS:
        raise AuthError(f"SMART alg {alg!r} is not supported: use {', '.join(_ALGORITHMS)}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise AuthError(f"cannot read SMART key file {path}: {_reason(exc)}") from None
    if raw.lstrip().startswith(b"{"):
        loaded, jwk_kid = _key_from_jwk(path, raw)
    else:
        loaded, jwk_kid = _key_from_pem(path, raw), None
    if isinstance(loaded, rsa.RSAPrivateKey):
        key: PrivateKey = loaded
        key_alg = alg if alg in ("RS256", "RS384") else "RS384"  # RS384 unless RS256 is asked for
        if loaded.key_size < 2048:
            raise AuthError(f"SMART key {path}: RSA keys shorter than 2048 bits are refused")
    elif isinstance(loaded, ec.EllipticCurvePrivateKey):
        # an EC key's curve decides its algorithm: P-384 signs ES384, P-256 ES256
        key, key_alg = loaded, _EC_ALGORITHM.get(loaded.curve.name, "")
        wanted = alg if alg in _EC_CURVE else None
        if wanted is not None and key_alg != wanted:
            raise AuthError(
                f"SMART key {path}: EC curve {loaded.curve.name} cannot sign {wanted} (needs {_EC_CURVE[wanted]})"
            )
        if not key_alg:
            raise AuthError(f"SMART key {path}: EC curve {loaded.curve.name} is not supported (use P-384 or P-256)")
    else:
        raise AuthError(f"SMART key {path}: a {type(loaded).__name__} key is not supported: use RSA or EC P-384")
    if alg is not None and alg != key_alg:
        raise AuthError(f"SMART key {path} is a {key_alg[:2]} key and cannot sign {alg}")
    kid = kid or jwk_kid
    if not kid:
        raise AuthError(f"SMART key {path} has no kid: set COHORT_FINDER_SMART_KID to the registered key's id")
    return key, key_alg, kid


def _key_from_pem(path: Path, raw: bytes) -> Any:
    try:
        return serialization.load_pem_private_key(raw, password=None)
    except TypeError:
        raise AuthError(f"SMART key {path} is encrypted: give an unencrypted key, readable by you only") from None
    except Exception:  # cryptography raises several kinds for data it cannot parse
        raise AuthError(f"SMART key {path} is neither a PEM private key nor a JWK/JWKS JSON file") from None


def _key_from_jwk(path: Path, raw: bytes) -> tuple[Any, str | None]:
    try:
        data = json.loads(raw)
    except ValueError:
        raise AuthError(f"SMART key {path} is not valid JSON") from None
    candidates = data.get("keys") if isinstance(data, dict) and "keys" in data else [data]
    if not isinstance(candidates, list):
        raise AuthError(f"SMART key {path}: 'keys' is not a list")
    private = next((k for k in candidates if isinstance(k, dict) and "d" in k), None)
    if private is None:
        raise AuthError(f'SMART key {path} holds no private key (no JWK with "d")')
    # the signing alg follows from the key type (and curve); a JWK's own "alg" must not stop the load
    algorithm = {"RSA": "RS384", "EC": "ES256" if private.get("crv") == "P-256" else "ES384"}.get(
        str(private.get("kty"))
    )
    try:
        jwk = jwt.PyJWK(private, algorithm=algorithm)
    except Exception:  # PyJWT's messages quote the whole JWK, private part included
        kty = private.get("kty")
        raise AuthError(f"SMART key {path}: cannot use its JWK (kty {kty!r}, crv {private.get('crv')!r})") from None
    kid = private.get("kid")
    return jwk.key, kid if isinstance(kid, str) else None


def _checked_endpoint(url: str) -> str:
    """The token goes back over this connection: https, or plain http to this machine only."""
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        return url
    raise AuthError(f"SMART token endpoint {url} is not https")


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _failure_detail(body: Any) -> str:
    """The OAuth error (RFC 6749 §5.2) or an OperationOutcome's diagnostics, if the body has one."""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        description = body.get("error_description")
        return f"{body['error']}: {description}" if isinstance(description, str) and description else body["error"]
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        texts = []
        issues = body.get("issue")
        for issue in issues if isinstance(issues, list) else []:
            if isinstance(issue, dict):
                details = issue.get("details")
                text = issue.get("diagnostics") or (details.get("text") if isinstance(details, dict) else None)
                if isinstance(text, str) and text:
                    texts.append(text)
        if texts:
            return "; ".join(texts)
    return "the response holds no OAuth error"


def _scrub(text: str, *secrets: str) -> str:
    """A server may echo what it was sent: never pass the assertion on. Also caps the length."""
    for secret in secrets:
        text = text.replace(secret, "<hidden>")
    return text[:500]


def _reason(exc: BaseException) -> str:
    """Why a file or a connection failed, without credentials a URL might carry (user:pass@)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return re.sub(r"//[^/@\s]+@", "//<hidden>@", f"{type(exc).__name__}: {exc}")[:300]


def _expires_in(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return int(value)
    return DEFAULT_EXPIRES_IN
