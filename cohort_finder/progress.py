"""Progress for long runs: a bar on a terminal, a log line every few seconds otherwise (cron
logs), with counts and rates only: never anything from the record."""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)


class Progress:
    def __init__(self, total: int, what: str, every: float = 10.0, stream: Any = None) -> None:
        self.total, self.what, self.every = total, what, every
        self.done = 0
        self.started = self.last = time.monotonic()
        stream = stream if stream is not None else sys.stderr
        self.bar: Any = None
        if getattr(stream, "isatty", lambda: False)() and total > 0:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=f" {what}", file=stream, leave=False, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            rate = self.done / max(now - self.started, 1e-9)
            log.info("%d/%d %s (%.0f/s)", self.done, self.total, self.what, rate)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if self.bar is not None:
            self.bar.close()
