"""Masking of personal data before it is shown, stored or logged."""

from __future__ import annotations


def mask_phone(number: str) -> str:
    """`13812345678` → `138****5678`; short or already masked numbers keep only their last 4.

    Applied to every customer number the hub receives, even when the client says it masked it.
    """
    digits = [c for c in number if c.isdigit()]
    if not digits:
        return "****" if number else ""
    if len(digits) >= 11:
        return "".join(digits[:3]) + "****" + "".join(digits[-4:])
    return "****" + "".join(digits[-4:]) if len(digits) > 4 else "****"
