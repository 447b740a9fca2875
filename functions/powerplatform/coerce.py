"""Lenient scalar coercion shared by connection-parameter and operation validation:
Power Platform clients send numbers and booleans as JSON values or as strings.

Definitions sometimes contradict themselves: `type: boolean` with `enum: ["false",
"true"]`, `type: integer` with `enum: ["all", "none"]`. `enum_allows` then accepts
what either reading allows (the type's values, or the enum's members as written).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value.strip())
    return None


def as_number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("+-").isdigit():
            return int(text)
        try:
            number = float(text)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None



def enum_allows(
    coerce: Callable[[Any], Any],
    value: Any,
    checked: Any,
    options: Sequence[Any],
    text: Callable[[Any], str],
) -> bool:
    """Whether a scalar is allowed by a declared type and its enum, read leniently.

    `checked` is `value` coerced to the type (None when it does not fit); `coerce`
    does the same for the enum's members; `text` spells a value as it is sent.
    - Members that all fit the type: the value must fit too and equal one of them
      after coercion (`"5"` matches `5`, `"True"` matches `"true"`).
    - Some member does not fit the type (the definition contradicts itself): any
      value of the type is allowed (the type's reading), and so is any member as
      written (the enum's reading).
    """
    options = [option for option in options if option is not None]  # null: "optional"
    typed = [coerce(option) for option in options]
    contradicts = any(member is None for member in typed)
    if checked is not None:
        if contradicts or any(_same(member, checked) for member in typed):
            return True
    if contradicts:
        spelled = text(value)
        return any(spelled == text(option) for option in options)
    return False


def _same(member: Any, checked: Any) -> bool:
    if isinstance(member, bool) != isinstance(checked, bool):
        return False
    return bool(member == checked)
