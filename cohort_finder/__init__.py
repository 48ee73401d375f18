"""cohort-finder: find clinical-trial candidates in FHIR R4 data.

The Python API (api.py): `cohort_finder.run(...)`, `cohort_finder.history(...)`,
`cohort_finder.diff(...)`, each with `.to_pandas()`. Imported on first use, so that the
command line does not pay for it.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "diff", "history", "run"]


def __getattr__(name: str) -> Any:
    if name in ("run", "history", "diff"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'cohort_finder' has no attribute {name!r}")
