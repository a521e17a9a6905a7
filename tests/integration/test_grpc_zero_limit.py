"""The native gRPC listings asked for zero entries, against a real server.

The page sizes are ``optional uint32`` (proto/lightningstor.proto): unset is
the server default (1000), and a size *set* to 0 asks for no entries.  That
page is the core's (:func:`lightningstor.core.listing.asks_nothing`), the same
as S3's max-keys=0: empty and not truncated, so a client that pages on
``is_truncated`` (as ``LightningStorClient.iter_objects`` does) stops.  It
was truncated with an empty continuation token / markers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from lightningstor.client import LightningStorClient
from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, ServerProcess

KEYS = ["a", "b/1", "b/2", "c"]


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[LightningStorClient]:
    c = LightningStorClient.connect(
        f"grpc://{server.grpc_endpoint}", access_key=ROOT_ACCESS_KEY, secret_key=ROOT_SECRET_KEY, timeout=30
    )
    yield c
    c.close()


@pytest.fixture
def filled(client: LightningStorClient) -> Iterator[tuple[str, str]]:
    """A bucket holding KEYS and an upload in progress with parts 1-3."""
    name = f"gz-{uuid.uuid4().hex[:16]}"
    client.create_bucket(name)
    for key in KEYS:
        client.put_object(name, key, key.encode())
    upload_id = client.create_multipart_upload(name, "mp").upload_id
    for number in (1, 2, 3):
        client.upload_part(name, "mp", upload_id, number, b"x" * number)
    yield name, upload_id
    client.abort_multipart_upload(name, "mp", upload_id)
    for key in KEYS:
        client.delete_object(name, key)
    client.delete_bucket(name)


@pytest.mark.parametrize("delimiter", [None, "/"])
def test_list_objects_zero_is_empty_not_truncated(client: LightningStorClient, filled: tuple[str, str],
                                                  delimiter: str | None) -> None:  # fmt: skip
    bucket, _ = filled
    page = client.list_objects(bucket, delimiter=delimiter, max_keys=0)
    assert (list(page.objects), list(page.common_prefixes), page.key_count) == ([], [], 0)
    assert page.is_truncated is False and page.next_continuation_token == ""
    default = client.list_objects(bucket)  # unset: the server default, not zero
    assert [o.key for o in default.objects] == KEYS and default.is_truncated is False


def test_list_object_versions_zero_is_empty_not_truncated(client: LightningStorClient,
                                                          filled: tuple[str, str]) -> None:  # fmt: skip
    bucket, _ = filled
    page = client.list_object_versions(bucket, max_keys=0)
    assert list(page.versions) == [] and page.is_truncated is False
    assert (page.next_key_marker, page.next_version_id_marker) == ("", "")
    assert [v.key for v in client.list_object_versions(bucket).versions] == KEYS


def test_multipart_listings_zero_are_empty_not_truncated(client: LightningStorClient,
                                                         filled: tuple[str, str]) -> None:  # fmt: skip
    bucket, upload_id = filled
    uploads = client.list_multipart_uploads(bucket, max_uploads=0)
    assert list(uploads.uploads) == [] and uploads.is_truncated is False
    assert (uploads.next_key_marker, uploads.next_upload_id_marker) == ("", "")
    parts = client.list_parts(bucket, "mp", upload_id, max_parts=0)
    assert list(parts.parts) == [] and parts.is_truncated is False and parts.upload.upload_id == upload_id
    assert [p.part_number for p in client.list_parts(bucket, "mp", upload_id).parts] == [1, 2, 3]
    assert [u.upload_id for u in client.list_multipart_uploads(bucket).uploads] == [upload_id]
