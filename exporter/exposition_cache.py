"""The exposition as pre-rendered bytes, the kube-state-metrics `metrics_store` way: each
family's HELP and TYPE lines written once, by a header writer of its own, and each
source's sample lines of each family kept as a piece; a body is the headers with every
source's pieces between them. The bytes are those prometheus-client writes for the same
families (tests/exposition_reference.py renders through it; tests/test_collector.py checks
that every body equals that render).

A gzip body is one gzip member whose deflate stream is the concatenation of each piece's
own deflate output, each ended by a full flush (no back-reference crosses it, as pigz
does): a piece is compressed once, when made, and kept only so (`Piece`).
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

from prometheus_client.core import Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from exporter.label_values import LabelCap

TEXT = 0
OPENMETRICS = 1
EOF = b"# EOF\n"
GZIP_LEVEL = 6
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime
_FINAL_BLOCK = b"\x03\x00"  # an empty fixed-Huffman block with BFINAL set


def header(family: Metric, fmt: int) -> bytes:
    """A family's HELP and TYPE (and UNIT) lines as prometheus-client writes them: the
    text format names a counter by its `_total` series, OpenMetrics also escapes quotes."""
    name, kind = family.name, family.type
    text = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
    unit = ""
    if fmt == OPENMETRICS:
        text = text.replace('"', r"\"")
        unit = f"# UNIT {name} {family.unit}\n" if family.unit else ""
    elif kind == "counter":
        name = f"{name}_total"
    return f"# HELP {name} {text}\n# TYPE {name} {kind}\n{unit}".encode()


def sample_lines(samples: Iterable[Sample], cap: LabelCap | None = None) -> bytes:
    """The sample lines prometheus-client writes for these samples, in either format, at a
    fraction of its cost (it checks and escapes every label name of every sample); label
    values over `cap` cut (see `LabelCap`). Holds for legacy metric and label names, no
    timestamps, exemplars or native histograms."""
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


class Piece:
    """Bytes of the exposition, kept deflated (with their CRC-32 and length for the gzip
    trailer): a fleet's text is ~80 MB, its deflate output a twentieth, and Prometheus
    asks for gzip. A scrape that asks for plain text inflates the pieces again."""

    __slots__ = ("crc", "deflated", "size", "zeros_crc")

    def __init__(self, data: bytes) -> None:
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        self.deflated = compressor.compress(data) + compressor.flush(zlib.Z_FULL_FLUSH)
        self.crc = zlib.crc32(data)
        self.size = len(data)
        self.zeros_crc = zlib.crc32(_zeros(self.size))

    @property
    def data(self) -> bytes:
        return zlib.decompressobj(-zlib.MAX_WBITS).decompress(self.deflated)

    def crc_after(self, crc: int) -> int:
        """The CRC-32 of some bytes whose CRC is `crc` followed by this piece's: a CRC is
        affine in its initial value, and running it over zeros gives that map's linear
        part (zlib's crc32_combine, which Python's zlib does not offer)."""
        return zlib.crc32(_zeros(self.size), crc) ^ self.zeros_crc ^ self.crc


_zero_bytes = bytes(1 << 16)


def _zeros(size: int) -> memoryview:
    global _zero_bytes  # grown for the largest piece; a thread racing it keeps its own
    zeros = _zero_bytes
    if size > len(zeros):
        zeros = _zero_bytes = bytes(max(size, 2 * len(zeros)))
    return memoryview(zeros)[:size]


Pieces = tuple[dict[str, Piece], dict[str, Piece]]  # one source's lines: by format, by family


class Slot(NamedTuple):
    name: str
    header: Piece
    optional: bool  # written only when some source has lines for it


class Layout:
    """Families in exposition order: each one's headers, and each source's lines of them.
    The text format writes a counter's `_created` samples apart, right after it, as a
    gauge family whose HELP says what they are (prometheus-client would repeat the
    counter's); OpenMetrics keeps them in the counter."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.slots: tuple[list[Slot], list[Slot]] = ([], [])
        for family in families:
            for fmt, slots in enumerate(self.slots):
                slots.append(Slot(family.name, Piece(header(family, fmt)), optional=False))
            if family.type == "counter":
                created = _created_family(family)
                self.slots[TEXT].append(Slot(created.name, Piece(header(created, TEXT)), True))

    def join(self, sources: Sequence[Pieces], fmt: int) -> list[Piece]:
        parts: list[Piece] = []
        for name, family_header, optional in self.slots[fmt]:
            lines = [piece for source in sources if (piece := source[fmt].get(name))]
            if lines or not optional:
                parts += (family_header, *lines)
        return parts


def _created_family(counter: Metric) -> Metric:
    text = f"Unix time each series of {counter.name}_total was first counted."
    return Metric(f"{counter.name}_created", text, "gauge")


def pieces(families: Iterable[Metric], cap: LabelCap | None = None) -> Pieces:
    """A source's lines of each family with samples; shared by both formats but for a
    counter whose `_created` samples the text format writes apart. Label values over `cap`
    are cut, and counted once."""
    text: dict[str, Piece] = {}
    openmetrics: dict[str, Piece] = {}
    uncounted = None if cap is None else LabelCap(cap.max_bytes)  # the text split: cut again
    for family in families:
        if not family.samples:
            continue
        text[family.name] = openmetrics[family.name] = Piece(sample_lines(family.samples, cap))
        created = f"{family.name}_created"
        if family.type == "counter" and any(s.name == created for s in family.samples):
            kept = (s for s in family.samples if s.name != created)
            text[family.name] = Piece(sample_lines(kept, uncounted))
            stamps = (s for s in family.samples if s.name == created)
            text[created] = Piece(sample_lines(stamps, uncounted))
    return text, openmetrics


def body(parts: Iterable[Piece], *, gzipped: bool) -> bytes:
    """The pieces inflated and joined, or as one gzip member from their deflate output."""
    if not gzipped:
        return b"".join(piece.data for piece in parts)
    crc = size = 0
    deflated = [_GZIP_HEADER]
    for piece in parts:
        crc = piece.crc_after(crc)
        size += piece.size
        deflated.append(piece.deflated)
    trailer = crc.to_bytes(4, "little") + (size & 0xFFFFFFFF).to_bytes(4, "little")
    return b"".join((*deflated, _FINAL_BLOCK, trailer))
