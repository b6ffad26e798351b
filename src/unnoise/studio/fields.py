"""Form fields of the studio: what the page draws for a run, and the checks its submitted values pass.

A field is described to the page as JSON (`Field.describe`); the page draws a widget per `type`:
int / float / text / choice / bool / image (an upload, resized on the page to the run's size) / mask (painted
over the image: white = fill in). `check_params` turns a submitted dict into checked values, with one-line
errors naming the field and the value.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from ..errors import UnnoiseError

TYPES = ("int", "float", "text", "choice", "bool", "image", "mask")
MAX_TEXT = 2000  # characters of a text field


@dataclass(frozen=True)
class Field:
    """One form field: `name` (the request key), its `type`, a `label`, a `default` (None: the run's own),
    bounds for numbers, `choices` for a choice, `optional` (None/"" allowed), and `show_if` ({field: values}:
    shown, and checked, only when another field has one of those values)."""

    name: str
    type: str
    label: str
    default: Any = None
    low: float | None = None
    high: float | None = None
    choices: Sequence[str] = ()
    optional: bool = False
    help: str = ""
    show_if: dict | None = None

    def describe(self) -> dict:
        data = asdict(self)
        data["choices"] = list(self.choices)
        return data

    def check(self, value):
        """The checked value (None for an empty optional field); a one-line error otherwise."""
        if value is None or (value == "" and self.type != "text"):
            if self.default is not None or self.optional:
                return self.default
            raise UnnoiseError(f"field {self.name!r}: a value is required")
        return CHECKS[self.type](self, value)


def _number(field: Field, value, integer: bool):
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UnnoiseError(f"field {field.name!r}: expected a number, got {value!r}"[:200])
    try:
        number = float(value)
    except ValueError:
        raise UnnoiseError(f"field {field.name!r}: expected a number, got {value!r}"[:200]) from None
    if not math.isfinite(number) or (integer and not number.is_integer()):
        raise UnnoiseError(f"field {field.name!r}: expected {'an integer' if integer else 'a finite number'}, "
                           f"got {value!r}"[:200])
    if (field.low is not None and number < field.low) or (field.high is not None and number > field.high):
        raise UnnoiseError(f"field {field.name!r}: {value!r} is outside [{field.low:g}, {field.high:g}]")
    return int(number) if integer else number


def _text(field: Field, value):
    if not isinstance(value, str):
        raise UnnoiseError(f"field {field.name!r}: expected text, got {type(value).__name__}")
    if len(value) > MAX_TEXT:
        raise UnnoiseError(f"field {field.name!r}: text of {len(value)} characters, at most {MAX_TEXT}")
    return value


def _choice(field: Field, value):
    if not isinstance(value, str) or value not in field.choices:
        raise UnnoiseError(f"field {field.name!r}: {value!r} is not one of {', '.join(field.choices)}"[:300])
    return value


def _bool(field: Field, value):
    if not isinstance(value, bool):
        raise UnnoiseError(f"field {field.name!r}: expected true or false, got {value!r}"[:200])
    return value


def _upload(field: Field, value):
    if not isinstance(value, str) or not value.startswith("data:"):
        raise UnnoiseError(f"field {field.name!r}: expected an image as a data: URL (base64 PNG or JPEG)")
    return value


CHECKS = {"int": lambda f, v: _number(f, v, True), "float": lambda f, v: _number(f, v, False), "text": _text,
          "choice": _choice, "bool": _bool, "image": _upload, "mask": _upload}


def _shown(field: Field, values: dict) -> bool:
    return not field.show_if or all(values.get(name) in allowed for name, allowed in field.show_if.items())


def check_params(fields: Sequence[Field], params) -> dict:
    """The checked values of a submitted form: every field (its default when missing), unknown names and
    hidden fields refused; fields hidden by `show_if` take None."""
    if not isinstance(params, dict):
        raise UnnoiseError(f"params must be a JSON object, got {type(params).__name__}")
    known = {f.name for f in fields}
    unknown = sorted(set(params) - known)
    if unknown:
        raise UnnoiseError(f"unknown field {unknown[0]!r}; this form has: {', '.join(sorted(known))}"[:300])
    values: dict = {}
    for field in fields:  # show_if refers to earlier fields only
        values[field.name] = field.check(params.get(field.name)) if _shown(field, values) else None
    return values
