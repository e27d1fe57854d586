"""Strategy factories for ``conf/strategy`` (each config entry instantiates one of these)."""

from __future__ import annotations


def named(name: str) -> str:
    """A strategy Lightning knows by name (``auto``, ``ddp``, ...), kept behind ``_target_`` so
    that every strategy config has the same shape."""
    return name
