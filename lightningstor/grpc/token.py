"""Bearer tokens for the gRPC API, derived from S3 credentials.

A token is ``lst1.<access key id>.<expiry>.<signature>``: the expiry is Unix
seconds, the signature is base64url (no padding) of HMAC-SHA256 over
``lst1.<access key id>.<expiry>`` keyed with ``HMAC-SHA256(secret,
"lightningstor-grpc-token-v1")``.

Why this shape:

* no new storage: the server looks the access key up in the same credential
  store SigV4 uses and recomputes the signature, so a token acts as exactly
  the principal of that S3 credential, and disabling the key (or letting it
  expire) revokes every token made from it;
* the secret never travels: whoever holds the access key and secret mints
  tokens locally (``lightningstor token``, :func:`make_token`, or the client
  library, which does it by itself), and a leaked token dies at its expiry;
* the signing key is derived, so a token signature can never be replayed as
  (or confused with) a SigV4 signature made with the same secret.

Tokens live at most :data:`MAX_LIFETIME_SECONDS`; the server refuses ones
whose expiry lies further ahead, so a leaked token cannot outlive that.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterable
from dataclasses import dataclass

from lightningstor import errors

PREFIX = "lst1"
DEFAULT_LIFETIME_SECONDS = 3600
MAX_LIFETIME_SECONDS = 7 * 24 * 3600
CLOCK_SKEW_SECONDS = 300  # tolerated on the expiry bound only
_KEY_LABEL = b"lightningstor-grpc-token-v1"
METADATA_KEY = "authorization"


def _signing_key(secret: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), _KEY_LABEL, hashlib.sha256).digest()


def _sign(secret: str, message: str) -> str:
    mac = hmac.new(_signing_key(secret), message.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def make_token(
    access_key_id: str,
    secret: str,
    *,
    lifetime: int = DEFAULT_LIFETIME_SECONDS,
    now: float | None = None,
) -> str:
    """A token valid for ``lifetime`` seconds (1 .. MAX_LIFETIME_SECONDS)."""
    if not 1 <= lifetime <= MAX_LIFETIME_SECONDS:
        raise ValueError(f"lifetime must be between 1 and {MAX_LIFETIME_SECONDS} seconds")
    if not access_key_id or any(c.isspace() for c in access_key_id):
        raise ValueError("access key id must be non-empty and contain no whitespace")
    expires = int(time.time() if now is None else now) + lifetime
    message = f"{PREFIX}.{access_key_id}.{expires}"
    return f"{message}.{_sign(secret, message)}"


@dataclass(frozen=True)
class ParsedToken:
    access_key_id: str
    expires_at: int  # Unix seconds
    message: str  # the signed part
    signature: str


def _malformed(detail: str) -> errors.S3Error:
    return errors.AuthorizationHeaderMalformed(f"The bearer token is malformed: {detail}")


def parse_token(token: str) -> ParsedToken:
    """Split a token; AuthorizationHeaderMalformed if it is not one of ours."""
    if not is_own(token):
        raise _malformed(f"expected a '{PREFIX}.' token (see docs/grpc.md)")
    message, dot, signature = token.rpartition(".")
    head, dot2, expiry = message.rpartition(".")
    access_key_id = head[len(PREFIX) + 1 :]
    if not dot or not dot2 or not access_key_id or not signature:
        raise _malformed("expected lst1.<access key>.<expiry>.<signature>")
    if not expiry.isascii() or not expiry.isdigit() or len(expiry) > 20:
        # 20 digits hold any Unix time a token can carry; more would only
        # make int() slow, or raise past 4300 digits (an internal error).
        raise _malformed("the expiry is not a number")
    return ParsedToken(access_key_id, int(expiry), message, signature)


def verify_token(parsed: ParsedToken, secret: str, *, now: float) -> None:
    """SignatureDoesNotMatch / ExpiredToken unless ``parsed`` is valid now."""
    if not hmac.compare_digest(_sign(secret, parsed.message).encode(), parsed.signature.encode()):
        raise errors.SignatureDoesNotMatch("The bearer token's signature does not match")
    if parsed.expires_at <= now:
        raise errors.S3Error("The bearer token has expired", code="ExpiredToken")
    if parsed.expires_at > now + MAX_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS:
        raise errors.S3Error(
            f"The bearer token lives longer than {MAX_LIFETIME_SECONDS} seconds", code="ExpiredToken"
        )


# Longest bearer token offered to the IAM service (JWTs run to a few KiB).
MAX_OUTSIDE_TOKEN_LENGTH = 8192


def is_own(token: str) -> bool:
    """Whether ``token`` claims to be one of ours (``lst1.``): such a token
    is verified here and never sent to an IAM service."""
    return token.startswith(PREFIX + ".")


def check_outside_token(token: str) -> str:
    """``token`` if it may be offered to the IAM service (printable ASCII,
    bounded); AuthorizationHeaderMalformed otherwise."""
    if len(token) > MAX_OUTSIDE_TOKEN_LENGTH or not (token.isascii() and token.isprintable()):
        raise _malformed(f"a bearer token is at most {MAX_OUTSIDE_TOKEN_LENGTH} printable ASCII characters")
    return token


def bearer_from_metadata(metadata: Iterable[tuple[str, str | bytes]]) -> str:
    """The token of the ``authorization: Bearer <token>`` metadata entry.

    MissingSecurityHeader (UNAUTHENTICATED) when there is none.
    """
    found = [value for key, value in metadata if key.lower() == METADATA_KEY]
    if len(found) > 1:
        # As the S3 API refuses a second Authorization header: a proxy that
        # checks one entry and a server that acts on another would disagree
        # about who is calling.
        raise _malformed("only one authorization metadata entry is allowed")
    for value in found:
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        scheme, _, credentials = text.strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise _malformed("expected 'Bearer <token>' in the authorization metadata")
        return credentials.strip()
    raise errors.S3Error(
        "Missing 'authorization: Bearer <token>' metadata (docs/grpc.md explains how to get a token)",
        code="MissingSecurityHeader",
    )
