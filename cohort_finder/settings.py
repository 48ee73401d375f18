"""Settings for server sources: a TOML config file, overridden by the environment.

Config keys are the environment variable names without the `COHORT_FINDER_` prefix, in
lower case, so one name means one thing everywhere:

    [server]                      # COHORT_FINDER_TIMEOUT, COHORT_FINDER_RETRIES, ...
    timeout = 120
    retries = 5
    max_retry_after = 300         # seconds: a longer Retry-After waits this long
    page_size = 1000
    ca_bundle = "/etc/ssl/hospital-ca.pem"

    [auth]                        # COHORT_FINDER_SMART_CLIENT_ID, COHORT_FINDER_TOKEN_FILE, ...
    smart_client_id = "cohort-finder"
    smart_key_file = "/etc/cohort-finder/key.pem"
    smart_scope = "system/*.read"
    token_file = "/run/secrets/fhir-token"

Secrets come from the environment or from files, never from the command line (`ps` shows
it); a literal token in the config file is refused for the same reason as a command-line one
would be: config files get copied around. Use `token_file`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError
from .sources.http import HttpSettings

PREFIX = "COHORT_FINDER_"
_SECTIONS = {
    "server": {"timeout", "connect_timeout", "retries", "page_size", "ca_bundle", "max_retry_after"},
    "auth": {
        "smart_client_id",
        "smart_key_file",
        "smart_alg",
        "smart_kid",
        "smart_scope",
        "smart_token_url",
        "smart_client_secret_file",
        "token_file",
    },
}


@dataclass(frozen=True, slots=True)
class ServerSettings:
    http: HttpSettings
    page_size: int
    environ: Mapping[str, str]  # what auth reads: the environment over the config file


def load_settings(config: Path | None, environ: Mapping[str, str] = os.environ) -> ServerSettings:
    values: dict[str, str] = {}
    if config is not None:
        try:
            data = tomllib.loads(config.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(f"{config}: cannot read config: {exc}") from exc
        for section, table in data.items():
            if section not in _SECTIONS or not isinstance(table, dict):
                raise UsageError(f"{config}: unknown section [{section}] (known: {', '.join(_SECTIONS)})")
            for key, value in table.items():
                if key == "token":
                    raise UsageError(f"{config}: a token must not sit in the config file: use token_file")
                if key not in _SECTIONS[section]:
                    raise UsageError(f"{config}: [{section}] has no setting '{key}'")
                values[PREFIX + key.upper()] = str(value)
    merged = {**values, **{k: v for k, v in environ.items() if k.startswith(PREFIX)}}

    def number(name: str, default: float) -> float:
        raw = merged.get(PREFIX + name)
        try:
            return float(raw) if raw is not None else default
        except ValueError as exc:
            raise UsageError(f"{PREFIX}{name} must be a number, not {raw!r}") from exc

    http = HttpSettings(
        connect_timeout=number("CONNECT_TIMEOUT", 10.0),
        read_timeout=number("TIMEOUT", 120.0),
        retries=int(number("RETRIES", 5)),
        verify=merged.get(PREFIX + "CA_BUNDLE") or True,
        max_retry_after=number("MAX_RETRY_AFTER", 300.0),
    )
    return ServerSettings(http, int(number("PAGE_SIZE", 1000)), merged)
