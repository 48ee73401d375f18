"""Who may see the review app, and what they did: the team token, sessions, CSRF, the audit log.

PHI sits behind authentication from the first request (contract §5). One shared team token
(COHORT_FINDER_SERVE_TOKEN or a token file) opens a session: the login page asks for it and a
name (recorded with every decision), and sets an HttpOnly, SameSite=Strict cookie holding a
random session id, never the token. Scripts send the token as `Authorization: Bearer`; they
carry no ambient credential, so CSRF cannot ride on them. Every state-changing request made
with the cookie must carry the session's CSRF token (a hidden form field or X-CSRF-Token) and,
when the browser sends one, an Origin of this host. The audit log records who viewed and changed
what, with ids only, one JSON object a line (mode 0600).
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cohort_finder.errors import UsageError

COOKIE = "cohort_finder_session"
IDLE_SECONDS = 8 * 3600  # a session unused for a working day ends
MIN_TOKEN = 16  # characters: a token shorter than this is refused at start


def load_token(token_file: Path | None) -> str | None:
    """The team token: from --token-file (first line), else COHORT_FINDER_SERVE_TOKEN."""
    if token_file is not None:
        try:
            text = token_file.read_text(encoding="utf-8").strip().splitlines()
        except OSError as exc:
            raise UsageError(f"cannot read the token file {token_file}: {exc.strerror}") from None
        token = text[0].strip() if text else ""
    else:
        token = os.environ.get("COHORT_FINDER_SERVE_TOKEN", "").strip()
    if not token:
        return None
    if len(token) < MIN_TOKEN:
        raise UsageError(f"the serve token must be at least {MIN_TOKEN} characters (try: openssl rand -hex 32)")
    return token


def token_matches(expected: str | None, given: str | None) -> bool:
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())  # constant time


@dataclass
class Session:
    user: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    seen: float = field(default_factory=time.monotonic)


class Sessions:
    """Sessions in memory: a restart logs everyone out, which is the safe direction."""

    def __init__(self) -> None:
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def start(self, user: str) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        session = Session(user)
        with self._lock:
            self._by_id[sid] = session
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            session = self._by_id.get(sid)
            if session is None:
                return None
            now = time.monotonic()
            if now - session.seen > IDLE_SECONDS:
                del self._by_id[sid]
                return None
            session.seen = now
            return session

    def end(self, sid: str | None) -> None:
        with self._lock:
            self._by_id.pop(sid or "", None)


class AuditLog:
    """One JSON object a line: time, user, action and the ids it touched. Never names, notes or
    values from the record."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)

    def write(self, user: str | None, action: str, **ids: str | int | None) -> None:
        entry: dict[str, str | int | None] = {
            "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "user": user,
            "action": action,
        }
        entry.update({k: v for k, v in ids.items() if v is not None})
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as out:
            out.write(line)
