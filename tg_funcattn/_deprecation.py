"""Keyword arguments that were renamed: the old name keeps working with a warning."""
from __future__ import annotations

import warnings
from typing import Any, Dict


def renamed(kwargs: Dict[str, Any], old: str, new: str, owner: str, current: Any,
            default: Any) -> Any:
    """The value of the keyword ``new``, taking it from the deprecated keyword
    ``old`` in ``kwargs`` (removed from it) with a ``FutureWarning``.

    ``current`` is the value ``new`` was given and ``default`` its default:
    passing both names with different values is an error (a value of
    ``new`` equal to its default cannot be told from no value; the old
    name's value is used then).
    """
    if old not in kwargs:
        return current
    value = kwargs.pop(old)
    warnings.warn(f"{owner}: '{old}' was renamed to '{new}'; '{old}' will be removed in a "
                  "future release", FutureWarning, stacklevel=3)
    if current is not default and current != value:
        raise TypeError(f"{owner}: got both '{new}'={current!r} and the deprecated "
                        f"'{old}'={value!r}; pass only '{new}'")
    return value
