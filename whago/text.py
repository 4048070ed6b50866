"""Text from outside (uploads, forms, API bodies, WAHA events), made safe to store, once, at the boundary.

PostgreSQL refuses NUL in text and JSON, and a lone UTF-16 surrogate ("\\ud800", which JSON
allows) cannot be encoded at all: either one used to answer 500, and WAHA retried such an
event forever.

    clean_text(value) -> str      NUL and other C0 controls removed (tab, newline and CR kept),
                                  lone surrogates replaced by U+FFFD, surrogate pairs joined
    clean_data(value) -> value    the same on every string of a JSON-like structure (keys too)
"""
from __future__ import annotations

import re
from typing import Any

_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
_SURROGATES = re.compile("[\ud800-\udfff]")


def clean_text(value: str) -> str:
    """The text without C0 controls other than tab, newline and CR, and without lone surrogates."""
    if _SURROGATES.search(value):
        # Through UTF-16: a pair written as two escapes ("\\ud83d\\ude00") becomes its one character,
        # a lone half becomes U+FFFD.
        value = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return _CONTROLS.sub("", value)


def clean_data(value: Any) -> Any:
    """clean_text on every string of a structure of dicts, lists and scalars (parsed JSON)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_data(key): clean_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [clean_data(item) for item in value]
    return value


class CleanTextForm:
    """Form mixin: every submitted text value goes through clean_text before the fields see it."""

    def __init__(self, *args, **kwargs):
        if args:
            args = (_clean_submitted(args[0]), *args[1:])
        elif "data" in kwargs:
            kwargs["data"] = _clean_submitted(kwargs["data"])
        super().__init__(*args, **kwargs)


def _clean_submitted(data):
    if data is not None and hasattr(data, "lists"):  # a QueryDict (request.POST / GET)
        cleaned = data.copy()
        for key, values in data.lists():
            cleaned.setlist(key, [clean_text(v) if isinstance(v, str) else v for v in values])
        return cleaned
    if isinstance(data, dict):
        return clean_data(data)
    return data
