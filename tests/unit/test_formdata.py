"""The incremental multipart/form-data parser of PostObject (lightningstor.s3.formdata)."""

from __future__ import annotations

import pytest

from lightningstor import errors
from lightningstor.s3.formdata import FormEvent, FormParser, boundary_of

B = b"----WebKitFormBoundary7MA4YWxkTrZu0gW"


def form(fields: list[tuple[str, str]], file: bytes = b"", *, filename: str = "a.txt", tail: bytes = b"--\r\n",
         after: list[tuple[str, str]] = ()) -> bytes:  # type: ignore[assignment]
    """A body as browsers build it: fields, the file, parts after, the close."""
    out = b""
    for name, value in fields:
        out += b"--" + B + f'\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    out += b"--" + B + f'\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'.encode()
    out += b"Content-Type: text/plain\r\n\r\n" + file + b"\r\n"
    for name, value in after:
        out += b"--" + B + f'\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    return out + b"--" + B + tail


def parse(body: bytes, pieces: list[int] | None = None, **kw: int) -> tuple[dict[str, str], bytes, list[str]]:
    """Feed ``body`` split at ``pieces`` (offsets); (fields, file bytes, event kinds)."""
    parser = FormParser(B, **kw)
    cuts = [0, *(pieces or []), len(body)]
    events: list[FormEvent] = []
    for start, end in zip(cuts, cuts[1:]):
        events += parser.feed(body[start:end])
    parser.finish()
    fields = {e.name: e.value for e in events if e.kind == "field"}
    data = b"".join(e.data for e in events if e.kind == "data")
    return fields, data, [e.kind for e in events if e.kind != "data"]


def test_fields_then_file_then_end() -> None:
    """Fields before the file come out whole, the file's bytes exactly (a
    CRLF inside the file is data), then file_end and end."""
    body = form([("key", "a/${filename}"), ("Policy", "eyJ9")], b"line1\r\nline2\r\n")
    fields, data, kinds = parse(body)
    assert fields == {"key": "a/${filename}", "Policy": "eyJ9"}
    assert data == b"line1\r\nline2\r\n"
    assert kinds == ["field", "field", "file", "file_end", "end"]


def test_every_split_position_gives_the_same_result() -> None:
    """A small body cut in two at every byte position, and fed one byte at a
    time: the same fields and file each time (delimiters split across reads)."""
    body = form([("key", "k"), ("x-amz-meta-a", "\r\n--almost")], b"--" + B[:-1] + b"\r\n-\r")
    expected = parse(body)
    assert expected[1] == b"--" + B[:-1] + b"\r\n-\r"
    for cut in range(1, len(body)):
        assert parse(body, [cut]) == expected, cut
    assert parse(body, list(range(1, len(body)))) == expected


def test_file_part_name_is_case_insensitive_and_filename_is_reported() -> None:
    """``name="File"`` is the file; its filename and Content-Type are given."""
    body = form([("key", "k")], b"x").replace(b'name="file"', b'name="File"')
    events = FormParser(B).feed(body)
    start = next(e for e in events if e.kind == "file")
    assert (start.filename, start.content_type) == ("a.txt", "text/plain")


def test_preamble_and_epilogue_are_ignored() -> None:
    """Bytes before the first boundary and after the closing one are not parts."""
    body = b"preamble text\r\n" + form([("key", "k")], b"x") + b"epilogue"
    fields, data, _ = parse(body)
    assert (fields, data) == ({"key": "k"}, b"x")


def test_parts_after_the_file_are_ignored() -> None:
    """AWS ignores fields after the file: no field events for them."""
    fields, data, kinds = parse(form([("key", "k")], b"x", after=[("late", "v")]))
    assert fields == {"key": "k"} and data == b"x"
    assert kinds == ["field", "file", "file_end", "end"]


def test_missing_closing_boundary_is_truncated() -> None:
    """A body that stops inside the file (or before ``--``) fails finish()."""
    body = form([("key", "k")], b"abcdef")
    for cut in (len(body) - 40, len(body) - 4):
        parser = FormParser(B)
        parser.feed(body[:cut])
        with pytest.raises(errors.S3Error) as e:
            parser.finish()
        assert e.value.code == "MalformedPOSTRequest"


def test_fields_over_the_bound_are_refused() -> None:
    """The fields before the file are bounded (here 1 KiB): more is refused
    while they arrive, even without a delimiter in sight."""
    with pytest.raises(errors.S3Error) as e:
        parse(form([("policy", "p" * 2000)], b"x"), max_fields_bytes=1024)
    assert e.value.code == "MaxPostPreDataLengthExceeded"
    parser = FormParser(B, max_fields_bytes=1024)
    parser.feed(b"--" + B + b'\r\nContent-Disposition: form-data; name="a"\r\n\r\n')
    with pytest.raises(errors.S3Error):
        for _ in range(20):
            parser.feed(b"v" * 100)
    # The file itself is not bounded.
    assert len(parse(form([("key", "k")], b"z" * 5000), max_fields_bytes=1024)[1]) == 5000


def test_bad_framing_is_malformed() -> None:
    """Junk after a boundary, a part without Content-Disposition or name,
    non-form-data parts: MalformedPOSTRequest."""
    bad = [
        b"--" + B + b"junk\r\n",
        b"--" + B + b"\r\n\r\nvalue\r\n--" + B + b"--",
        b"--" + B + b"\r\nContent-Type: text/plain\r\n\r\nv\r\n",
        b"--" + B + b"\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nv\r\n",
        b"--" + B + b"\r\nContent-Disposition: form-data\r\n\r\nv\r\n",
    ]
    for body in bad:
        with pytest.raises(errors.S3Error) as e:
            FormParser(B).feed(body)
        assert e.value.code == "MalformedPOSTRequest", body


def test_part_headers_are_bounded_after_the_file_too() -> None:
    """A part's header block may not grow past 8 KiB, even after the file
    (where nothing counts against the fields' bound)."""
    parser = FormParser(B)
    parser.feed(form([("key", "k")], b"x", tail=b"\r\nX-Padding: "))
    with pytest.raises(errors.S3Error) as e:
        for _ in range(10):
            parser.feed(b"p" * 1024)
    assert e.value.code == "MalformedPOSTRequest"


def test_quoted_names_and_transport_padding() -> None:
    """Quoted parameters may hold ``;`` and escaped quotes; spaces after a
    boundary (RFC 2046 transport padding) are allowed."""
    body = (b"--" + B + b'  \r\nContent-Disposition: form-data; name="a;b"; filename="x\\"y"\r\n\r\nv\r\n'
            + b"--" + B + b"--")
    events = FormParser(B).feed(body)
    assert events[0].kind == "field" and events[0].name == "a;b"


def test_boundary_of_content_type() -> None:
    """The boundary of multipart/form-data (quoted or not); None otherwise."""
    assert boundary_of("multipart/form-data; boundary=abc") == b"abc"
    assert boundary_of('Multipart/Form-Data; charset=utf-8; boundary="a b"') == b"a b"
    assert boundary_of("application/xml") is None
    assert boundary_of("multipart/form-data") is None
