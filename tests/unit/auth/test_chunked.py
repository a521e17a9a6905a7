"""AwsChunkedDecoder against AWS's worked examples, botocore's encoder and hand-built bodies.

AWS's examples ("Transferring Payload in Multiple Chunks" and "Including
Trailing Headers"): secret ``wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY``,
20130524T000000Z, 64 KiB + 1 KiB of ``a``; seed signatures 4f232c43... and
106e2a8a..., each chunk signature chained on the previous one.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zlib
from collections.abc import Callable

import pytest
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lightningstor import errors
from lightningstor.auth import sigv4
from lightningstor.auth.chunked import AwsChunkedDecoder
from lightningstor.auth.request import StreamingContext

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
KEY = sigv4.signing_key(SECRET, "20130524", "us-east-1")
SCOPE = "20130524/us-east-1/s3/aws4_request"
DATE = "20130524T000000Z"
SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
TRAILER_SEED = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"

DOCS_BODY = (
    b"10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n"
    + b"a" * 65536
    + b"\r\n400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n"
    + b"a" * 1024
    + b"\r\n0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n"
)

_TRAILER_CHUNKS = (
    b"10000;chunk-signature=b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2\r\n"
    + b"a" * 65536
    + b"\r\n400;chunk-signature=1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7\r\n"
    + b"a" * 1024
    + b"\r\n0;chunk-signature=2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992\r\n"
)
_TRAILER_LINES = (
    b"x-amz-checksum-crc32c:sOO8/Q==\r\n"
    b"x-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n\r\n"
)


def _context(seed: str = SEED) -> StreamingContext:
    return StreamingContext(signing_key=KEY, amz_date=DATE, scope=SCOPE, seed_signature=seed)


def _decode(decoder: AwsChunkedDecoder, body: bytes, step: int | None = None) -> tuple[bytes, dict[str, str]]:
    out = bytearray()
    pieces = [body] if step is None else [body[i : i + step] for i in range(0, len(body), step)]
    for piece in pieces:
        for chunk in decoder.feed(piece):
            out += chunk
    return bytes(out), decoder.finish()


def _signed_decoder(**kwargs: object) -> AwsChunkedDecoder:
    return AwsChunkedDecoder(signing=_context(), trailer_expected=False, **kwargs)  # type: ignore[arg-type]


def test_aws_example_signed_chunks() -> None:
    """AWS's 66560-byte example (Content-Length 66824) decodes to its payload with every signature checked."""
    assert len(DOCS_BODY) == 66824
    decoder = _signed_decoder(decoded_content_length=66560)
    data, trailers = _decode(decoder, DOCS_BODY)
    assert data == b"a" * 66560 and trailers == {}
    assert decoder.decoded_length == 66560


@pytest.mark.parametrize("step", [1, 7, 4096, 65536 + 90])
def test_aws_example_any_split(step: int) -> None:
    """The body split into any piece size decodes identically."""
    data, _ = _decode(_signed_decoder(), DOCS_BODY, step=step)
    assert data == b"a" * 66560


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"a" * 1024, b"a" * 1023 + b"b"),  # data changed
        (b"ad80c730", b"ad80c731"),  # first chunk signature changed
        (b"b6c6ea8a", b"b6c6ea8b"),  # final (empty) chunk signature changed
    ],
)
def test_aws_example_tampering(old: bytes, new: bytes) -> None:
    """Changed data or a changed chunk signature is SignatureDoesNotMatch."""
    body = DOCS_BODY.replace(old, new, 1) if old != b"a" * 1024 else DOCS_BODY.replace(b"a\r\n0;", b"b\r\n0;")
    with pytest.raises(errors.SignatureDoesNotMatch):
        _decode(_signed_decoder(), body)


def test_wrong_seed_fails_on_first_chunk() -> None:
    """The chain starts at the request signature: another seed fails the first chunk."""
    decoder = AwsChunkedDecoder(signing=_context(seed="0" * 64), trailer_expected=False)
    with pytest.raises(errors.SignatureDoesNotMatch):
        decoder.feed(DOCS_BODY[: 88 + 65536])


def test_data_is_emitted_before_the_chunk_completes() -> None:
    """Bytes come back as they arrive, not after the whole chunk is buffered."""
    decoder = _signed_decoder()
    assert b"".join(decoder.feed(DOCS_BODY[:1000])) == b"a" * (1000 - 88)
    assert decoder.decoded_length == 1000 - 88


def test_chunks_reordered_fail() -> None:
    """Swapping two correctly signed chunks breaks the chain."""
    first = DOCS_BODY[: 88 + 65536 + 2]
    second = DOCS_BODY[len(first) : len(first) + 86 + 1024 + 2]
    assert first.startswith(b"10000;") and second.startswith(b"400;")
    rest = DOCS_BODY[len(first) + len(second) :]
    with pytest.raises(errors.SignatureDoesNotMatch):
        _decode(_signed_decoder(), second + first + rest)


@pytest.mark.parametrize("blank_line", [False, True])
def test_aws_example_signed_trailer(blank_line: bool) -> None:
    """AWS's trailer example verifies, in the SDKs' framing and in the docs' (blank line after chunk 0)."""
    body = _TRAILER_CHUNKS + (b"\r\n" if blank_line else b"") + _TRAILER_LINES
    decoder = AwsChunkedDecoder(
        signing=_context(TRAILER_SEED), trailer_expected=True, trailer_signed=True, trailer_names=["x-amz-checksum-crc32c"]
    )
    data, trailers = _decode(decoder, body, step=1000)
    assert data == b"a" * 66560
    assert trailers == {"x-amz-checksum-crc32c": "sOO8/Q=="}


@pytest.mark.parametrize(
    ("old", "new"),
    [(b"sOO8/Q==", b"sOO8/R=="), (b"d81f82fc", b"d81f82fd"), (b"x-amz-trailer-signature:d81f82fc", b"x-amz-trailer-sig:d81")],
)
def test_aws_example_trailer_tampering(old: bytes, new: bytes) -> None:
    """A changed trailer value or signature, or no signature at all, is refused."""
    body = _TRAILER_CHUNKS + _TRAILER_LINES.replace(old, new)
    decoder = AwsChunkedDecoder(signing=_context(TRAILER_SEED), trailer_expected=True, trailer_signed=True)
    with pytest.raises((errors.SignatureDoesNotMatch, errors.InvalidArgument)):
        _decode(decoder, body)


def _crc32_b64(data: bytes) -> str:
    return base64.b64encode((zlib.crc32(data) & 0xFFFFFFFF).to_bytes(4, "big")).decode()


@pytest.mark.parametrize("size", [0, 1, 1000, 3000])
@pytest.mark.parametrize("with_checksum", [True, False])
def test_botocore_unsigned_bodies(size: int, with_checksum: bool) -> None:
    """Bodies from botocore's own AwsChunkedWrapper (what boto3 sends over HTTPS) decode exactly."""
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    wrapper = AwsChunkedWrapper(
        io.BytesIO(payload),
        checksum_cls=Crc32Checksum if with_checksum else None,
        checksum_name="x-amz-checksum-crc32",
        chunk_size=1024,
    )
    body = wrapper.read()
    decoder = AwsChunkedDecoder(
        signing=None,
        trailer_expected=with_checksum,
        trailer_names=["x-amz-checksum-crc32"] if with_checksum else None,
        decoded_content_length=size,
    )
    data, trailers = _decode(decoder, body, step=333)
    assert data == payload
    assert trailers == ({"x-amz-checksum-crc32": _crc32_b64(payload)} if with_checksum else {})


# --------------------------------------------------------------------------- hand-built bodies


def _sign_chunk(previous: str, data: bytes) -> str:
    return sigv4.sign_hex(KEY, sigv4.chunk_string_to_sign(DATE, SCOPE, previous, hashlib.sha256(data).hexdigest()))


def build_body(
    payload: bytes,
    chunk_size: int,
    *,
    signed: bool,
    trailers: dict[str, str] | None = None,
    style: str = "aws",
) -> bytes:
    """An aws-chunked body; ``style`` 'minio' mimics minio-go's LF-terminated trailer lines."""
    out = bytearray()
    previous = SEED
    pieces = [payload[i : i + chunk_size] for i in range(0, len(payload), chunk_size)] + [b""]
    for piece in pieces:
        if signed:
            previous = _sign_chunk(previous, piece)
            out += f"{len(piece):x};chunk-signature={previous}\r\n".encode()
        else:
            out += f"{len(piece):x}\r\n".encode()
        if piece:
            out += piece + b"\r\n"
    if trailers is None:
        return bytes(out + b"\r\n")
    canonical = "".join(f"{name}:{value}\n" for name, value in trailers.items())
    if style == "minio":
        out += canonical.encode() + b"\r\n"
    else:
        out += canonical.replace("\n", "\r\n").encode()
    if signed:
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        signature = sigv4.sign_hex(KEY, sigv4.trailer_string_to_sign(DATE, SCOPE, previous, digest))
        out += f"x-amz-trailer-signature:{signature}\r\n".encode()
    return bytes(out + b"\r\n")


def _decoder_for(signed: bool, trailers: dict[str, str] | None) -> AwsChunkedDecoder:
    return AwsChunkedDecoder(
        signing=_context() if signed else None,
        trailer_expected=trailers is not None,
        trailer_signed=signed and trailers is not None,
        trailer_names=list(trailers) if trailers is not None else None,
    )


@pytest.mark.parametrize("signed", [True, False])
def test_minio_go_trailer_framing(signed: bool) -> None:
    """minio-go's ``name:value\\n\\r\\n`` trailer lines (signed and unsigned) decode."""
    trailers = {"x-amz-checksum-crc32c": "abcd"}
    body = build_body(b"hello world", 4, signed=signed, trailers=trailers, style="minio")
    assert _decode(_decoder_for(signed, trailers), body) == (b"hello world", trailers)


def test_several_signed_trailers() -> None:
    """More than one trailer, signed together, is returned whole."""
    trailers = {"x-amz-checksum-crc32": "AAAAAA==", "x-amz-meta-late": "v"}
    body = build_body(b"x" * 10, 3, signed=True, trailers=trailers)
    assert _decode(_decoder_for(True, trailers), body) == (b"x" * 10, trailers)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"zz\r\nab\r\n0\r\n\r\n", errors.InvalidArgument),  # non-hex size
        (b"\r\n", errors.InvalidArgument),  # empty size
        (b"2\nab\r\n0\r\n\r\n", errors.InvalidArgument),  # bare LF after size
        (b"2\r\nabc\r\n0\r\n\r\n", errors.InvalidArgument),  # data longer than size
        (b"2\r\nab0\r\n\r\n", errors.InvalidArgument),  # missing CRLF after data
        (b"2\r\nab\r\n0\r\n\r\nextra", errors.InvalidArgument),  # data after the end
        (b"2\r\nab\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n", errors.InvalidArgument),  # trailer not expected
        (b"11\r\n" + b"a" * 17 + b"\r\n0\r\n\r\n", errors.InvalidArgument),  # chunk over max_chunk_size
        (b"1" * 5000 + b"\r\n", errors.InvalidArgument),  # size line too long
        (b"00000000000000001\r\na\r\n0\r\n\r\n", errors.InvalidArgument),  # more than 16 hex digits
    ],
)
def test_unsigned_framing_errors(body: bytes, error: type[Exception]) -> None:
    """Malformed framing is InvalidArgument, raised from feed."""
    decoder = AwsChunkedDecoder(signing=None, trailer_expected=False, max_chunk_size=16)
    with pytest.raises(error):
        decoder.feed(body)


def test_signed_chunk_without_signature() -> None:
    """In signed mode a chunk header without chunk-signature is refused."""
    decoder = _signed_decoder()
    with pytest.raises(errors.InvalidArgument):
        decoder.feed(b"2\r\nab\r\n")


def test_trailer_checks() -> None:
    """Undeclared trailers are refused; declared ones that never came make the body incomplete."""
    body = build_body(b"ab", 2, signed=False, trailers={"x-amz-checksum-sha1": "x"})
    with pytest.raises(errors.InvalidArgument):
        AwsChunkedDecoder(signing=None, trailer_expected=True, trailer_names=["x-amz-checksum-crc32"]).feed(body)
    body = build_body(b"ab", 2, signed=False, trailers={})
    decoder = AwsChunkedDecoder(signing=None, trailer_expected=True, trailer_names=["x-amz-checksum-crc32"])
    with pytest.raises(errors.IncompleteBody):
        _decode(decoder, body)


def test_decoded_content_length_checks() -> None:
    """More data than x-amz-decoded-content-length fails in feed; less fails in finish."""
    body = build_body(b"abcdef", 4, signed=False)
    with pytest.raises(errors.InvalidArgument):
        _decode(AwsChunkedDecoder(signing=None, trailer_expected=False, decoded_content_length=5), body)
    with pytest.raises(errors.IncompleteBody):
        _decode(AwsChunkedDecoder(signing=None, trailer_expected=False, decoded_content_length=7), body)


def test_errors_are_sticky() -> None:
    """After an error the decoder refuses further input and finish with the same error."""
    decoder = AwsChunkedDecoder(signing=None, trailer_expected=False)
    with pytest.raises(errors.InvalidArgument) as first:
        decoder.feed(b"zz\r\n")
    with pytest.raises(errors.InvalidArgument) as again:
        decoder.feed(b"0\r\n\r\n")
    assert again.value is first.value
    with pytest.raises(errors.InvalidArgument):
        decoder.finish()


def test_signed_trailer_needs_signing_context() -> None:
    """A signed trailer without a signing context is a programming error."""
    with pytest.raises(ValueError):
        AwsChunkedDecoder(signing=None, trailer_expected=True, trailer_signed=True)


# --------------------------------------------------------------------------- properties

_MODES = st.sampled_from(["signed", "signed-trailer", "unsigned-trailer", "unsigned-trailer-minio", "signed-minio"])


def _case(payload: bytes, chunk_size: int, mode: str) -> tuple[bytes, Callable[[], AwsChunkedDecoder], dict[str, str]]:
    """(body, decoder factory, expected trailers) for one property example."""
    signed = mode.startswith("signed")
    trailers = None if mode == "signed" else {"x-amz-checksum-crc32": _crc32_b64(payload)}
    style = "minio" if mode.endswith("minio") else "aws"
    body = build_body(payload, chunk_size, signed=signed, trailers=trailers, style=style)
    return body, lambda: _decoder_for(signed, trailers), trailers or {}


_PROPERTY_SETTINGS = settings(
    max_examples=100, derandomize=True, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@_PROPERTY_SETTINGS
@given(
    payload=st.binary(max_size=300),
    chunk_size=st.integers(min_value=1, max_value=64),
    mode=_MODES,
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12),
)
def test_property_any_split_gives_identical_output(payload: bytes, chunk_size: int, mode: str, cuts: list[int]) -> None:
    """However the body is split into feed() calls, the payload and trailers come out the same."""
    body, make_decoder, trailers = _case(payload, chunk_size, mode)
    decoder = make_decoder()
    points = sorted({min(cut, len(body)) for cut in cuts} | {0, len(body)})
    out = bytearray()
    for start, stop in zip(points, points[1:], strict=False):
        for piece in decoder.feed(body[start:stop]):
            out += piece
    assert bytes(out) == payload
    assert decoder.finish() == trailers


@_PROPERTY_SETTINGS
@given(payload=st.binary(max_size=48), chunk_size=st.integers(min_value=1, max_value=32), mode=_MODES)
def test_property_truncation_never_passes(payload: bytes, chunk_size: int, mode: str) -> None:
    """A body cut at any position raises at finish() at the latest, and what came out is a prefix of the payload."""
    body, make_decoder, _ = _case(payload, chunk_size, mode)
    for cut in range(len(body)):
        decoder = make_decoder()
        out = b"".join(decoder.feed(body[:cut]))
        assert payload.startswith(out)
        with pytest.raises(errors.IncompleteBody):
            decoder.finish()
