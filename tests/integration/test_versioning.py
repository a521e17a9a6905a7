"""Object versioning through boto3 (and rclone) against the real server process.

Every test runs in both checksum modes of the ``s3`` fixture.  Buckets made
here are versioned, so their clean-up deletes every version and marker.
"""

from __future__ import annotations

import uuid
from typing import Any, Iterator

import pytest
from botocore.exceptions import ClientError

from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY
from tests.integration.tools import minio_client


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


def _headers(exc: pytest.ExceptionInfo[ClientError]) -> dict[str, str]:
    return exc.value.response["ResponseMetadata"]["HTTPHeaders"]


def purge(s3: Any, name: str) -> None:
    """Delete every version and delete marker, then the bucket."""
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
        for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
            s3.delete_object(Bucket=name, Key=item["Key"], VersionId=item["VersionId"])
    s3.delete_bucket(Bucket=name)


def enable(s3: Any, name: str, status: str = "Enabled") -> None:
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": status})


@pytest.fixture
def vbucket(s3: Any) -> Iterator[str]:
    """A bucket with versioning Enabled, emptied of every version afterwards."""
    name = f"v-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    enable(s3, name)
    yield name
    purge(s3, name)


@pytest.fixture
def plain(s3: Any) -> Iterator[str]:
    """A bucket created without versioning (tests may enable it), purged of all versions."""
    name = f"p-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    yield name
    purge(s3, name)


def _versions(s3: Any, bucket: str, **kw: Any) -> list[tuple[str, str, bool, bool]]:
    """(key, version id, is latest, is delete marker) in listing order."""
    resp = s3.list_object_versions(Bucket=bucket, **kw)
    # boto3 splits the server's interleaved listing into Versions (each in
    # server order) and DeleteMarkers; this keeps that split: versions first.
    items = [(v, False) for v in resp.get("Versions", [])] + [(m, True) for m in resp.get("DeleteMarkers", [])]
    return [(i["Key"], i["VersionId"], i["IsLatest"], dm) for i, dm in items]


def test_bucket_versioning_configuration(s3, plain):
    """No Status until configured; Enabled and Suspended round-trip; Disabled and MFA delete are refused."""
    assert "Status" not in s3.get_bucket_versioning(Bucket=plain)
    enable(s3, plain, "Suspended")
    assert s3.get_bucket_versioning(Bucket=plain)["Status"] == "Suspended"
    s3.put_bucket_versioning(Bucket=plain, VersioningConfiguration={"Status": "Enabled", "MFADelete": "Disabled"})
    assert s3.get_bucket_versioning(Bucket=plain)["Status"] == "Enabled"
    with pytest.raises(ClientError) as e:
        s3.put_bucket_versioning(Bucket=plain, VersioningConfiguration={"Status": "Disabled"})
    assert _code(e) == "MalformedXML"
    with pytest.raises(ClientError) as e:
        s3.put_bucket_versioning(Bucket=plain, VersioningConfiguration={"Status": "Enabled", "MFADelete": "Enabled"})
    assert _code(e) == "NotImplemented"
    assert s3.get_bucket_versioning(Bucket=plain)["Status"] == "Enabled"


def test_minios_versioning_exclusions_are_not_implemented(server, s3, plain):
    """MinIO's SDK (``mc version enable --excluded-prefixes``) can ask for
    versioning with ExcludedPrefixes or ExcludeFolders, which S3 does not
    have: 501, and the bucket's versioning is unchanged (before: 200, and
    the exclusions were dropped without a word)."""
    client = minio_client(server.endpoint, ROOT_ACCESS_KEY, ROOT_SECRET_KEY)
    from minio.error import S3Error
    from minio.versioningconfig import ENABLED, VersioningConfig

    exclusions = VersioningConfig(ENABLED, excluded_prefixes=["tmp/"]), VersioningConfig(ENABLED, exclude_folders=True)
    for config in exclusions:
        with pytest.raises(S3Error) as e:
            client.set_bucket_versioning(plain, config)
        assert (e.value.code, e.value.response.status) == ("NotImplemented", 501)
        assert "Status" not in s3.get_bucket_versioning(Bucket=plain)
    client.set_bucket_versioning(plain, VersioningConfig(ENABLED))
    assert s3.get_bucket_versioning(Bucket=plain)["Status"] == "Enabled"


def test_backups_scenario(s3, vbucket):
    """Overwrite, delete, list versions, then restore: by copying an old version and by deleting the marker."""
    v1 = s3.put_object(Bucket=vbucket, Key="db.dump", Body=b"monday")["VersionId"]
    v2 = s3.put_object(Bucket=vbucket, Key="db.dump", Body=b"tuesday")["VersionId"]
    assert v1 != v2
    gone = s3.delete_object(Bucket=vbucket, Key="db.dump")
    assert gone["DeleteMarker"] is True
    marker = gone["VersionId"]
    assert "Contents" not in s3.list_objects_v2(Bucket=vbucket)
    assert "Contents" not in s3.list_objects(Bucket=vbucket)
    assert _versions(s3, vbucket) == [
        ("db.dump", v2, False, False), ("db.dump", v1, False, False), ("db.dump", marker, True, True)]
    resp = s3.list_object_versions(Bucket=vbucket)
    assert [m["VersionId"] for m in resp["DeleteMarkers"]] == [marker]
    old = s3.get_object(Bucket=vbucket, Key="db.dump", VersionId=v1)
    assert old["Body"].read() == b"monday" and old["VersionId"] == v1

    # Restore Monday's dump by copying that version onto the key.
    copied = s3.copy_object(Bucket=vbucket, Key="db.dump",
                            CopySource={"Bucket": vbucket, "Key": "db.dump", "VersionId": v1})
    assert copied["CopySourceVersionId"] == v1
    v3 = copied["VersionId"]
    assert v3 not in (v1, v2, marker)
    got = s3.get_object(Bucket=vbucket, Key="db.dump")
    assert got["Body"].read() == b"monday" and got["VersionId"] == v3
    assert len(_versions(s3, vbucket)) == 4

    # Or undo a delete by removing the delete marker.
    s3.put_object(Bucket=vbucket, Key="notes.txt", Body=b"keep")
    marker2 = s3.delete_object(Bucket=vbucket, Key="notes.txt")["VersionId"]
    undone = s3.delete_object(Bucket=vbucket, Key="notes.txt", VersionId=marker2)
    assert undone["DeleteMarker"] is True and undone["VersionId"] == marker2
    assert s3.get_object(Bucket=vbucket, Key="notes.txt")["Body"].read() == b"keep"


def test_delete_marker_answers_404_and_405_with_headers(s3, vbucket):
    """GET/HEAD of a marked key: 404 NoSuchKey + marker headers; GET/HEAD of the marker's id: 405."""
    s3.put_object(Bucket=vbucket, Key="k", Body=b"x")
    marker = s3.delete_object(Bucket=vbucket, Key="k")["VersionId"]
    for call in (s3.get_object, s3.head_object):
        with pytest.raises(ClientError) as e:
            call(Bucket=vbucket, Key="k")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        assert _headers(e)["x-amz-delete-marker"] == "true"
        assert _headers(e)["x-amz-version-id"] == marker
        with pytest.raises(ClientError) as e:
            call(Bucket=vbucket, Key="k", VersionId=marker)
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 405
        assert _headers(e)["x-amz-delete-marker"] == "true"
        assert "last-modified" in _headers(e)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=vbucket, Key="k")
    assert _code(e) == "NoSuchKey"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=vbucket, Key="k", VersionId=marker)
    assert _code(e) == "MethodNotAllowed"


def test_version_ids_on_every_write_and_read(s3, vbucket):
    """PUT, COPY, GET, HEAD and DELETE all report the version they touched."""
    put = s3.put_object(Bucket=vbucket, Key="a", Body=b"1")
    head = s3.head_object(Bucket=vbucket, Key="a", VersionId=put["VersionId"])
    assert head["VersionId"] == put["VersionId"]
    copy = s3.copy_object(Bucket=vbucket, Key="b", CopySource={"Bucket": vbucket, "Key": "a"})
    assert copy["VersionId"] != put["VersionId"] and copy["CopySourceVersionId"] == put["VersionId"]
    deleted = s3.delete_object(Bucket=vbucket, Key="b", VersionId=copy["VersionId"])
    assert deleted["VersionId"] == copy["VersionId"] and "DeleteMarker" not in deleted
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=vbucket, Key="b")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_copy_source_version_id_after_another_parameter(s3, vbucket):
    """``x-amz-copy-source: b/k?x=1&versionId=V`` copies version V, as with
    versionId first; it used to copy the current version (only a leading
    versionId was seen).  Two versionIds are InvalidArgument."""
    first = s3.put_object(Bucket=vbucket, Key="src", Body=b"first")["VersionId"]
    s3.put_object(Bucket=vbucket, Key="src", Body=b"second")
    sent = {}

    def header_as_given(request, **kwargs):  # botocore would percent-encode a '?' it does not expect
        request.headers.replace_header("x-amz-copy-source", sent["source"])

    s3.meta.events.register("before-sign.s3.CopyObject", header_as_given)
    try:
        for query in (f"versionId={first}", f"x=1&versionId={first}"):
            sent["source"] = f"/{vbucket}/src?{query}"
            copied = s3.copy_object(Bucket=vbucket, Key="dst", CopySource={"Bucket": vbucket, "Key": "src"})
            assert copied["CopySourceVersionId"] == first, query
            assert s3.get_object(Bucket=vbucket, Key="dst")["Body"].read() == b"first"
        sent["source"] = f"/{vbucket}/src?versionId={first}&versionId={first}"
        with pytest.raises(ClientError) as e:
            s3.copy_object(Bucket=vbucket, Key="dst", CopySource={"Bucket": vbucket, "Key": "src"})
        assert _code(e) == "InvalidArgument"
    finally:
        s3.meta.events.unregister("before-sign.s3.CopyObject", header_as_given)


def test_unknown_and_malformed_version_ids(s3, vbucket):
    """A well-formed unknown id is 404 NoSuchVersion; garbage is 400 InvalidArgument; deleting either is safe."""
    vid = s3.put_object(Bucket=vbucket, Key="k", Body=b"x")["VersionId"]
    other = vid[:-1] + ("A" if vid[-1] != "A" else "B")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=vbucket, Key="k", VersionId=other)
    assert _code(e) == "NoSuchVersion"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=vbucket, Key="k", VersionId="nonsense")
    assert _code(e) == "InvalidArgument"
    with pytest.raises(ClientError) as e:
        s3.delete_object(Bucket=vbucket, Key="k", VersionId="nonsense")
    assert _code(e) == "InvalidArgument"
    s3.delete_object(Bucket=vbucket, Key="k", VersionId=other)  # idempotent: 204
    assert s3.get_object(Bucket=vbucket, Key="k")["Body"].read() == b"x"


def test_suspended_and_null_version_semantics(s3, plain):
    """Objects from before versioning are 'null'; Suspended writes replace the null version and delete writes a null marker."""
    s3.put_object(Bucket=plain, Key="k", Body=b"original")
    assert "VersionId" not in s3.head_object(Bucket=plain, Key="k")  # never versioned: no header
    assert s3.head_object(Bucket=plain, Key="k", VersionId="null")["ContentLength"] == 8
    enable(s3, plain)
    assert s3.head_object(Bucket=plain, Key="k")["VersionId"] == "null"
    v1 = s3.put_object(Bucket=plain, Key="k", Body=b"versioned")["VersionId"]
    enable(s3, plain, "Suspended")
    put = s3.put_object(Bucket=plain, Key="k", Body=b"suspended-1")
    # The write answers without a version id, as AWS does when suspended;
    # the version it stored is the null one, and reads say so.
    assert "VersionId" not in put
    assert s3.head_object(Bucket=plain, Key="k")["VersionId"] == "null"
    s3.put_object(Bucket=plain, Key="k", Body=b"suspended-2")
    listed = _versions(s3, plain)
    assert sorted(v for _k, v, _l, _d in listed) == sorted(["null", v1])  # old null replaced, v1 kept
    assert s3.get_object(Bucket=plain, Key="k", VersionId="null")["Body"].read() == b"suspended-2"
    deleted = s3.delete_object(Bucket=plain, Key="k")
    assert deleted["DeleteMarker"] is True and deleted["VersionId"] == "null"
    listed = _versions(s3, plain)
    assert ("k", "null", True, True) in listed and len(listed) == 2
    s3.delete_object(Bucket=plain, Key="k", VersionId="null")  # remove the null marker
    got = s3.get_object(Bucket=plain, Key="k")
    assert got["Body"].read() == b"versioned" and got["VersionId"] == v1


def test_delete_objects_with_versions(s3, vbucket):
    """DeleteObjects removes named versions, creates markers for bare keys, and reports DeleteMarker fields."""
    v = [s3.put_object(Bucket=vbucket, Key="k", Body=str(i).encode())["VersionId"] for i in range(3)]
    marker = s3.delete_object(Bucket=vbucket, Key="k")["VersionId"]
    resp = s3.delete_objects(Bucket=vbucket, Delete={"Objects": [
        {"Key": "k", "VersionId": v[0]},
        {"Key": "k", "VersionId": marker},
        {"Key": "fresh"},
        {"Key": "k", "VersionId": "garbage"},
    ]})
    by = {(d["Key"], d.get("VersionId")): d for d in resp["Deleted"]}
    assert "DeleteMarker" not in by[("k", v[0])]
    assert by[("k", marker)]["DeleteMarker"] is True and by[("k", marker)]["DeleteMarkerVersionId"] == marker
    fresh = by[("fresh", None)]
    assert fresh["DeleteMarker"] is True and fresh["DeleteMarkerVersionId"]
    assert [(e["Key"], e["Code"]) for e in resp["Errors"]] == [("k", "NoSuchVersion")]
    assert s3.get_object(Bucket=vbucket, Key="k")["VersionId"] == v[2]  # marker gone: v2 current again
    listed = _versions(s3, vbucket)
    assert {(k, vid) for k, vid, _l, _d in listed} == {("k", v[2]), ("k", v[1]), ("fresh", fresh["DeleteMarkerVersionId"])}
    again = s3.delete_objects(Bucket=vbucket, Delete={"Objects": [{"Key": "k", "VersionId": v[0]}]})
    assert [d["Key"] for d in again["Deleted"]] == ["k"] and not again.get("Errors")


def test_version_listing_paginates_with_key_and_version_markers(s3, vbucket):
    """The paginator with tiny pages (key-marker + version-id-marker) yields exactly the one-page listing."""
    keys = ["a", "a", "a", "b c", "d/x", "d/x", "d/y", "\u00e9t\u00e9", "z"]
    for k in keys:
        s3.put_object(Bucket=vbucket, Key=k, Body=b"x")
    s3.delete_object(Bucket=vbucket, Key="b c")
    full = s3.list_object_versions(Bucket=vbucket)
    ordered = sorted(full["Versions"] + full["DeleteMarkers"], key=lambda i: i["Key"].encode())
    assert len(ordered) == len(keys) + 1
    for kw in ({}, {"Prefix": "d/"}, {"Delimiter": "/"}):
        pages = list(s3.get_paginator("list_object_versions").paginate(
            Bucket=vbucket, PaginationConfig={"PageSize": 2}, **kw))
        assert len(pages) > 1
        got = [(i["Key"], i["VersionId"]) for p in pages for i in p.get("Versions", []) + p.get("DeleteMarkers", [])]
        want = [(i["Key"], i["VersionId"]) for i in ordered if i["Key"].startswith(kw.get("Prefix", ""))]
        if "Delimiter" in kw:
            want = [w for w in want if "/" not in w[0]]
            assert [cp["Prefix"] for p in pages for cp in p.get("CommonPrefixes", [])] == ["d/"]
        assert sorted(got) == sorted(want) and len(got) == len(set(got))
    encoded = s3.list_object_versions(Bucket=vbucket, Prefix="\u00e9", EncodingType="url")
    assert [v["Key"] for v in encoded["Versions"]] == ["%C3%A9t%C3%A9"]
    page = s3.list_object_versions(Bucket=vbucket, MaxKeys=2)
    assert page["IsTruncated"] is True and page["NextKeyMarker"] == "a" and page["NextVersionIdMarker"]
    with pytest.raises(ClientError) as e:
        s3.list_object_versions(Bucket=vbucket, VersionIdMarker=page["NextVersionIdMarker"])
    assert _code(e) == "InvalidArgument"


def test_rclone_with_a_versioned_bucket(server, s3, vbucket, tmp_path):
    """rclone copy/lsf work on a versioned bucket; --s3-versions also lists the old versions."""
    from tests.integration.tools import rclone_env, run_tool, tool

    rclone = tool("rclone")
    env = rclone_env(server.endpoint, tmp_path / "rclone.conf")
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"first")
    (src / "b.txt").write_bytes(b"bee")
    run_tool([rclone, "copy", str(src), f"ls:{vbucket}"], env)
    (src / "a.txt").write_bytes(b"second, longer")
    run_tool([rclone, "copy", str(src), f"ls:{vbucket}"], env)
    listed = run_tool([rclone, "lsf", f"ls:{vbucket}"], env).decode().split()
    assert sorted(listed) == ["a.txt", "b.txt"]
    with_versions = run_tool([rclone, "lsf", "--s3-versions", f"ls:{vbucket}"], env).decode().split()
    assert len(with_versions) == 3 and "a.txt" in with_versions
    old = [name for name in with_versions if name.startswith("a-v")]
    assert len(old) == 1 and old[0].endswith(".txt")
    out = run_tool([rclone, "cat", "--s3-versions", f"ls:{vbucket}/{old[0]}"], env)
    assert out == b"first"
    run_tool([rclone, "delete", f"ls:{vbucket}/b.txt"], env)
    assert run_tool([rclone, "lsf", f"ls:{vbucket}"], env).decode().split() == ["a.txt"]
    assert len(_versions(s3, vbucket)) == 4  # a x2, b, b's delete marker


def test_writes_answer_a_version_id_only_when_versioning_is_enabled(s3, plain):
    """PutObject, CopyObject and CompleteMultipartUpload answer
    x-amz-version-id with the new version's id when versioning is Enabled,
    and without the header when it is Suspended (the null version is
    written, as reads then report), as AWS does."""

    def writes() -> list[dict]:
        put = s3.put_object(Bucket=plain, Key="w", Body=b"x")
        copied = s3.copy_object(Bucket=plain, Key="c", CopySource={"Bucket": plain, "Key": "w"})
        upload = s3.create_multipart_upload(Bucket=plain, Key="m")["UploadId"]
        part = s3.upload_part(Bucket=plain, Key="m", UploadId=upload, PartNumber=1, Body=b"part")
        done = s3.complete_multipart_upload(
            Bucket=plain, Key="m", UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
        )
        return [put, copied, done]

    enable(s3, plain)
    ids = [w.get("VersionId") for w in writes()]
    assert all(ids) and "null" not in ids
    enable(s3, plain, "Suspended")
    assert [w.get("VersionId") for w in writes()] == [None, None, None]
    for key in ("w", "c", "m"):
        assert s3.head_object(Bucket=plain, Key=key)["VersionId"] == "null"


def _page(s3: Any, bucket: str, **kw: Any) -> list[tuple[str, str]]:
    """(key, version id) of one ListObjectVersions page, in server order per kind."""
    return [(k, vid) for k, vid, _latest, _marker in _versions(s3, bucket, **kw)]


def test_version_listing_resumes_where_a_deleted_marker_version_would_sort(s3, vbucket):
    """A version-id-marker whose version was deleted since still pages on:
    the next page starts where that version sorted, and no surviving version
    is skipped (not even the one promoted to current, or those after a
    removed null version)."""
    v = [s3.put_object(Bucket=vbucket, Key="k", Body=str(i).encode())["VersionId"] for i in range(4)]
    s3.put_object(Bucket=vbucket, Key="m", Body=b"m")
    first = s3.list_object_versions(Bucket=vbucket, MaxKeys=1)
    assert first["IsTruncated"] and (first["NextKeyMarker"], first["NextVersionIdMarker"]) == ("k", v[3])
    s3.delete_object(Bucket=vbucket, Key="k", VersionId=v[3])  # v[2] becomes current
    rest = _page(s3, vbucket, KeyMarker="k", VersionIdMarker=v[3])
    assert [vid for key, vid in rest if key == "k"] == [v[2], v[1], v[0]]
    assert [key for key, _vid in rest].count("m") == 1
    # A noncurrent marker that is gone: the versions older than it follow.
    s3.delete_object(Bucket=vbucket, Key="k", VersionId=v[1])
    assert [vid for key, vid in _page(s3, vbucket, KeyMarker="k", VersionIdMarker=v[1]) if key == "k"] == [v[0]]


def test_version_listing_after_a_removed_null_marker_skips_nothing(s3, plain):
    """``version-id-marker=null`` after the null version was removed: the
    key's surviving versions are all listed again rather than dropped."""
    enable(s3, plain)
    old = s3.put_object(Bucket=plain, Key="k", Body=b"old")["VersionId"]
    enable(s3, plain, "Suspended")
    s3.put_object(Bucket=plain, Key="k", Body=b"null")
    enable(s3, plain)
    new = s3.put_object(Bucket=plain, Key="k", Body=b"new")["VersionId"]
    s3.put_object(Bucket=plain, Key="m", Body=b"m")
    first = s3.list_object_versions(Bucket=plain, MaxKeys=2)
    assert [(i["Key"], i["VersionId"]) for i in first["Versions"]] == [("k", new), ("k", "null")]
    assert (first["NextKeyMarker"], first["NextVersionIdMarker"]) == ("k", "null")
    s3.delete_object(Bucket=plain, Key="k", VersionId="null")
    rest = _page(s3, plain, KeyMarker="k", VersionIdMarker="null")
    assert ("k", old) in rest and ("m", s3.head_object(Bucket=plain, Key="m")["VersionId"]) in rest
