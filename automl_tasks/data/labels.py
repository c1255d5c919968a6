"""Class labels as one canonical string each (their *key*), so 1, 1.0 and "1" are one class.

Spark computes the keys of the data (data.prepare.canonical_label); Python computes the
keys of the classes a model knows and of labels read into pandas. The two are twins and
must agree, or a known class looks unseen: tests/test_labels.py checks them on one table.

The rule, as Spark applies it: a boolean is `true`/`false`; anything else is read as text
(spaces trimmed); text that is a finite number becomes that number, written as an integer
when it is one below 1e15, else as Java prints a double (`1.5`, `1.0E-5`, `1.0E16`); NaN and
any other text stay as they are. Not mirrored: Java-only numerals (`0x1p3`) and doubles Java
prints with extra digits (JDK < 19, e.g. 5e-324). Spark (ANSI mode) fails with ARITHMETIC_OVERFLOW
on labels that are infinite or beyond +-2^63 (its floor() overflows); here they read as Java prints them.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?[fFdD]?", re.ASCII)   # Java's, as Spark casts
_SPECIAL = {"inf": math.inf, "+inf": math.inf, "infinity": math.inf, "+infinity": math.inf,
            "-inf": -math.inf, "-infinity": -math.inf, "nan": math.nan}


def class_key(value) -> str | None:
    """The key of a label value (None for a missing one), as data.prepare.canonical_label makes it."""
    if value is None:
        return None
    if type(value).__name__ in ("bool", "bool_"):   # numpy's bool is no Python bool
        return "true" if value else "false"
    if isinstance(value, float):       # a double column: Spark prints it, then reads it back
        text, number = None, value
    else:
        text = str(value).strip(" ")   # F.trim removes spaces only
        number = _number(text)
    if number is None or math.isnan(number):
        return "NaN" if text is None else text
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return _java_double(number)


def class_values(keys) -> list:
    """The classes behind Spark's keys, in a stable order: numbers ascending when every key is a
    number's key (1 not "1", so metadata and probability columns read naturally), else text
    sorted. class_key of each value gives its key back."""
    numbers = [_class_number(k) for k in keys]
    return sorted(keys) if any(n is None for n in numbers) else sorted(numbers)


def _class_number(key: str):
    number = _number(key)
    if number is None:
        return None
    value = int(number) if number.is_integer() else number
    return value if class_key(value) == key else None


def _number(text: str) -> float | None:
    """`text` as Spark's cast to double reads it (surrounding white space ignored), or None."""
    text = text.strip()
    if _DECIMAL.fullmatch(text):
        return float(text.rstrip("fFdD"))
    return _SPECIAL.get(text.lower())


def _java_double(x: float) -> str:
    """Java's Double.toString (Spark's double-to-string cast), from Python's shortest repr."""
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    sign, digits, exponent = Decimal(repr(x)).normalize().as_tuple()
    ds, point = "".join(map(str, digits)), len(digits) + exponent   # point: digits before the "."
    if 1e-3 <= abs(x) < 1e7:
        body = ("0." + "0" * -point + ds if point <= 0 else
                ds + "0" * (point - len(ds)) + ".0" if point >= len(ds) else ds[:point] + "." + ds[point:])
    else:
        body = f"{ds[0]}.{ds[1:] or '0'}E{point - 1}"
    return "-" * sign + body
