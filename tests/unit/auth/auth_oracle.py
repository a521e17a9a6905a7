"""botocore's signers as the oracle for the auth tests.

Builds requests with botocore's ``AWSRequest``, signs them with its real
signer classes at a fixed time, and converts the result into the
:class:`RequestView` our verifier reads (adding the Host header an HTTP client
would send).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from email.utils import formatdate
from types import SimpleNamespace
from typing import Any
from unittest import mock
from urllib.parse import quote, urlsplit

from botocore import auth as botocore_auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import percent_encode_sequence

from lightningstor.auth.request import RequestView

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
REGION = "us-east-1"
ENDPOINT = "http://127.0.0.1:9000"

#: The instant every oracle signature is made at.
FIXED = datetime.datetime(2024, 5, 17, 12, 30, 45)
FIXED_EPOCH = FIXED.replace(tzinfo=datetime.UTC).timestamp()

CREDENTIALS = Credentials(ACCESS_KEY, SECRET_KEY)


def object_url(bucket: str, key: str, query: Any = None, *, endpoint: str = ENDPOINT) -> str:
    """The URL botocore's serializer builds for a path-style object request."""
    url = f"{endpoint}/{bucket}/{quote(key, safe='/~')}"
    if query:
        url += "?" + (query if isinstance(query, str) else percent_encode_sequence(query))
    return url


def request(method: str, url: str, *, headers: Mapping[str, str] | None = None, body: bytes = b"") -> AWSRequest:
    """A botocore request object, as botocore builds it before signing."""
    return AWSRequest(method=method, url=url, headers=dict(headers or {}), data=body)


def sign(signer: Any, req: AWSRequest) -> AWSRequest:
    """Sign ``req`` in place with ``signer`` at :data:`FIXED`."""
    with mock.patch.object(botocore_auth, "get_current_datetime", lambda *a, **k: FIXED):
        signer.add_auth(req)
    return req


def sigv4(req: AWSRequest, *, region: str = REGION, unsigned_payload: bool = False) -> AWSRequest:
    """Header-signed like boto3's S3 client (``S3SigV4Auth``)."""
    if unsigned_payload:
        req.context["client_config"] = SimpleNamespace(s3={"payload_signing_enabled": False})
    return sign(botocore_auth.S3SigV4Auth(CREDENTIALS, "s3", region), req)


def presign(req: AWSRequest, *, expires: int = 3600, region: str = REGION) -> AWSRequest:
    """Presigned like ``generate_presigned_url`` (``S3SigV4QueryAuth``)."""
    return sign(botocore_auth.S3SigV4QueryAuth(CREDENTIALS, "s3", region, expires=expires), req)


class _FixedHmacV1Auth(botocore_auth.HmacV1Auth):
    def _get_date(self) -> str:
        return formatdate(FIXED_EPOCH, usegmt=True)


class _FixedHmacV1QueryAuth(botocore_auth.HmacV1QueryAuth):
    def _get_date(self) -> str:
        return str(int(FIXED_EPOCH + int(self._expires)))


def sigv2(req: AWSRequest, *, auth_path: str | None = None) -> AWSRequest:
    """Header-signed with botocore's ``HmacV1Auth`` (SigV2)."""
    req.auth_path = auth_path
    _FixedHmacV1Auth(CREDENTIALS).add_auth(req)
    return req


def presign_v2(req: AWSRequest, *, expires: int = 3600) -> AWSRequest:
    """Presigned with botocore's ``HmacV1QueryAuth`` (SigV2 query)."""
    req.auth_path = None
    _FixedHmacV1QueryAuth(CREDENTIALS, expires=expires).add_auth(req)
    return req


def view(req: AWSRequest, *, extra_headers: Mapping[str, str] | None = None) -> RequestView:
    """The request as our server would see it on the wire."""
    parts = urlsplit(req.url)
    headers: dict[str, list[str]] = {}
    for name, value in req.headers.items():
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        headers.setdefault(name.lower(), []).append(text)
    headers.setdefault("host", [botocore_auth._host_from_url(req.url)])
    for name, value in (extra_headers or {}).items():
        headers.setdefault(name.lower(), []).append(value)
    return RequestView(method=req.method, raw_path=parts.path, raw_query=parts.query, headers=headers)


def replace(v: RequestView, **changes: Any) -> RequestView:
    """A copy of ``v`` with some fields changed (headers merged when given as a dict)."""
    if "headers" in changes:
        merged = {name: list(values) for name, values in v.headers.items()}
        for name, values in changes.pop("headers").items():
            if values is None:
                merged.pop(name, None)
            else:
                merged[name] = list(values)
        changes["headers"] = merged
    fields = {"method": v.method, "raw_path": v.raw_path, "raw_query": v.raw_query, "headers": v.headers}
    fields.update(changes)
    return RequestView(**fields)
