"""Lab unit conversion: UCUM arithmetic plus analyte-specific rules supplied as data.

A unit that cannot be converted is never guessed: the conversion result is None.
"""

from __future__ import annotations

import functools
import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["AnalyteUnits", "LinearConversion", "UnitConverter"]

_ANNOTATION = re.compile(r"\{[^{}]*\}")
_MICRO_SIGNS = str.maketrans({"\u00b5": "u", "\u03bc": "u"})
# Exact binary factors would otherwise leak float noise (10*9/L -> 10*3/mm3 is
# 0.9999999999999999), which flips "< 90" style thresholds at their boundary.
_FACTOR_SIGNIFICANT_DIGITS = 12

_Linear = tuple[float, float]  # (a, b): to = a * from + b
_IDENTITY: _Linear = (1.0, 0.0)


@dataclass(frozen=True, slots=True)
class LinearConversion:
    from_unit: str
    to_unit: str
    scale: float
    offset: float = 0.0  # to = scale * from + offset

    def __post_init__(self) -> None:
        # The inverse direction divides by scale.
        if not math.isfinite(self.scale) or self.scale == 0 or not math.isfinite(self.offset):
            raise ValueError(f"invalid conversion {self.from_unit} -> {self.to_unit}: scale {self.scale}")


@dataclass(frozen=True, slots=True)
class AnalyteUnits:
    equivalents: Mapping[str, str] = field(default_factory=dict)
    conversions: tuple[LinearConversion, ...] = ()


_REGISTRY_LOCK = threading.Lock()


@functools.cache
def _registry_unlocked() -> Any:
    from ucumvert import PintUcumRegistry

    return PintUcumRegistry()


def _registry() -> Any:
    # Building the registry takes ~1 s, so it is deferred to the first conversion (or built
    # by warm_up() while the engine reads the source); the lock keeps it to one build.
    with _REGISTRY_LOCK:
        return _registry_unlocked()


def ready() -> None:
    """Wait until the UCUM registry is built (building it here if nobody has started)."""
    _registry()


def warm_up() -> threading.Thread:
    """Build the UCUM registry in the background (the engine's scan releases the GIL)."""
    thread = threading.Thread(target=_registry, name="ucum-warm-up", daemon=True)
    thread.start()
    return thread


def _strip_annotations(code: str) -> str:
    # A bare annotation stands for unity ("mL/min/{1.73_m2}" -> "mL/min/1"); one attached
    # to a unit ("10*3{cells}") just disappears. Left in, "{ratio}" alone breaks ucumvert.
    def repl(match: re.Match[str]) -> str:
        start = match.start()
        return "1" if start == 0 or code[start - 1] in "./(" else ""

    return _ANNOTATION.sub(repl, code)


@functools.lru_cache(maxsize=4096)
def _ucum_factor(from_code: str, to_code: str) -> float | None:
    """Multiplier taking a value in from_code to to_code, or None if not convertible."""
    if from_code == to_code:
        return 1.0
    # Stricter than UCUM: annotations carry meaning here (mL/min is not a BSA-normalised eGFR).
    if sorted(_ANNOTATION.findall(from_code)) != sorted(_ANNOTATION.findall(to_code)):
        return None
    from lark.exceptions import LarkError
    from pint.errors import PintError

    ureg = _registry()
    try:
        ratio = ureg.from_ucum(_strip_annotations(from_code)) / ureg.from_ucum(_strip_annotations(to_code))
        factor = float(ratio.to("dimensionless").magnitude)
    # ucumvert and pint signal bad input with assorted types (parse errors, undefined,
    # mismatched or offset units, huge exponents, stray annotation tokens): all mean
    # "not convertible", never a crash.
    except (
        LarkError,
        PintError,
        ArithmeticError,
        AttributeError,
        TypeError,
        ValueError,
    ):
        return None
    if not math.isfinite(factor) or factor <= 0:
        return None
    return float(f"{factor:.{_FACTOR_SIGNIFICANT_DIGITS}g}")


class UnitConverter:
    def __init__(self, aliases: Mapping[str, str] | None = None) -> None:
        self._aliases: dict[str, str] = {}
        self._aliases_folded: dict[str, str] = {}
        for spelling, code in (aliases or {}).items():
            key = self._clean(spelling)
            self._aliases[key] = self._clean(code)
            self._aliases_folded.setdefault(key.casefold(), self._clean(code))
        self._normalized: dict[str, str] = {}

    @staticmethod
    def _clean(unit: str) -> str:
        return unit.strip().translate(_MICRO_SIGNS)

    def normalize(self, unit: str) -> str:
        cached = self._normalized.get(unit)
        if cached is not None:
            return cached
        cleaned = self._clean(unit)
        result = self._aliases.get(cleaned) or self._aliases_folded.get(cleaned.casefold()) or cleaned
        self._normalized[unit] = result
        return result

    def convert(
        self,
        value: float,
        from_unit: str | None,
        to_unit: str,
        analyte: AnalyteUnits | None = None,
    ) -> float | None:
        linear = self._linear(from_unit, to_unit, analyte)
        if linear is None:
            return None
        if linear == _IDENTITY:
            return value
        return linear[0] * value + linear[1]

    def linear(
        self, from_unit: str | None, to_unit: str, analyte: AnalyteUnits | None = None
    ) -> tuple[_Linear, bool] | None:
        """The map `convert` applies, (scale, offset), and whether it is the identity (the value
        is then kept as it is, untouched by arithmetic); None when the units do not convert."""
        found = self._linear(from_unit, to_unit, analyte)
        if found is None:
            return None
        return found, found == _IDENTITY

    def factor_known(self, from_unit: str | None, to_unit: str, analyte: AnalyteUnits | None = None) -> bool:
        return self._linear(from_unit, to_unit, analyte) is not None

    def _resolve(self, unit: str, analyte: AnalyteUnits | None) -> str:
        code = self.normalize(unit)
        if analyte is not None:
            for spelling, equivalent in analyte.equivalents.items():
                if self.normalize(spelling) == code:
                    return self.normalize(equivalent)
        return code

    def _linear(self, from_unit: str | None, to_unit: str, analyte: AnalyteUnits | None) -> _Linear | None:
        if not from_unit or not to_unit:
            return None
        src = self._resolve(from_unit, analyte)
        dst = self._resolve(to_unit, analyte)
        if not src or not dst:
            return None
        if src == dst:
            return _IDENTITY
        if analyte is not None:
            # Analyte rules come first: UCUM would happily turn % into mmol/mol by 10x.
            for conversion in analyte.conversions:
                outcome = self._via(conversion, src, dst, analyte)
                if outcome is not False:
                    return outcome
        factor = _ucum_factor(src, dst)
        return None if factor is None else (factor, 0.0)

    def _via(
        self, conversion: LinearConversion, src: str, dst: str, analyte: AnalyteUnits
    ) -> _Linear | Literal[False] | None:
        """The linear map through this conversion; None if it forbids the pair; False if it does not apply."""
        a = self._resolve(conversion.from_unit, analyte)
        b = self._resolve(conversion.to_unit, analyte)
        scale, offset = conversion.scale, conversion.offset
        if _ucum_factor(a, b) is not None:
            # Both sides share a UCUM dimension (HbA1c % vs mmol/mol), so UCUM cannot tell
            # which scale a neighbouring unit is on: only the exact units qualify, and a
            # pair touching either side must not fall through to plain UCUM.
            if (src, dst) == (a, b):
                return (scale, offset)
            if (src, dst) == (b, a):
                return (1.0 / scale, -offset / scale)
            return None if src in (a, b) or dst in (a, b) else False
        into, out_of = _ucum_factor(src, a), _ucum_factor(b, dst)
        if into is not None and out_of is not None:
            return (out_of * scale * into, out_of * offset)
        into, out_of = _ucum_factor(src, b), _ucum_factor(a, dst)
        if into is not None and out_of is not None:
            return (out_of * into / scale, -out_of * offset / scale)
        return False
