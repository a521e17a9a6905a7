"""The metadata key schema (SPEC §6.1), made unambiguous.

Object keys may hold any character but NUL (refused at the edge), so:

* objects live under their bucket's *internal id*, not its name: two tenants
  may both own ``backups`` and a re-created bucket never sees old records;
* an object's record key is ``prefix + utf8(key)``: scanning the prefix yields
  keys in S3's order (UTF-8 bytes) with nothing else interleaved;
* everything that is not an object (versions, uploads, chunk index) lives in
  its own top-level key space, so it can never collide with an object key.
"""

from __future__ import annotations

ROOT = b"lightningstor/"
BUCKETS = ROOT + b"buckets/"
OBJECTS = ROOT + b"objects/"
CHUNKS = ROOT + b"chunks/"
CREDENTIALS = ROOT + b"credentials/"
CREDENTIALS_BY_PRINCIPAL = ROOT + b"credentials-by-principal/"
PRINCIPALS = ROOT + b"principals/"


def bucket_key(org_id: str, project_id: str | None, name: str) -> bytes:
    """``buckets/{org}/{name}`` or ``buckets/{org}/{project}/{name}``.

    Bucket names never contain ``/`` and org/project ids are validated to a
    safe alphabet, so the number of segments tells the two forms apart.
    """
    if project_id:
        return BUCKETS + f"{org_id}/{project_id}/{name}".encode()
    return BUCKETS + f"{org_id}/{name}".encode()


def org_buckets_prefix(org_id: str) -> bytes:
    return BUCKETS + f"{org_id}/".encode()


def objects_prefix(bucket_id: str) -> bytes:
    return OBJECTS + bucket_id.encode() + b"/"


def object_key(bucket_id: str, key: str) -> bytes:
    return objects_prefix(bucket_id) + key.encode("utf-8")


def chunk_key(chunk_id: str) -> bytes:
    """Chunk index entry: proves a committed record references the chunk."""
    return CHUNKS + chunk_id.encode()


def credential_key(access_key_id: str) -> bytes:
    return CREDENTIALS + access_key_id.encode()


def credential_by_principal_key(principal_id: str, access_key_id: str) -> bytes:
    return CREDENTIALS_BY_PRINCIPAL + f"{principal_id}/{access_key_id}".encode()


def principal_key(principal_id: str) -> bytes:
    return PRINCIPALS + principal_id.encode()
