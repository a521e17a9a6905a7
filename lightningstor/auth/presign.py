"""Presigned URLs (SigV4 query authentication) for LightningStor and S3.

Used by the admin tool and tests to hand out time-limited links.  The URL's
path is re-encoded canonically (so ``/bucket/my key`` becomes
``/bucket/my%20key``) and the query carries the X-Amz-* parameters; the
result verifies with :func:`lightningstor.auth.request.verify` and with AWS.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from lightningstor.auth import sigv4

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _host_header(url: str) -> str:
    """The Host header an HTTP client sends for ``url`` (default port dropped)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def _as_wire(text: str) -> str:
    """``text`` (a URL as a person writes it, ``café`` or ``caf%C3%A9``) as
    the S3 layer sees a request's path or query: the latin-1 reading of its
    UTF-8 bytes.  The canonicalisers read their input that way, so a raw
    ``é`` handed to them unconverted became the byte E9, not UTF-8's C3 A9:
    a URL for a key no client can have written."""
    return text.encode("utf-8").decode("latin-1")


def presign_v4(
    method: str,
    url: str,
    access_key: str,
    secret_key: str,
    *,
    region: str = "us-east-1",
    expires: int = 3600,
    now: float | None = None,
    headers: Mapping[str, str] | None = None,
) -> str:
    """A presigned URL (query auth) for ``url``, e.g. ``http://127.0.0.1:9000/bucket/key``.

    ``headers`` are extra headers the eventual request will send and that the
    signature must cover (for example ``content-type`` of a presigned PUT);
    ``host`` is always signed.  Existing query parameters of ``url`` are kept
    and signed.  ``expires`` must be 1..604800 seconds, as AWS requires.
    """
    if not 1 <= expires <= 7 * 24 * 3600:
        raise ValueError("expires must be between 1 second and 7 days")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        # Anything else would be signed for a host no request names.
        raise ValueError(f"{url!r} is not an http:// or https:// URL with a host")
    timestamp = time.time() if now is None else now
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(timestamp))
    date = amz_date[:8]

    signed: dict[str, list[str]] = {"host": [_host_header(url)]}
    for name, value in (headers or {}).items():
        signed.setdefault(name.lower(), []).append(value)
    signed_names = tuple(sorted(signed))

    pairs = sigv4.parse_query(_as_wire(parts.query))
    auth = [
        ("X-Amz-Algorithm", sigv4.ALGORITHM),
        ("X-Amz-Credential", f"{access_key}/{sigv4.scope_string(date, region)}"),
        ("X-Amz-Date", amz_date),
        ("X-Amz-Expires", str(expires)),
        ("X-Amz-SignedHeaders", ";".join(signed_names)),
    ]
    pairs += [(name.encode(), value.encode("utf-8")) for name, value in auth]
    query = sigv4.canonical_query(pairs)
    path = sigv4.canonical_uri(_as_wire(parts.path))

    canonical = sigv4.canonical_request(
        method.upper(),
        path,
        query,
        sigv4.canonical_headers(signed, signed_names),
        signed_names,
        sigv4.UNSIGNED_PAYLOAD,
    )
    to_sign = sigv4.string_to_sign(amz_date, sigv4.scope_string(date, region), canonical)
    signature = sigv4.sign_hex(sigv4.signing_key(secret_key, date, region), to_sign)
    return urlunsplit((parts.scheme, parts.netloc, path, f"{query}&X-Amz-Signature={signature}", ""))
