"""Incremental decoder of ``aws-chunked`` request bodies.

Wire format (x-amz-content-sha256 ``STREAMING-*``)::

    hex-size[;chunk-signature=<64 hex>]\\r\\n <data> \\r\\n
    ...
    0[;chunk-signature=<64 hex>]\\r\\n
    [name:value\\r\\n ...]                    trailers, when x-amz-trailer announced them
    [x-amz-trailer-signature:<64 hex>\\r\\n]  for ...-PAYLOAD-TRAILER
    \\r\\n

Each chunk signature chains on the previous one (the first on the request's
own signature) and covers the SHA-256 of the chunk's data, which is hashed as
bytes arrive so a chunk is never buffered.  Data is handed back as soon as it
arrives, *before* the chunk's signature can be checked: callers store it
provisionally and throw everything away if a later call raises.

The trailer signature covers the SHA-256 of the trailer lines in the form
``name:value\\n`` (LF, not CRLF), as the AWS SDKs, minio-go and MinIO compute it.

Tolerated variations seen from real clients:

* minio-go ends each trailer line with a bare LF followed by an extra CRLF
  (``name:value\\n\\r\\n``): an empty line right after an LF-only line is part
  of that line, not the end of the section.
* AWS's documentation example puts an empty line between the zero-size chunk
  and the trailers: a leading empty line is skipped when trailers are expected
  (a body that ends right there has no trailers, which the declared
  ``trailer_names`` and the trailer signature then catch).

Errors: a bad chunk or trailer signature raises ``SignatureDoesNotMatch``; bad
framing (non-hex size, missing CRLF, oversized chunk or line, unexpected
trailer, bytes after the end) raises ``InvalidArgument``; a body that stops
early raises ``IncompleteBody`` from :meth:`AwsChunkedDecoder.finish`.  After
any error the decoder stays failed and raises the same error again.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection

from lightningstor import errors
from lightningstor.auth import sigv4
from lightningstor.auth.request import StreamingContext

_SIZE = 0  # reading a chunk-size line
_DATA = 1  # inside chunk data
_DATA_CR = 2  # expecting the CR after chunk data
_DATA_LF = 3  # expecting the LF after chunk data
_TRAILER = 4  # reading trailer lines
_DONE = 5  # final empty line seen

_MAX_SIZE_LINE = 4096
_MAX_TRAILER_SECTION = 16 * 1024
_SIGNATURE_PREFIX = b"chunk-signature="
_TRAILER_SIGNATURE = "x-amz-trailer-signature"


class AwsChunkedDecoder:
    """Incremental decoder of ``aws-chunked`` bodies (x-amz-content-sha256 ``STREAMING-*``).

    ``signing`` is given for the signed kinds (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``
    and ``...-TRAILER``) and makes every chunk carry a checked signature;
    ``None`` decodes unsigned framing (``STREAMING-UNSIGNED-PAYLOAD-TRAILER``).
    ``trailer_signed`` requires and checks ``x-amz-trailer-signature``.
    ``decoded_content_length`` (the x-amz-decoded-content-length header) and
    ``trailer_names`` (the x-amz-trailer header, lower case) are checked when
    given.
    """

    def __init__(
        self,
        *,
        signing: StreamingContext | None,
        trailer_expected: bool,
        trailer_signed: bool = False,
        max_chunk_size: int = 16 * 1024 * 1024,
        decoded_content_length: int | None = None,
        trailer_names: Collection[str] | None = None,
    ) -> None:
        if trailer_signed and (signing is None or not trailer_expected):
            raise ValueError("a signed trailer needs a signing context and trailer_expected")
        self._signing = signing
        self._trailer_expected = trailer_expected
        self._trailer_signed = trailer_signed
        self._max_chunk_size = max_chunk_size
        self._expected_length = decoded_content_length
        self._trailer_names = frozenset(name.lower() for name in trailer_names) if trailer_names is not None else None
        self._previous = signing.seed_signature if signing is not None else ""

        self._state = _SIZE
        self._line = bytearray()
        self._remaining = 0
        self._hasher: hashlib._Hash | None = None
        self._chunk_signature = ""
        self._decoded = 0
        self._error: errors.S3Error | None = None

        self._trailer_lines: list[tuple[str, str]] = []
        self._trailer_signature: str | None = None
        self._trailer_bytes = 0
        self._last_line_bare_lf = False
        self._leading_blank = False
        self._trailers: dict[str, str] = {}

    @property
    def decoded_length(self) -> int:
        """Payload bytes returned so far."""
        return self._decoded

    @property
    def done(self) -> bool:
        """True once the final empty line has arrived."""
        return self._state == _DONE

    def feed(self, data: bytes) -> list[bytes]:
        """Decode what arrived; returns payload pieces in order (possibly none)."""
        if self._error is not None:
            raise self._error
        try:
            return self._feed(data)
        except errors.S3Error as exc:
            self._error = exc
            raise

    def finish(self) -> dict[str, str]:
        """Call at the end of the body: the trailers, or ``IncompleteBody`` if it stopped early."""
        if self._error is not None:
            raise self._error
        try:
            if self._state == _TRAILER and self._leading_blank and not self._line and not self._trailer_lines:
                self._end_trailer_section()
            if self._state != _DONE:
                raise errors.IncompleteBody("The aws-chunked body ended before its final chunk and trailer section.")
            if self._expected_length is not None and self._decoded != self._expected_length:
                raise errors.IncompleteBody(
                    f"Decoded {self._decoded} bytes; x-amz-decoded-content-length says {self._expected_length}."
                )
        except errors.S3Error as exc:
            self._error = exc
            raise
        return dict(self._trailers)

    # ------------------------------------------------------------------ internals

    def _feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        pos, end = 0, len(data)
        while pos < end:
            state = self._state
            if state == _DATA:
                take = min(self._remaining, end - pos)
                piece = data if take == end else data[pos : pos + take]
                if self._hasher is not None:
                    self._hasher.update(piece)
                out.append(piece)
                pos += take
                self._remaining -= take
                self._decoded += take
                if self._expected_length is not None and self._decoded > self._expected_length:
                    raise errors.InvalidArgument("The aws-chunked body holds more than x-amz-decoded-content-length.")
                if self._remaining == 0:
                    self._verify_chunk()
                    self._state = _DATA_CR
            elif state == _DATA_CR or state == _DATA_LF:
                expected = 0x0D if state == _DATA_CR else 0x0A
                if data[pos] != expected:
                    raise errors.InvalidArgument("aws-chunked chunk data must be followed by CRLF.")
                pos += 1
                self._state = _DATA_LF if state == _DATA_CR else _SIZE
            elif state == _SIZE or state == _TRAILER:
                newline = data.find(b"\n", pos)
                stop = end if newline < 0 else newline
                self._line += data[pos:stop]
                limit = _MAX_SIZE_LINE if state == _SIZE else _MAX_TRAILER_SECTION - self._trailer_bytes
                if len(self._line) > limit:
                    raise errors.InvalidArgument("aws-chunked header or trailer line too long.")
                if newline < 0:
                    pos = end
                    continue
                pos = newline + 1
                line = bytes(self._line)
                self._line.clear()
                if state == _SIZE:
                    self._size_line(line)
                else:
                    self._trailer_line(line)
            else:
                raise errors.InvalidArgument("Data found after the end of the aws-chunked body.")
        return out

    def _size_line(self, line: bytes) -> None:
        if not line.endswith(b"\r"):
            raise errors.InvalidArgument("aws-chunked chunk header must end with CRLF.")
        size_text, _, extension = line[:-1].partition(b";")
        if not 1 <= len(size_text) <= 16 or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
            raise errors.InvalidArgument("aws-chunked chunk size is not hexadecimal.")
        size = int(size_text, 16)
        if size > self._max_chunk_size:
            raise errors.InvalidArgument(f"aws-chunked chunk of {size} bytes exceeds {self._max_chunk_size}.")
        if self._signing is not None:
            signature = extension[len(_SIGNATURE_PREFIX) :].decode("latin-1")
            if not extension.startswith(_SIGNATURE_PREFIX) or not sigv4.is_hex64(signature):
                raise errors.InvalidArgument("aws-chunked chunk header lacks a valid chunk-signature.")
            self._chunk_signature = signature.lower()
            self._hasher = hashlib.sha256()
        if size == 0:
            self._verify_chunk()
            self._state = _TRAILER
        else:
            self._remaining = size
            self._state = _DATA

    def _verify_chunk(self) -> None:
        signing = self._signing
        if signing is None or self._hasher is None:
            return
        to_sign = sigv4.chunk_string_to_sign(
            signing.amz_date, signing.scope, self._previous, self._hasher.hexdigest()
        )
        expected = sigv4.sign_hex(signing.signing_key, to_sign)
        if not hmac.compare_digest(expected.encode(), self._chunk_signature.encode()):
            raise errors.SignatureDoesNotMatch("The chunk signature we calculated does not match the one provided.")
        self._previous = expected
        self._hasher = None

    def _trailer_line(self, line: bytes) -> None:
        self._trailer_bytes += len(line) + 1
        bare_lf = not line.endswith(b"\r")
        if not bare_lf:
            line = line[:-1]
        if not line:
            if self._last_line_bare_lf:
                # minio-go: "name:value\n" then "\r\n" closes that same line.
                self._last_line_bare_lf = False
            elif (
                self._trailer_expected
                and not self._leading_blank
                and not self._trailer_lines
                and self._trailer_signature is None
            ):
                self._leading_blank = True
            else:
                self._end_trailer_section()
            return
        self._last_line_bare_lf = bare_lf
        if not self._trailer_expected:
            raise errors.InvalidArgument("Unexpected trailer in an aws-chunked body without x-amz-trailer.")
        raw_name, sep, raw_value = line.partition(b":")
        name = raw_name.strip().lower().decode("latin-1")
        value = raw_value.strip().decode("latin-1")
        if not sep or not name:
            raise errors.InvalidArgument("Malformed trailer line in aws-chunked body.")
        if name == _TRAILER_SIGNATURE:
            if self._trailer_signature is not None:
                raise errors.InvalidArgument("Duplicate x-amz-trailer-signature.")
            self._trailer_signature = value
            return
        if self._trailer_signature is not None:
            raise errors.InvalidArgument("Trailer after x-amz-trailer-signature.")
        if any(existing == name for existing, _ in self._trailer_lines):
            raise errors.InvalidArgument(f"Duplicate trailer {name}.")
        if self._trailer_names is not None and name not in self._trailer_names:
            raise errors.InvalidArgument(f"Trailer {name} was not declared in x-amz-trailer.")
        self._trailer_lines.append((name, value))

    def _end_trailer_section(self) -> None:
        if self._trailer_signed:
            self._verify_trailer_signature()
        if self._trailer_names is not None:
            missing = self._trailer_names - {name for name, _ in self._trailer_lines}
            if missing:
                raise errors.IncompleteBody(f"Declared trailer {', '.join(sorted(missing))} was not sent.")
        self._trailers = dict(self._trailer_lines)
        self._state = _DONE

    def _verify_trailer_signature(self) -> None:
        signing = self._signing
        assert signing is not None
        provided = self._trailer_signature
        if provided is None or not sigv4.is_hex64(provided):
            raise errors.SignatureDoesNotMatch("The trailer has no valid x-amz-trailer-signature.")
        # Received order is what the SDKs hash; sorted order covers signers
        # that canonicalise (the .NET SDK sorts).  Both are over the same bytes.
        orders = [self._trailer_lines, sorted(self._trailer_lines)]
        for lines in orders:
            canonical = "".join(f"{name}:{value}\n" for name, value in lines)
            digest = hashlib.sha256(sigv4.wire_bytes(canonical)).hexdigest()
            to_sign = sigv4.trailer_string_to_sign(signing.amz_date, signing.scope, self._previous, digest)
            expected = sigv4.sign_hex(signing.signing_key, to_sign)
            if hmac.compare_digest(expected.encode(), provided.lower().encode()):
                return
        raise errors.SignatureDoesNotMatch("The trailer signature we calculated does not match the one provided.")
