"""`cohort-finder serve`: start the review app (serve/app.py) with uvicorn.

Refuses to start without authentication (a token in COHORT_FINDER_SERVE_TOKEN or --token-file)
unless told --no-auth, and --no-auth only on a loopback address: PHI is never served to a
network without a login. Binds 127.0.0.1 by default; docs/review-app.md puts it behind a
hospital's reverse proxy.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

import click

from cohort_finder.cli_common import store_option
from cohort_finder.errors import UsageError

log = logging.getLogger(__name__)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command()
@store_option(default_text="COHORT_FINDER_STORE")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(1, 65535))
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File whose first line is the team token [default: env COHORT_FINDER_SERVE_TOKEN].")  # fmt: skip
@click.option("--no-auth", is_flag=True, help="No login at all: only on a loopback --host, for one person's machine.")
@click.option("--audit-log", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Who saw and changed what, ids only (JSON lines, 0600) [default: STORE.audit.jsonl]")  # fmt: skip
@click.option("--secure-cookie", is_flag=True, help="Mark the session cookie Secure (behind an HTTPS proxy).")
@click.option("--proxy", "proxies", multiple=True, metavar="IP",
              help="A reverse proxy whose X-Forwarded-For/-Proto to trust (repeatable).")  # fmt: skip
def serve(
    store_path: Path | None,
    host: str,
    port: int,
    token_file: Path | None,
    no_auth: bool,
    audit_log: Path | None,
    secure_cookie: bool,
    proxies: tuple[str, ...],
) -> None:
    """Serve the review app over a run store: the latest run of each trial, the history of runs
    and their diffs, and recording decisions."""
    from cohort_finder.serve.app import Config, create_app
    from cohort_finder.serve.security import load_token

    if store_path is None:
        raise UsageError("no run store: give --store PATH or set COHORT_FINDER_STORE")
    if not store_path.is_file():
        raise UsageError(f"{store_path}: no run store there (a run creates it)")
    token = load_token(token_file)
    if token is None and not no_auth:
        raise UsageError(
            "refusing to serve patient data without authentication: set COHORT_FINDER_SERVE_TOKEN "
            "or give --token-file (or --no-auth on 127.0.0.1 for one person's own machine)"
        )
    if token is None and not _loopback(host):
        raise UsageError(f"--no-auth serves only on a loopback address, not {host}")
    if token is not None and no_auth:
        raise UsageError("--no-auth and a token were both given: choose one")
    from cohort_finder.store import db

    db.connect(store_path).close()  # a store that cannot be used stops here, exit 2
    app = create_app(
        Config(
            store=store_path,
            token=token,
            audit=audit_log or store_path.with_name(store_path.name + ".audit.jsonl"),
            secure_cookie=secure_cookie,
        )
    )
    import uvicorn

    log.info("review app on http://%s:%d (%s)", host, port, "token login" if token else "no authentication")
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,  # request lines carry patient ids in paths: the audit log has them, 0600
        proxy_headers=bool(proxies),
        forwarded_allow_ips=list(proxies) or None,
        server_header=False,
    )
