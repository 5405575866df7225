"""Prometheus text exposition format 0.0.4 -> the ``awscni_*`` families of one aws-node payload.

Only lines whose metric name starts with ``awscni_`` (and their ``# HELP``/``# TYPE`` lines) are parsed
and validated; every other line is skipped after a prefix check, so the go_/process_/promhttp_ bulk of
a payload costs almost nothing. Label sets and metric names repeat from node to node, so validated ones
are memoised (bounded caches). Every regular expression here is linear (possessive repeats over
disjoint alternatives), and memory stays proportional to the input.

Accepted: HELP/TYPE lines, label values with the escapes ``\\\\``, ``\\"`` and ``\\n``, an optional trailing
comma in a label set, optional integer timestamps, ``NaN``/``+Inf``/``-Inf``, blank lines, CRLF line
ends, leading/trailing blanks, families in any order and a family split across non-adjacent lines.
Rejected with ``PayloadError`` (line number, reason): a malformed awscni sample, an unknown escape, a
duplicated label name or series, invalid UTF-8 in an awscni line, a malformed or conflicting TYPE line.

``quick_scan`` is the hot path of ``node.read_node_metrics``: two C-level ``findall`` passes over the
payload for awscni lines in the strict form Go clients write (ASCII, ``name{a="v",b="w"} value``, LF
line ends), then C loops over the samples (values and label sets that repeat from node to node are
memoised); it declines (returns None) whenever anything is not in that form or could be an error, and
the caller then runs the full parser, so results and errors are the same as ``parse_payload``'s.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import compress, islice
from operator import lt, ne
from types import MappingProxyType
from typing import NamedTuple

PREFIX = b"awscni_"
_TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})
_COMPOSITE_SUFFIXES = {
    "_sum": ("summary", "histogram"),
    "_count": ("summary", "histogram"),
    "_bucket": ("histogram",),
}
_LABEL = re.compile(rb'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\]|\\.)*+)"[ \t]*(,|\Z)')
_PLAIN_BLOCK = re.compile(rb'(?:[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*+",)*+(?:[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*+")?')
_PLAIN_PAIR = re.compile(rb'([a-zA-Z_][a-zA-Z0-9_]*)="([^"\\]*)"')
_TIMESTAMP = re.compile(rb"[-+]?[0-9]+")
_BLANKS = re.compile(rb"[ \t]*\Z")
_ESCAPE = re.compile(rb"\\(.)", re.DOTALL)
_UNESCAPE = {b"\\": b"\\", b'"': b'"', b"n": b"\n"}
_NAME_BYTES = re.compile(rb"[a-zA-Z_:][a-zA-Z0-9_:]*")
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_HELP_ESCAPE = re.compile(r"\\([\\n])")
_CACHE_LIMIT = 10_000
_CACHE_KEY_MAX = 512


# quick_scan: strict forms only, in ASCII lines. A label value has no raw " \ CR LF or tab, only the
# escapes \\ \" \n (so a label set in a given order has one spelling). Groups: series text (name and
# label block), name, the label pairs after the first, value token (no "_"). A label value is unrolled
# to one C loop per run of plain characters (measurably faster than an alternation per character).
_Q_PAIR = rb'[a-zA-Z_][a-zA-Z0-9_]*+="[^"\\\n\r\t]*+(?:\\[\\"n][^"\\\n\r\t]*+)*+"'
_Q_SAMPLE = re.compile(
    rb"\n((awscni_[a-zA-Z0-9_:]*+)(?:\{" + _Q_PAIR + rb"((?:," + _Q_PAIR + rb")*+)\})?)"
    rb" ([0-9A-Za-z.+-]++)(?: [-+]?[0-9]++)?(?=\n|\Z)"
)
# HELP with any (ASCII) text after, or TYPE: groups name and type of a TYPE line. One pattern for both:
# each pass over the payload costs more than its matches.
_Q_COMMENT = re.compile(
    rb"\n# (?:TYPE (awscni_[a-zA-Z0-9_:]*+) (counter|gauge|histogram|summary|untyped)(?=\n|\Z)"
    rb"|HELP awscni_[a-zA-Z0-9_:]*+(?=[ \n]|\Z))"
)


class PayloadError(ValueError):
    """A payload that is not valid exposition format: ``line`` (1-based), ``reason``."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


class Sample(NamedTuple):
    """One sample line: its full name (``..._sum`` etc. included), labels, value and optional timestamp."""

    name: str
    labels: Mapping[str, str]
    value: float
    timestamp_ms: int | None = None


_EMPTY: Mapping[str, str] = MappingProxyType({})
_NO_LABELS: frozenset[tuple[str, str]] = frozenset()
# Memoised validation results, keyed by the exact bytes: label blocks (read-only labels, series key),
# sample names, whole sample lines (many repeat from node to node) and HELP/TYPE lines.
_label_cache: dict[bytes, tuple[Mapping[str, str], frozenset[tuple[str, str]]]] = {}
_name_cache: dict[bytes, str] = {}
_line_cache: dict[bytes, tuple[Sample, tuple[str, frozenset[tuple[str, str]]]]] = {}
_comment_cache: dict[bytes, tuple[str, str, str] | None] = {}


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


class _LineError(Exception):
    """A malformed line; ``parse_payload`` adds the line number (counted only when needed)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def clear_caches() -> None:
    """Forget the memoised validation results (for cold-start measurements)."""
    for cache in (_label_cache, _name_cache, _line_cache, _comment_cache, _value_cache, _canonical):
        cache.clear()


def _remember[V](cache: dict[bytes, V], key: bytes, value: V) -> V:
    """Memoise ``value`` under ``key`` (short keys only; a full cache starts over: memory stays bounded)."""
    if len(key) <= _CACHE_KEY_MAX:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = value
    return value


def _unescape(raw: bytes) -> str:
    def sub(m: re.Match[bytes]) -> bytes:
        try:
            return _UNESCAPE[m.group(1)]
        except KeyError:
            raise _LineError(f"invalid escape sequence \\{m.group(1).decode('latin-1')!r}") from None

    if b"\\" in raw:
        raw = _ESCAPE.sub(sub, raw)
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise _LineError("invalid UTF-8") from None


def _labels(block: bytes) -> tuple[Mapping[str, str], frozenset[tuple[str, str]]]:
    cached = _label_cache.get(block)
    if cached is not None:
        return cached
    labels: dict[str, str] = {}
    if b"\\" not in block and _PLAIN_BLOCK.fullmatch(block):  # what Go clients write: one C pass
        pairs = _PLAIN_PAIR.findall(block)
        try:
            labels = {name.decode(): value.decode() for name, value in pairs}
        except UnicodeDecodeError:
            raise _LineError("invalid UTF-8") from None
        if len(labels) != len(pairs):
            raise _LineError(f"duplicate label {_first_duplicate(pairs)!r}")
        return _remember(_label_cache, block, (MappingProxyType(labels), frozenset(labels.items())))
    pos, end = 0, len(block)
    while pos < end:
        m = _LABEL.match(block, pos)
        if m is None:
            if _BLANKS.match(block, pos):
                break
            raise _LineError("malformed label set")
        name = m.group(1).decode()
        if name in labels:
            raise _LineError(f"duplicate label {name!r}")
        labels[name] = _unescape(m.group(2))
        pos = m.end()
        if not m.group(3):
            break
    return _remember(_label_cache, block, (MappingProxyType(labels), frozenset(labels.items())))


def _first_duplicate(pairs: list[tuple[bytes, bytes]]) -> str:
    names = [name for name, _ in pairs]
    return next(name for i, name in enumerate(names) if name in names[:i]).decode()


def _name(raw: bytes) -> str:
    name = _name_cache.get(raw)
    if name is None:
        if not _NAME_BYTES.fullmatch(raw):
            raise _LineError("malformed sample line")
        name = _remember(_name_cache, raw, raw.decode())
    return name


def _sample(line: bytes) -> tuple[Sample, tuple[str, frozenset[tuple[str, str]]]]:
    """One awscni sample line and its series key (name, labels); the label block ends at the last ``}``."""
    brace = line.find(b"{")
    if brace < 0:
        labels, key = _EMPTY, _NO_LABELS
        parts = line.split()
        name_raw, parts = (parts[0], parts[1:]) if parts else (b"", parts)
    else:
        close = line.rfind(b"}")
        if close < brace:
            raise _LineError("malformed sample line")
        labels, key = _labels(line[brace + 1 : close])
        name_raw, parts = line[:brace].rstrip(b" \t"), line[close + 1 :].split()
    name = _name(name_raw)
    if not 1 <= len(parts) <= 2:
        raise _LineError("malformed sample line")
    token = parts[0]
    try:
        if b"_" in token:
            raise ValueError(token)
        value = float(token)
    except ValueError:
        raise _LineError(f"invalid value {token[:40].decode('latin-1')!r}") from None
    timestamp: int | None = None
    if len(parts) == 2:
        if not _TIMESTAMP.fullmatch(parts[1]):
            raise _LineError(f"invalid timestamp {parts[1][:40].decode('latin-1')!r}")
        timestamp = int(parts[1])
    return _remember(_line_cache, line, (Sample(name, labels, value, timestamp), (name, key)))


def _help_unescape(m: re.Match[str]) -> str:
    return "\n" if m.group(1) == "n" else m.group(1)


def _comment(line: bytes) -> tuple[str, str, str] | None:
    """(``HELP``/``TYPE``, family, text/type) of an awscni HELP/TYPE line, None for another comment."""
    if line in _comment_cache:
        return _comment_cache[line]
    parts = line[1:].split(None, 2)
    result: tuple[str, str, str] | None = None
    if len(parts) >= 2 and parts[0] in (b"TYPE", b"HELP") and parts[1].startswith(PREFIX):
        try:
            text = line.decode()
        except UnicodeDecodeError:
            raise _LineError("invalid UTF-8") from None
        keyword, name, *rest = text[1:].split(None, 2)
        if not _NAME.fullmatch(name):
            raise _LineError(f"invalid metric name {name[:40]!r}")
        if keyword == "HELP":
            result = (keyword, name, _HELP_ESCAPE.sub(_help_unescape, rest[0]) if rest else "")
        else:
            kind = rest[0].strip() if rest else ""
            if kind not in _TYPES:
                raise _LineError(f"invalid TYPE {kind[:40]!r} for {name}")
            result = (keyword, name, kind)
    return _remember(_comment_cache, line, result)


def _family_of(name: str, types: Mapping[str, str]) -> str:
    if name in types:
        return name
    for suffix, kinds in _COMPOSITE_SUFFIXES.items():
        if name.endswith(suffix) and types.get(name[: -len(suffix)]) in kinds:
            return name[: -len(suffix)]
    return name


def parse_payload(data: bytes | str) -> ParsedPayload:
    """Parse an aws-node ``/metrics`` payload, keeping only ``awscni_*`` families.

    Only lines containing ``awscni_`` are visited (found with ``bytes.find``); line numbers are
    counted only for an error. Raises ``PayloadError`` (and nothing else) for malformed input.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    elif type(data) is not bytes:  # bytearray or memoryview
        data = bytes(data)
    types: dict[str, str] = {}
    helps: dict[str, str] = {}
    by_name: dict[str, list[Sample]] = {}
    seen: set[tuple[str, frozenset[tuple[str, str]]]] = set()
    find, rfind, size, cached_line = data.find, data.rfind, len(data), _line_cache.get
    pos = find(PREFIX)
    while pos >= 0:
        end = find(b"\n", pos)
        if end < 0:
            end = size
        hit = pos
        start = hit if hit == 0 or data[hit - 1] == 0x0A else rfind(b"\n", 0, hit) + 1
        line = data[start:end]
        pos = find(PREFIX, end)
        try:
            if start != hit:  # awscni_ is not at the start of the line
                if line.startswith(b"#"):
                    comment = _comment(line.rstrip())
                    if comment is None:
                        continue
                    keyword, name, value = comment
                    if keyword == "HELP":
                        helps[name] = value
                    elif types.setdefault(name, value) != value:
                        raise _LineError(f"conflicting TYPE for {name}: {types[name]} and {value}")
                    continue
                line = line.strip()
                if not line.startswith(PREFIX):
                    continue
            cached = cached_line(line)
            sample, series = cached if cached is not None else _sample(line)
            known = len(seen)
            seen.add(series)
            if len(seen) == known:
                raise _LineError(f"duplicate series {sample.name}")
            group = by_name.get(series[0])
            if group is None:
                by_name[series[0]] = [sample]
            else:
                group.append(sample)
        except _LineError as exc:
            raise PayloadError(data.count(b"\n", 0, start) + 1, exc.reason) from None
    families: dict[str, Family] = {}
    for name, group in by_name.items():
        fname = _family_of(name, types)
        family = families.get(fname)
        if family is None:
            family = families[fname] = Family(fname, types.get(fname, "untyped"), helps.get(fname))
        family.samples.extend(group)
    return ParsedPayload(families)


class QuickScan(NamedTuple):
    """What ``quick_scan`` found: the awscni samples in line order (name, series text, value; the series
    text is the name and its label block, if any: ``series_labels`` reads it), and the bounds of the runs
    of consecutive samples of one name (a summary interleaves ``_sum`` and ``_count``): each run's first
    index, then ``len(names)``."""

    names: tuple[bytes, ...]
    series: tuple[bytes, ...]
    values: list[float]
    runs: list[int]


class _Values(dict[bytes, float]):
    """Value tokens -> floats, memoised: most repeat from node to node ("0", "1", bucket counts), and this
    C dict lookup costs a fifth of ``float()``. Bounded like the other caches."""

    def __missing__(self, token: bytes) -> float:
        return _remember(self, token, float(token))


class _Canonical(dict[bytes, bool]):
    """Strict series text -> whether its labels are in canonical order: by name, ``le`` and ``quantile``
    last (as Go clients write them). A label set has one such spelling, so two canonical series are the
    same series only if they are the same text. Memoised and bounded; ``_LineError`` for a label set that
    repeats a name."""

    def __missing__(self, series: bytes) -> bool:
        order = [(name in ("le", "quantile"), name) for name in series_labels(series)]
        return _remember(self, series, all(map(lt, order, islice(order, 1, None))))


_value_cache = _Values()
_canonical = _Canonical()


def series_labels(series: bytes) -> Mapping[str, str]:
    """The labels of a series text from ``quick_scan`` (read-only, memoised)."""
    brace = series.find(b"{")
    return _EMPTY if brace < 0 else _labels(series[brace + 1 : -1])[0]


def quick_scan(data: bytes) -> QuickScan | None:
    """The awscni samples of a payload written in the strict form, None when the full parser is needed.

    None whenever a line containing ``awscni_`` is not a strict sample, HELP or TYPE line (every
    occurrence of ``awscni_`` must be the name of one such line), the awscni lines are not ASCII, a value
    does not parse, two TYPE lines conflict, a label set repeats a name or a series repeats:
    ``parse_payload`` then gives the same samples, or the ``PayloadError``. Never raises. The per-line
    work is done by C loops (findall, zip, set, map over memoised values and label sets, compress);
    Python steps only for a value or a label set not seen before.
    """
    first = data.find(PREFIX)
    if first < 0:
        return QuickScan((), (), [], [0])
    last = data.rfind(PREFIX)
    buf = b"\n" + data  # every line starts after a "\n"
    start = buf.rfind(b"\n", 0, first + 1)
    end = buf.find(b"\n", last + 1)
    if end < 0:
        end = len(buf)
    if not (data.isascii() or buf[start:end].isascii()):  # so every awscni line is valid UTF-8
        return None
    found = _Q_SAMPLE.findall(buf, start, end)
    types = _Q_COMMENT.findall(buf, start, end)  # (b"", b"") for a HELP line
    if data.count(PREFIX) != len(found) + len(types):
        return None
    if len(set(types)) != len(dict(types)):
        return None  # conflicting TYPE lines
    if not found:
        return QuickScan((), (), [], [0])
    series, names, more, tokens = zip(*found, strict=True)
    if len(set(series)) != len(series):
        return None  # a series written twice
    try:
        values = list(map(_value_cache.__getitem__, tokens))
        # several labels: the series is the label set, in any order. All in canonical order: distinct
        # texts are distinct series (a memoised C lookup per series beats building each one's label set)
        if any(more) and not all(map(_canonical.__getitem__, compress(series, more))):
            multi = zip(compress(names, more), compress(series, more), strict=True)
            keys = [(name, frozenset(series_labels(text).items())) for name, text in multi]
            if len(set(keys)) != len(keys):
                return None
    except (ValueError, _LineError):
        return None
    runs = [0, *compress(range(1, len(names)), map(ne, names, islice(names, 1, None))), len(names)]
    return QuickScan(names, series, values, runs)
