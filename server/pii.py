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

Digits are grouped the way people read and type them: single or double spaces (also no-break and
ideographic spaces) or a dash, with or without spaces round it, join groups into one run; groups
joined by dots or slashes count only when they make a card or ID number. A run
holding several numbers read one after the other ("4111 1111 1111 1111 11010519491231002X") is
split into the card and ID numbers it contains, and short groups read with them (an expiry, the
three digits on the back) are masked whole. A card, ID or mobile number glued to Latin letters
("card4111111111111111") is masked too; other digit runs glued to letters (order and model
numbers) are left as they are.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"

# a digit run, allowing spaces or a dash between groups (as people read numbers out); an ID's
# check character X may end it
_SEP = r"(?:[^\S\n]{1,3}|[^\S\n]{0,2}[-\u2010-\u2014][^\S\n]{0,2})"
_DIGIT_RUN = re.compile(rf"(?<!\d)\+?\d(?:{_SEP}?\d){{3,}}(?:[Xx](?![A-Za-z]))?")
_GROUP = re.compile(r"\d+(?:[Xx](?![A-Za-z]))?")
# groups joined by dots or slashes: masked only when they make a card or ID number (dates and
# amounts such as 2024.11.30 or 125000.00 are left alone)
_DOTTED = re.compile(r"(?<![\d.])\d{3,8}(?:[./]\d{3,8}){2,5}(?:[Xx](?![A-Za-z]))?(?![\d])")
_MOBILE = re.compile(r"(?:86)?1[3-9]\d{9}")
_EDGES = re.compile(r"([\s\-\u2010-\u2014]*)(.*?)([\s\-\u2010-\u2014]*)", re.DOTALL)
_CODE_WORD = re.compile(r"(code|otp|pin|passcode|验证码|校验码|动态码|动态密码|短信码)",
                        re.IGNORECASE)
_CODE_NEAR = 24  # characters between the word and the digits
_CARD_DIGITS = (13, 19)
_ID_LEN = 18
_MAX_GROUPS = 24  # a run of more groups is not numbers read out one after the other


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
    text = _DOTTED.sub(lambda m: _mask_number(_compact(m.group(0)), "") or m.group(0), text)
    code_words = [m.end() for m in _CODE_WORD.finditer(text)]

    def replace(match: re.Match[str]) -> str:
        start = match.start()
        glued = start > 0 and text[start - 1].isascii() and text[start - 1].isalpha()
        return _mask_run(match.group(0), start, code_words, glued)

    return _DIGIT_RUN.sub(replace, text)


def _compact(raw: str) -> str:
    return re.sub(r"[^\dXx]", "", raw)


def _mask_number(compact: str, raw: str) -> str | None:
    """The masked form of a whole card or ID number, or None if `compact` is neither."""
    if len(compact) == _ID_LEN and china_id_ok(compact):
        return compact[:6] + "*" * 8 + compact[-4:]
    if (not raw.startswith("+") and compact.isdigit()
            and _CARD_DIGITS[0] <= len(compact) <= _CARD_DIGITS[1] and luhn_ok(compact)):
        return "**** " * ((len(compact) - 4 + 3) // 4) + compact[-4:]
    return None


def _mask_run(raw: str, start: int, code_words: list[int], glued: bool) -> str:
    whole = _mask_number(_compact(raw), raw)
    if whole is not None:
        return whole
    groups = list(_GROUP.finditer(raw))
    # +86 …: a phone number; a long list of digits is masked whole, first 3 and last 4 kept
    split = not raw.startswith("+") and len(groups) <= _MAX_GROUPS
    found = _split_numbers(groups) if split else []
    if glued:  # an order or model number: only what is surely a customer's number is masked
        if found:
            return _join(raw, groups, found, lambda piece, _offset: piece)
        digits = _compact(raw).rstrip("Xx")
        return mask_phone(digits) if _MOBILE.fullmatch(digits) else raw
    if not found:
        return _mask_rest(raw, start, code_words, False)
    return _join(raw, groups, found,
                 lambda piece, offset: _mask_rest(piece, start + offset, code_words, True))


def _split_numbers(groups: list[re.Match[str]]) -> list[tuple[int, int, str]]:
    """Card and ID numbers inside a run of digit groups: (first group, end group, masked),
    the longest number starting at each group first."""
    found = []
    i = 0
    while i < len(groups):
        spans, compact = [], ""
        for j in range(i, len(groups)):  # at most 19 digits: a few groups
            compact += groups[j].group(0)
            if len(compact) > _CARD_DIGITS[1]:
                break
            spans.append((j + 1, compact))
        for j, candidate in reversed(spans):
            masked = _mask_number(candidate, "")
            if masked is not None:
                found.append((i, j, masked))
                i = j
                break
        else:
            i += 1
    return found


def _join(raw: str, groups: list[re.Match[str]], found: list[tuple[int, int, str]],
          mask_rest: Callable[[str, int], str]) -> str:
    """`raw` with the numbers found replaced, and the digits between them (with their offset in
    `raw`) passed through `mask_rest`; separators are kept as they are."""
    out, pos = [], 0
    for i, j, masked in found:
        out.append(_mask_between(raw, pos, groups[i].start(), mask_rest))
        out.append(masked)
        pos = groups[j - 1].end()
    out.append(_mask_between(raw, pos, len(raw), mask_rest))
    return "".join(out)


def _mask_between(raw: str, start: int, end: int, mask_rest: Callable[[str, int], str]) -> str:
    piece = raw[start:end]
    core = _EDGES.fullmatch(piece)
    assert core is not None
    if not core.group(2):
        return piece
    return core.group(1) + mask_rest(core.group(2), start + core.end(1)) + core.group(3)


def _mask_rest(raw: str, start: int, code_words: list[int], beside_number: bool) -> str:
    """Digits that are neither a card nor an ID number: a code, a phone or just a number."""
    digits = _compact(raw).rstrip("Xx")
    if beside_number and len(digits) < 7:
        return re.sub(r"\d", "*", raw)  # read with a card or ID number: its expiry, CVV…
    near_code = any(0 <= start - end <= _CODE_NEAR for end in code_words)
    if near_code and 4 <= len(digits) <= 8:
        return "*" * len(digits)
    if len(digits) >= 7:
        return mask_phone(digits)
    return raw
