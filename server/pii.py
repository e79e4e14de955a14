"""Masking of personal data before it is shown, stored, sent to a wall or logged.

`mask_text` finds, in free text such as a transcript line:

- payment card numbers: 13–19 digits (spaces or dashes allowed between groups) that pass the
  Luhn check → `**** **** **** 1234` style, last four kept;
- mainland China resident ID numbers: 18 characters whose ISO 7064 MOD 11-2 check digit is right
  → first 6 (region) and last 4 kept;
- phone numbers: mainland mobiles (1[3-9]x, 11 digits, optional +86) and other runs of 7–15
  digits → `138****5678`, last four kept;
- verification codes: 4–8 digits near a word for "code" (code, OTP, PIN, 验证码, 校验码, 动态码)
  → all digits masked.

Masking is deliberately greedy: a digit run that looks like none of these but is long enough to be
a number of someone's is masked as a phone number. Numbers written out in words are not caught.
"""

from __future__ import annotations

import re

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"

# a digit run, allowing single spaces or dashes between groups (as people read numbers out)
_DIGIT_RUN = re.compile(r"(?<![\dA-Za-z])\+?\d(?:[ -]?\d){3,22}(?:[Xx](?![A-Za-z]))?")
_CODE_WORD = re.compile(r"(code|otp|pin|passcode|验证码|校验码|动态码|动态密码|短信码)",
                        re.IGNORECASE)
_CODE_NEAR = 24  # characters between the word and the digits


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def china_id_ok(value: str) -> bool:
    if len(value) != 18 or not value[:17].isdigit():
        return False
    check = _ID_CHECK[sum(int(c) * w for c, w in zip(value[:17], _ID_WEIGHTS, strict=True))
                      % 11]
    return value[17].upper() == check


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


def mask_text(text: str) -> str:
    """The text with card numbers, ID numbers, phone numbers and verification codes masked."""
    code_words = [m.end() for m in _CODE_WORD.finditer(text)]

    def replace(match: re.Match[str]) -> str:
        raw = match.group(0)
        compact = re.sub(r"[ -]", "", raw).lstrip("+")
        digits = compact.rstrip("Xx")
        if len(compact) == 18 and china_id_ok(compact):
            return compact[:6] + "*" * 8 + compact[-4:]
        if (not raw.startswith("+") and 13 <= len(digits) <= 19 and digits == compact
                and luhn_ok(digits)):
            return "**** " * ((len(digits) - 4 + 3) // 4) + digits[-4:]
        near_code = any(0 <= match.start() - end <= _CODE_NEAR for end in code_words)
        if near_code and 4 <= len(digits) <= 8:
            return "*" * len(digits)
        if len(digits) >= 7:
            return mask_phone(digits)
        return raw

    return _DIGIT_RUN.sub(replace, text)
