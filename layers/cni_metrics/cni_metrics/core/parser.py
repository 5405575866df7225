"""Prometheus text exposition format 0.0.4 -> the ``awscni_*`` families of one aws-node payload.

Only lines whose metric name starts with ``awscni_`` (and their ``# HELP``/``# TYPE`` lines) are parsed
and validated; every other line is skipped after a prefix check, so the go_/process_/promhttp_ bulk of
a payload costs almost nothing. Every regular expression here is linear (no nested ambiguous repeats),
and memory stays proportional to the input.

Accepted: HELP/TYPE lines, label values with the escapes ``\\\\``, ``\\"`` and ``\\n``, an optional trailing
comma in a label set, optional integer timestamps, ``NaN``/``+Inf``/``-Inf``, blank lines, CRLF line
ends, leading/trailing blanks, families in any order and a family split across non-adjacent lines.
Rejected with ``PayloadError`` (line number, reason): a malformed awscni sample, an unknown escape, a
duplicated label name or series, invalid UTF-8 in an awscni line, a malformed or conflicting TYPE line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

PREFIX = b"awscni_"
_TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})
_COMPOSITE_SUFFIXES = {
    "_sum": ("summary", "histogram"),
    "_count": ("summary", "histogram"),
    "_bucket": ("histogram",),
}

# name, optional {label block}, value, optional timestamp. The label block is a run of non-quote,
# non-brace bytes and quoted strings; every repeat below has disjoint alternatives, so matching is linear.
_SAMPLE = re.compile(
    rb"([a-zA-Z_:][a-zA-Z0-9_:]*)"
    rb"(?:[ \t]*\{((?:[^\"}]|\"(?:[^\"\\]|\\.)*+\")*+)\}[ \t]*|[ \t]+)"
    rb"([^ \t]+)(?:[ \t]+([^ \t]+))?[ \t]*"
)
_LABEL = re.compile(rb'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\]|\\.)*+)"[ \t]*(,|\Z)')
_TIMESTAMP = re.compile(rb"[-+]?[0-9]+")
_BLANKS = re.compile(rb"[ \t]*\Z")
_ESCAPE = re.compile(rb"\\(.)", re.DOTALL)
_UNESCAPE = {b"\\": b"\\", b'"': b'"', b"n": b"\n"}
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_HELP_ESCAPE = re.compile(r"\\([\\n])")


class PayloadError(ValueError):
    """A payload that is not valid exposition format: ``line`` (1-based), ``reason``."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample line: its full name (``..._sum`` etc. included), labels, value and optional timestamp."""

    name: str
    labels: Mapping[str, str]
    value: float
    timestamp_ms: int | None = None


@dataclass(slots=True)
class Family:
    """The samples of one family, with its declared ``# TYPE`` (``untyped`` when none) and ``# HELP``."""

    name: str
    type: str = "untyped"
    help: str | None = None
    samples: list[Sample] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ParsedPayload:
    """The awscni families of a payload, by family name, in order of first appearance."""

    families: dict[str, Family]

    def samples(self) -> list[Sample]:
        """Every awscni sample, family by family."""
        return [s for f in self.families.values() for s in f.samples]


def _unescape(raw: bytes, lineno: int) -> str:
    def sub(m: re.Match[bytes]) -> bytes:
        try:
            return _UNESCAPE[m.group(1)]
        except KeyError:
            escape = m.group(1).decode("latin-1")
            raise PayloadError(lineno, f"invalid escape sequence \\{escape!r}") from None

    if b"\\" in raw:
        raw = _ESCAPE.sub(sub, raw)
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise PayloadError(lineno, "invalid UTF-8") from None


def _labels(block: bytes, lineno: int) -> dict[str, str]:
    labels: dict[str, str] = {}
    pos, end = 0, len(block)
    while pos < end:
        m = _LABEL.match(block, pos)
        if m is None:
            if _BLANKS.match(block, pos):
                break
            raise PayloadError(lineno, "malformed label set")
        name = m.group(1).decode()
        if name in labels:
            raise PayloadError(lineno, f"duplicate label {name!r}")
        labels[name] = _unescape(m.group(2), lineno)
        pos = m.end()
        if not m.group(3):
            break
    return labels


def _number(token: bytes, lineno: int, what: str) -> float:
    if b"_" not in token:
        try:
            return float(token)
        except ValueError:
            pass
    raise PayloadError(lineno, f"invalid {what} {token[:40].decode('latin-1')!r}")


def _sample(line: bytes, lineno: int) -> Sample:
    m = _SAMPLE.fullmatch(line)
    if m is None:
        raise PayloadError(lineno, "malformed sample line")
    name, block, value, ts = m.groups()
    timestamp: int | None = None
    if ts is not None:
        if not _TIMESTAMP.fullmatch(ts):
            raise PayloadError(lineno, f"invalid timestamp {ts[:40].decode('latin-1')!r}")
        timestamp = int(ts)
    return Sample(
        name.decode(),
        _labels(block, lineno) if block else {},
        _number(value, lineno, "value"),
        timestamp,
    )


def _help_unescape(m: re.Match[str]) -> str:
    return "\n" if m.group(1) == "n" else m.group(1)


def _comment(line: bytes, lineno: int, types: dict[str, str], helps: dict[str, str]) -> None:
    parts = line[1:].split(None, 2)
    if len(parts) < 2 or parts[0] not in (b"TYPE", b"HELP") or not parts[1].startswith(PREFIX):
        return
    try:
        text = line.decode()
    except UnicodeDecodeError:
        raise PayloadError(lineno, "invalid UTF-8") from None
    keyword, name, *rest = text[1:].split(None, 2)
    if not _NAME.fullmatch(name):
        raise PayloadError(lineno, f"invalid metric name {name[:40]!r}")
    if keyword == "HELP":
        helps[name] = _HELP_ESCAPE.sub(_help_unescape, rest[0]) if rest else ""
        return
    kind = rest[0].strip() if rest else ""
    if kind not in _TYPES:
        raise PayloadError(lineno, f"invalid TYPE {kind[:40]!r} for {name}")
    if types.setdefault(name, kind) != kind:
        raise PayloadError(lineno, f"conflicting TYPE for {name}: {types[name]} and {kind}")


def _family_of(name: str, types: Mapping[str, str]) -> str:
    if name in types:
        return name
    for suffix, kinds in _COMPOSITE_SUFFIXES.items():
        if name.endswith(suffix) and types.get(name[: -len(suffix)]) in kinds:
            return name[: -len(suffix)]
    return name


def parse_payload(data: bytes | str) -> ParsedPayload:
    """Parse an aws-node ``/metrics`` payload, keeping only ``awscni_*`` families.

    Raises ``PayloadError`` (and nothing else) for malformed input.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    types: dict[str, str] = {}
    helps: dict[str, str] = {}
    samples: list[Sample] = []
    seen: set[tuple[str, frozenset[tuple[str, str]]]] = set()
    for lineno, line in enumerate(data.split(b"\n"), 1):
        if not line.startswith(PREFIX):
            if not line:
                continue
            first = line[0]
            if first == 0x23:  # "#"
                if PREFIX in line:
                    _comment(line.rstrip(), lineno, types, helps)
                continue
            if first not in (0x20, 0x09, 0x0D) or not line.strip().startswith(PREFIX):
                continue
            line = line.strip()
        sample = _sample(line.rstrip(), lineno)
        key = (sample.name, frozenset(sample.labels.items()))
        if key in seen:
            raise PayloadError(lineno, f"duplicate series {sample.name}")
        seen.add(key)
        samples.append(sample)
    families: dict[str, Family] = {}
    for sample in samples:
        fname = _family_of(sample.name, types)
        family = families.get(fname)
        if family is None:
            family = families[fname] = Family(fname, types.get(fname, "untyped"), helps.get(fname))
        family.samples.append(sample)
    return ParsedPayload(families)
