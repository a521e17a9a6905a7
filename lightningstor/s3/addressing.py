"""Which bucket and key a request names: path-style and virtual-hosted-style.

Keys are taken from the raw request path exactly as sent (after %-decoding):
``//``, ``..`` and trailing slashes are part of the key, never normalized,
because S3 keys are opaque strings, not paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from lightningstor import errors
from lightningstor.auth import sigv4


@dataclass
class Target:
    bucket: str | None
    key: str | None
    raw_path: str
    raw_query: str
    query: dict[str, str] = field(default_factory=dict)  # first value of each name
    vhost: bool = False  # bucket came from the Host header

    @property
    def resource(self) -> str:
        if self.bucket is None:
            return "/"
        if self.key is None:
            return f"/{self.bucket}"
        return f"/{self.bucket}/{self.key}"


def _decode(raw: str) -> str:
    """%-decode to bytes first, then UTF-8: raw non-ASCII bytes and escapes
    both come out as the key the client meant."""
    try:
        return unquote_to_bytes(raw.encode("latin-1")).decode("utf-8")
    except UnicodeDecodeError as e:
        raise errors.S3Error("The path is not valid UTF-8", code="InvalidURI") from e


def host_bucket(host: str | None, domain: str) -> str | None:
    """The bucket a ``Host: bucket.<domain>[:port]`` header names, else None
    (virtual-hosted style, and the website endpoint's ``website_domain``)."""
    if not host:
        return None
    hostname, port = host, ""
    if ":" in host and not host.endswith("]"):  # not a bare IPv6 literal
        hostname, _, port = host.rpartition(":")
    if port and not (port.isascii() and port.isdigit()):
        # Not a port (RFC 3986 §3.2.3): "b.domain:@evil.example" names no
        # bucket here, and is never copied into a website redirect.
        return None
    hostname = hostname.lower().rstrip(".")
    if hostname.endswith("." + domain):
        return hostname[: -len(domain) - 1] or None
    return None


def absolute_authority(uri: bytes) -> str | None:
    """The ``host[:port]`` of an absolute-form request target, else None.

    RFC 9112 §3.2.2: given ``GET http://authority/path``, a server MUST
    ignore the ``Host`` header and use the target's authority instead.
    The caller makes that authority *the* host of the request, for the
    virtual-hosted bucket and for the signature check alike: a SigV4
    signature covers the ``host`` header, so checking it against a Host
    other than the one that picked the bucket would let a signature over
    one bucket's host authorize a request to another.  Userinfo
    (``user@``, never valid in an http URI) is not part of the host.
    """
    if uri[:1] == b"/":  # origin form: the common case, decided at once
        return None
    text = uri.decode("latin-1").partition("?")[0]
    scheme, sep, rest = text.partition("://")
    if not sep or not scheme:
        return None
    return rest.partition("/")[0].rpartition("@")[2]


def parse_target(uri: bytes, host: str | None, domain: str | None) -> Target:
    """Split ``uri`` (path + query, as on the wire) into bucket, key, query.

    With ``domain`` configured, ``Host: bucket.domain`` selects the bucket
    (virtual-hosted style) and the whole path is the key.  ``host`` is the
    request's host: for an absolute-form ``uri``, its authority
    (:func:`absolute_authority`), not the Host header.
    """
    # latin-1 keeps every wire byte as one character: the signature is
    # computed over exactly what was sent.
    text = uri.decode("latin-1")
    raw_path, _, raw_query = text.partition("?")
    if not raw_path.startswith("/"):
        # absolute-form request targets (http://host/path)
        if "://" in raw_path:
            raw_path = "/" + raw_path.split("://", 1)[1].partition("/")[2]
        else:
            raw_path = "/" + raw_path
    path = _decode(raw_path)
    # Decoded as the signature check reads it (``+`` is a space, %-escapes
    # and raw bytes are UTF-8), and remembered, so the check decodes it once.
    query: dict[str, str] = {}
    for name, value in sigv4.decoded_query(raw_query):
        query.setdefault(name, value)

    vhost_bucket = host_bucket(host, domain) if domain else None
    if vhost_bucket:
        key = path[1:]
        return Target(vhost_bucket, key or None, raw_path, raw_query, query, vhost=True)
    rest = path[1:]
    if not rest:
        return Target(None, None, raw_path, raw_query, query)
    bucket, slash, key = rest.partition("/")
    return Target(bucket, key if slash and key else None, raw_path, raw_query, query)
