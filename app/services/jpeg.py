"""Lossless removal of a JPEG's metadata segments, so an upload can be kept without re-encoding.

/predict keeps a copy of an unstored upload to draw its heatmap on later. Re-encoding the
decoded 1024x1024 image costs about 4 ms of CPU per request on the two cores the forward pass
needs, and loses quality; copying the upload's own compressed data without its metadata costs a
few microseconds and decodes to exactly the same pixels.

Kept: every segment the decoder needs (quantisation and Huffman tables, frame and scan headers,
restart interval, the entropy-coded data), a plain JFIF APP0 (colour space) and Adobe APP14
(colour transform). Dropped: APP1-APP13 and APP15 (EXIF, XMP, ICC, IPTC, MPF, maker notes), COM
(comments), JFIF extensions and thumbnails, and anything after the end-of-image marker. Anything
unexpected gives None, and the caller re-encodes from pixels instead.
"""

from __future__ import annotations

_SOI, _EOI, _SOS, _APP0, _APP14, _COM = 0xD8, 0xD9, 0xDA, 0xE0, 0xEE, 0xFE
_PLAIN_JFIF_LENGTH = 16  # "JFIF\0", version, density units and values, a 0x0 thumbnail


def strip_metadata(data: bytes) -> bytes | None:
    """``data`` without metadata segments, or None if it is not a JPEG this parser fully understands."""
    if not data.startswith(b"\xff\xd8"):
        return None
    out, i, n = [b"\xff\xd8"], 2, len(data)
    while i < n:
        if data[i] != 0xFF:
            return None
        while i < n and data[i] == 0xFF:  # fill bytes before a marker
            i += 1
        if i >= n:
            return None
        marker, i = data[i], i + 1
        if marker == _EOI:
            out.append(b"\xff\xd9")
            return b"".join(out)
        if marker in (0x00, 0x01, _SOI) or 0xD0 <= marker <= 0xD7:  # no standalone marker belongs here
            return None
        if i + 2 > n:
            return None
        length = int.from_bytes(data[i : i + 2], "big")
        end = i + length
        if length < 2 or end > n:
            return None
        if _keep(marker, data[i + 2 : end]):
            out.append(bytes((0xFF, marker)) + data[i:end])
        i = end
        if marker == _SOS:
            scan_end = _end_of_scan(data, i)
            if scan_end is None:
                return None
            out.append(data[i:scan_end])
            i = scan_end
    return None  # no end-of-image marker: truncated


def _keep(marker: int, payload: bytes) -> bool:
    if marker == _APP0:
        return payload.startswith(b"JFIF\x00") and len(payload) + 2 == _PLAIN_JFIF_LENGTH
    if marker == _APP14:
        return payload.startswith(b"Adobe")
    return not (0xE0 <= marker <= 0xEF or marker == _COM)


def _end_of_scan(data: bytes, i: int) -> int | None:
    """Where the entropy-coded data that starts at ``i`` ends: the first byte of the next marker."""
    n = len(data)
    while True:
        j = data.find(b"\xff", i)
        if j < 0:
            return None
        k = j
        while k + 1 < n and data[k + 1] == 0xFF:
            k += 1
        if k + 1 >= n:
            return None
        nxt = data[k + 1]
        if k == j and (nxt == 0x00 or 0xD0 <= nxt <= 0xD7):  # a stuffed 0xFF or a restart marker
            i = j + 2
            continue
        return j
