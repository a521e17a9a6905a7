"""An incremental ``multipart/form-data`` parser for PostObject bodies.

A browser upload (``POST /bucket``) carries its fields (key, policy,
signature, metadata...) and then the file in one ``multipart/form-data``
body (RFC 7578, framing of RFC 2046 section 5.1).  The file may be 5 GiB, so
the body cannot be buffered: :class:`FormParser` is fed the body in whatever
pieces the network delivers and returns :class:`FormEvent` values as soon as
it can tell them, a delimiter split across two reads included.

Pure: no Twisted, no I/O, so every chunk boundary can be unit-tested.

States, in body order::

    PREAMBLE --delimiter--> AFTER_DELIMITER --CRLF--> HEADERS --CRLF CRLF--> FIELD | FILE | SKIP
        ^                        |                                           |
        |                        '-- "--" --> EPILOGUE (closing delimiter)   |
        '------------------------- next delimiter ----------------------------'

The stream is parsed as if it began with CRLF, so the first delimiter
(``--boundary`` at the very start) and every later one (``CRLF--boundary``)
are found by the same search.  The small fields before the file are kept,
their total bounded (more is AWS's ``MaxPostPreDataLengthExceeded``); the
file's bytes are handed on as they arrive, holding back only the last few
bytes that might begin a delimiter.  Framing errors are AWS's
``MalformedPOSTRequest``.  Parts after the
file are parsed for framing but ignored, as AWS ignores them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lightningstor import errors

DEFAULT_MAX_FIELDS_BYTES = 64 * 1024
"""The fields before the file, names, values and part headers together (AWS
allows a 20 KB policy; the rest of a form is a few hundred bytes)."""

_MAX_DELIMITER_LINE = 256  # transport padding after a delimiter (RFC 2046 allows LWSP)
_MAX_PART_HEADERS = 8 * 1024  # one part's header block: a few hundred bytes from any browser
_BOUNDARY_RE = re.compile(rb"boundary=(?:\"([^\"]{1,70})\"|([^\s;\",]{1,70}))", re.IGNORECASE)
_PARAM_RE = re.compile(r';\s*([^\s=;]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))')

PREAMBLE, AFTER_DELIMITER, HEADERS, FIELD, FILE, SKIP, EPILOGUE = range(7)


def malformed(detail: str | None = None) -> errors.S3Error:
    """AWS's answer to a body that is not well-formed multipart/form-data."""
    if not detail:
        return errors.MalformedPOSTRequest()
    return errors.MalformedPOSTRequest(f"{errors.ERROR_TABLE['MalformedPOSTRequest'][1]} ({detail})")


def boundary_of(content_type: str) -> bytes | None:
    """The boundary of a ``multipart/form-data`` Content-Type, or None when
    the request is not a form upload (another type, or no usable boundary)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "multipart/form-data":
        return None
    match = _BOUNDARY_RE.search(content_type.encode("latin-1", "replace"))
    if match is None:
        return None
    return match.group(1) or match.group(2)


@dataclass
class FormEvent:
    """One thing the parser found.

    ``kind`` is ``field`` (``name``, ``value`` complete), ``file`` (the file
    part starts: ``name``, ``filename``, ``content_type``), ``data`` (file
    bytes in ``data``), ``file_end`` or ``end`` (the closing delimiter).
    """

    kind: str
    name: str = ""
    value: str = ""
    filename: str | None = None
    content_type: str | None = None
    data: bytes = b""


@dataclass
class _Part:
    name: str
    filename: str | None
    content_type: str | None
    value: list[bytes] = field(default_factory=list)


class FormParser:
    """Parses one ``multipart/form-data`` body fed in arbitrary pieces.

    The first part whose name is ``file`` (any case) is the file; its bytes
    are returned as ``data`` events and never kept.  Every part before it
    is a field, and all of them together (headers included) may not exceed
    ``max_fields_bytes``: the caller cannot be made to hold more than that
    before the file starts.  Raises :func:`malformed` errors (an S3Error)
    for framing it cannot accept.
    """

    def __init__(self, boundary: bytes, *, max_fields_bytes: int = DEFAULT_MAX_FIELDS_BYTES) -> None:
        if not boundary or len(boundary) > 70:
            raise malformed("bad boundary")
        self._delimiter = b"\r\n--" + boundary
        self._buffer = b"\r\n"  # see the module docstring
        self._state = PREAMBLE
        self._part: _Part | None = None
        self._budget = max_fields_bytes
        self._file_seen = False
        self.complete = False  # the closing delimiter arrived

    @property
    def file_seen(self) -> bool:
        return self._file_seen

    def feed(self, data: bytes) -> list[FormEvent]:
        """Parse ``data`` (the next bytes of the body); the events it completes."""
        if self._state == EPILOGUE:
            return []  # anything after the closing delimiter is ignored
        self._buffer = self._buffer + data if self._buffer else data
        events: list[FormEvent] = []
        while self._step(events):
            pass
        return events

    def finish(self) -> None:
        """The body ended: raise unless the closing delimiter was seen."""
        if not self.complete:
            raise malformed("the closing boundary is missing: the body is truncated")

    # -- one state at a time; True while progress can be made --------------
    def _step(self, events: list[FormEvent]) -> bool:
        state = self._state
        if state == PREAMBLE:
            return self._skip_preamble()
        if state == AFTER_DELIMITER:
            return self._after_delimiter(events)
        if state == HEADERS:
            return self._headers(events)
        if state in (FIELD, FILE, SKIP):
            return self._content(events)
        return False

    def _skip_preamble(self) -> bool:
        index = self._buffer.find(self._delimiter)
        if index < 0:
            # Keep what could be the start of the delimiter; the preamble
            # itself is bounded like the fields (it is held, then dropped).
            keep = len(self._delimiter) - 1
            self._charge(max(0, len(self._buffer) - keep))
            self._buffer = self._buffer[-keep:]
            return False
        self._charge(index)
        self._buffer = self._buffer[index + len(self._delimiter):]
        self._state = AFTER_DELIMITER
        return True

    def _after_delimiter(self, events: list[FormEvent]) -> bool:
        buffer = self._buffer
        if buffer[:2] == b"--":
            self._state = EPILOGUE
            self.complete = True
            self._buffer = b""
            events.append(FormEvent("end"))
            return False
        if buffer == b"-":
            return False  # the closing "--" may be split
        end = buffer.find(b"\r\n")
        line = buffer[:end] if end >= 0 else buffer.rstrip(b"\r")
        if line.strip(b" \t") or (end < 0 and len(buffer) > _MAX_DELIMITER_LINE):
            raise malformed("junk after a boundary")
        if end < 0:
            return False
        self._buffer = buffer[end + 2:]
        self._state = HEADERS
        return True

    def _headers(self, events: list[FormEvent]) -> bool:
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if buffer[:2] == b"\r\n":
            raise malformed("a part has no Content-Disposition")
        if end < 0:
            # Bounded, so a header block dripped in byte by byte is not
            # rescanned without end (parts after the file included).
            if len(buffer) > _MAX_PART_HEADERS:
                raise malformed("a part's headers are too long")
            if len(buffer) > self._budget:
                raise _too_large()
            return False
        self._charge(end + 4)
        self._buffer = buffer[end + 4:]
        part = _parse_part_headers(buffer[:end])
        self._part = part
        if self._file_seen:
            self._state = SKIP
        elif part.name.lower() == "file":
            self._file_seen = True
            self._state = FILE
            events.append(FormEvent("file", name=part.name, filename=part.filename, content_type=part.content_type))
        else:
            self._state = FIELD
        return True

    def _content(self, events: list[FormEvent]) -> bool:
        buffer = self._buffer
        index = buffer.find(self._delimiter)
        if index < 0:
            keep = len(self._delimiter) - 1
            if len(buffer) > keep:
                self._take(buffer[:-keep], events)
                self._buffer = buffer[-keep:]
            return False
        self._take(buffer[:index], events)
        self._buffer = buffer[index + len(self._delimiter):]
        self._end_part(events)
        self._state = AFTER_DELIMITER
        return True

    def _take(self, data: bytes, events: list[FormEvent]) -> None:
        if not data:
            return
        if self._state == FILE:
            events.append(FormEvent("data", data=data))
        elif self._state == FIELD:
            self._charge(len(data))
            assert self._part is not None
            self._part.value.append(data)

    def _end_part(self, events: list[FormEvent]) -> None:
        part, self._part = self._part, None
        if part is None:
            return
        if self._state == FILE:
            events.append(FormEvent("file_end"))
        elif self._state == FIELD:
            try:
                value = b"".join(part.value).decode("utf-8")
            except UnicodeDecodeError:
                raise malformed(f"the value of field {part.name!r} is not UTF-8") from None
            events.append(FormEvent("field", name=part.name, value=value))

    def _charge(self, size: int) -> None:
        """Count bytes held (or skipped) before the file against the bound."""
        if self._file_seen:
            return
        self._budget -= size
        if self._budget < 0:
            raise _too_large()


def _too_large() -> errors.S3Error:
    return errors.MaxPostPreDataLengthExceeded()


def _parse_part_headers(block: bytes) -> _Part:
    """Content-Disposition (``form-data; name=...; filename=...``) and
    Content-Type of one part; other headers are ignored."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        raise malformed("part headers are not UTF-8") from None
    disposition: str | None = None
    content_type: str | None = None
    for line in text.split("\r\n"):
        name, sep, value = line.partition(":")
        if not sep:
            raise malformed("a part header line has no colon")
        lower = name.strip().lower()
        if lower == "content-disposition":
            disposition = value.strip()
        elif lower == "content-type":
            content_type = value.strip()
    if disposition is None:
        raise malformed("a part has no Content-Disposition")
    kind, _, params = disposition.partition(";")
    if kind.strip().lower() != "form-data":
        raise malformed("a part is not form-data")
    names: dict[str, str] = {}
    for match in _PARAM_RE.finditer(";" + params):
        quoted, bare = match.group(2), match.group(3)
        # Only \" and \\ are escapes: browsers send a Windows path's
        # backslashes as they are (filename="C:\Users\me\x.jpg").
        value = re.sub(r'\\(["\\])', r"\1", quoted) if quoted is not None else bare.strip()
        names.setdefault(match.group(1).lower(), value)
    if not names.get("name"):
        raise malformed("a part has no name")
    return _Part(names["name"], names.get("filename"), content_type)
