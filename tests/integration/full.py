"""What the tests of a full server share (disk, free-space reserve, etcd
quota, storage nodes): filling it until it refuses, and the refusals a
client must see (507 InsufficientStorage over S3, RESOURCE_EXHAUSTED with
the same code over gRPC)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lightningstor.client import LightningStorClient, errors
from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY


def fill_until_refused(s3: Any, bucket: str, objects: Iterable[tuple[str, bytes]]) -> tuple[dict[str, bytes], Any]:
    """PUT each ``(key, body)`` until one is refused: (what was stored, the
    refusal's response).  Fails the test if nothing was refused."""
    stored: dict[str, bytes] = {}
    for key, body in objects:
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=body)
        except ClientError as e:
            return stored, e.response
        stored[key] = body
    pytest.fail(f"the server never refused a write ({len(stored)} stored)")


def assert_insufficient_storage(response: Any) -> None:
    """An S3 error response is 507 InsufficientStorage."""
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 507, response
    assert response["Error"]["Code"] == "InsufficientStorage", response


def assert_grpc_put_refused(grpc_endpoint: str, bucket: str, key: str, body: bytes) -> None:
    """A gRPC PutObject is refused with RESOURCE_EXHAUSTED / InsufficientStorage."""
    client = LightningStorClient.connect(
        f"grpc://{grpc_endpoint}", access_key=ROOT_ACCESS_KEY, secret_key=ROOT_SECRET_KEY, timeout=30
    )
    try:
        with pytest.raises(errors.ResourceExhaustedError) as refused:
            client.put_object(bucket, key, body)
        assert refused.value.code == "InsufficientStorage"
    finally:
        client.close()
