"""The exposition kept as pre-rendered bytes, the kube-state-metrics `metrics_store` way:
per source and per family, the source's sample lines in both formats; each family's HELP
and TYPE written once, at assembly. A poll re-renders only its own source's lines.

Lines are rendered by prometheus-client itself (a source's families through its
`generate_latest`, then cut at each family's `# HELP`), so they are byte for byte what a
render of the whole snapshot writes. A gzip body is one gzip member whose deflate stream
is the concatenation of each piece's own deflate output, each ended by a full flush (no
back-reference crosses it, as pigz does): a piece is compressed once, when first served.
"""

from __future__ import annotations

import re
import sys
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client import generate_latest as render_text
from prometheus_client.core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as render_openmetrics
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from exporter.label_values import LabelCap

TEXT = 0
OPENMETRICS = 1
FORMATS = (TEXT, OPENMETRICS)
EOF = b"# EOF\n"
GZIP_LEVEL = 6
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime
_FINAL_BLOCK = b"\x03\x00"  # an empty fixed-Huffman block with BFINAL set


class _Families:
    """What `generate_latest` needs: something with `collect()`."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def render(families: Iterable[Metric], fmt: int) -> bytes:
    """prometheus-client's exposition of `families` (OpenMetrics without its `# EOF`)."""
    if fmt == TEXT:
        return render_text(_Families(families))
    rendered: bytes = render_openmetrics(_Families(families))  # type: ignore[no-untyped-call]
    return rendered.removesuffix(EOF)


def sample_lines(samples: Iterable[Sample], cap: LabelCap | None = None) -> bytes:
    """The sample lines prometheus-client writes for these samples, in either format, at a
    fraction of its cost (it checks and escapes every label name of every sample); label
    values over `cap` cut (see `LabelCap`).

    Holds for what the list renderers make: legacy metric and label names, no timestamps,
    exemplars or native histograms; tests/test_collector.py checks every body against
    prometheus-client's own render."""
    lines = []
    fit = cap.max_bytes // 4 if cap is not None else sys.maxsize  # this long always fits
    cut: Callable[[str], str] = cap if cap is not None else str
    for sample in samples:
        value: str = floatToGoString(sample.value)  # type: ignore[no-untyped-call]
        if sample.labels:
            labels = ",".join(
                f'{name}="{_escape_value(text if len(text) <= fit else cut(text))}"'
                for name, text in sorted(sample.labels.items())
            )
            lines.append(f"{sample.name}{{{labels}}} {value}\n")
        else:
            lines.append(f"{sample.name} {value}\n")
    return "".join(lines).encode()


def _escape_value(text: str) -> str:
    if "\\" in text or "\n" in text or '"' in text:
        return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return text


@dataclass(frozen=True, slots=True)
class FamilyText:
    name: str  # as in its TYPE line (a text-format counter ends in _total)
    header: bytes  # HELP, TYPE (and UNIT) lines
    lines: bytes  # its sample lines


_HELP = re.compile(rb"^# HELP ", re.MULTILINE)


def split_families(rendered: bytes) -> Iterator[FamilyText]:
    """Cut a rendered exposition at each `# HELP` line. Sample lines never start with `#`
    (label values escape their newlines), so every line starting so is a header line."""
    starts = [match.start() for match in _HELP.finditer(rendered)]
    for start, stop in zip(starts, [*starts[1:], len(rendered)], strict=True):
        chunk = rendered[start:stop]
        end = 0
        while chunk.startswith(b"# ", end):
            end = chunk.index(b"\n", end) + 1
        header = chunk[:end]
        type_line = header[header.index(b"# TYPE ") + 7 :]
        name = type_line[: type_line.index(b" ")].decode()
        yield FamilyText(name, chunk[:end], chunk[end:])


class Piece:
    """Bytes of the exposition, with their deflate output once it has been asked for."""

    __slots__ = ("_deflated", "data")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._deflated: bytes | None = None

    def deflated(self, compressor: Deflater) -> bytes:
        deflated = self._deflated
        if deflated is None:  # two threads may both compress it: same bytes, no harm
            deflated = self._deflated = compressor.deflate(self.data)
        return deflated


class Deflater:
    """Raw deflate segments that stand alone: each ends with a full flush."""

    def __init__(self) -> None:
        self._compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)

    def deflate(self, data: bytes) -> bytes:
        if not data:
            return b""
        return self._compressor.compress(data) + self._compressor.flush(zlib.Z_FULL_FLUSH)


_EOF_PIECE = Piece(EOF)


@dataclass(frozen=True, slots=True)
class Slot:
    """A family's place in the exposition. An optional family (the text format's
    `_created` gauges) is written only when some source has lines for it."""

    name: str
    header: Piece
    optional: bool = False


Pieces = tuple[dict[str, Piece], dict[str, Piece]]  # by format, then family name


@dataclass(frozen=True, slots=True)
class SourceLines:
    """One source's lines of each family, in both formats: its health lines (made from its
    state at every poll: they carry the poll's time) and its list's lines, with the inputs
    these came from (made again only when those changed: most polls list what the last
    one did)."""

    state: object  # what the health lines show
    view: tuple[object, ...]  # what the list's lines were made from
    health: Pieces
    listed: Pieces
    pieces: Pieces = field(init=False)  # both, as the body is joined from

    def __post_init__(self) -> None:
        health, listed = self.health, self.listed
        both = ({**health[0], **listed[0]}, {**health[1], **listed[1]})
        object.__setattr__(self, "pieces", both)


class Tail:
    """The snapshot's part of a body in one format, after the self-metrics: the cached
    pieces (joined per request, not kept joined: a copy of the whole would stay in
    memory), their CRC-32 and length, and their deflate output once gzip is asked for."""

    def __init__(self, pieces: Sequence[Piece]) -> None:
        self.pieces = pieces
        self.parts = tuple(piece.data for piece in pieces)
        self.crc = self.size = 0
        for part in self.parts:
            self.crc = zlib.crc32(part, self.crc)
            self.size += len(part)
        self._deflated: bytes | None = None
        self._lock = threading.Lock()

    @property
    def deflated(self) -> bytes:
        with self._lock:
            if self._deflated is None:
                compressor = Deflater()
                self._deflated = b"".join(piece.deflated(compressor) for piece in self.pieces)
            return self._deflated


@dataclass(slots=True)
class Rendered:
    """Every source's lines at one point: immutable once made, so a scrape reads one
    consistent state while a refresh makes the next. Its joined bytes are made on the
    first request for them."""

    layout: tuple[Sequence[Slot], Sequence[Slot]]  # by format
    sources: Sequence[SourceLines]  # in the snapshot's order
    _tails: list[Tail | None] = field(default_factory=lambda: [None, None])
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def tail(self, fmt: int) -> Tail:
        with self._lock:
            tail = self._tails[fmt]
            if tail is None:
                tail = self._tails[fmt] = self._join(fmt)
            return tail

    def _join(self, fmt: int) -> Tail:
        parts: list[Piece] = []
        for slot in self.layout[fmt]:
            pieces = [
                piece for source in self.sources if (piece := source.pieces[fmt].get(slot.name))
            ]
            if slot.optional and not pieces:
                continue
            parts.append(slot.header)
            parts.extend(pieces)
        if fmt == OPENMETRICS:
            parts.append(_EOF_PIECE)
        return Tail(parts)


def body(head: Sequence[Piece], tail: Tail, *, gzipped: bool) -> bytes:
    """`head` (put together for this request) then the cached tail; gzip as one member."""
    if not gzipped:
        return b"".join((*(piece.data for piece in head), *tail.parts))
    crc = size = 0
    for piece in head:
        crc = zlib.crc32(piece.data, crc)
        size += len(piece.data)
    crc = crc32_combine(crc, tail.crc, tail.size)
    size = (size + tail.size) & 0xFFFFFFFF
    compressor = Deflater()  # a piece's deflate output once made is kept: the rest is new
    return b"".join(
        (
            _GZIP_HEADER,
            *(piece.deflated(compressor) for piece in head),
            tail.deflated,
            _FINAL_BLOCK,
            crc.to_bytes(4, "little"),
            size.to_bytes(4, "little"),
        )
    )


# CRC-32 of a concatenation from the parts' CRCs (zlib's crc32_combine, which Python's
# zlib module does not offer): multiplication modulo the CRC polynomial, reflected.
_POLY = 0xEDB88320


def _multmodp(a: int, b: int) -> int:
    m, p = 1 << 31, 0
    while True:
        if a & m:
            p ^= b
            if a & (m - 1) == 0:
                return p
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1


def _powers() -> tuple[int, ...]:
    powers, p = [], 1 << 30  # x^1
    for _ in range(32):
        powers.append(p)
        p = _multmodp(p, p)
    return tuple(powers)


_X2N = _powers()  # x^(2^k) modulo the polynomial


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC-32 of A + B, given crc32(A), crc32(B) and len(B)."""
    p, k = 1 << 31, 3  # x^0; a byte is 2^3 bits
    while len2:
        if len2 & 1:
            p = _multmodp(_X2N[k & 31], p)
        len2 >>= 1
        k += 1
    return _multmodp(p, crc1) ^ crc2
