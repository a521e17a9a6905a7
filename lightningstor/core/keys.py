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
GRANTS = ROOT + b"grants/"
VERSIONS = ROOT + b"versions/"
UPLOADS = ROOT + b"uploads/"
PARTS = ROOT + b"parts/"


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


def bucket_key_scope(bkey: bytes) -> tuple[str, str | None, str] | None:
    """``(org, project or None, name)`` of a :func:`bucket_key`; None for a
    key that is not one (the inverse, by counting segments as that does)."""
    if not bkey.startswith(BUCKETS):
        return None
    parts = bkey[len(BUCKETS):].decode("utf-8", "replace").split("/")
    if len(parts) == 2 and all(parts):
        return parts[0], None, parts[1]
    if len(parts) == 3 and all(parts):
        return parts[0], parts[1], parts[2]
    return None


# -- buckets by name (unsigned CORS preflights; BucketManager.find_unique) -----
#
# Bucket records are ordered by scope, so a name alone (a request naming no
# tenant) needs this second key space.  It lives outside ``buckets/``
# (``bucket-names/`` sorts before ``buckets/``, so no scan of bucket records
# sees an entry), and every transaction that creates or deletes a bucket
# record writes or deletes its entry too.
LIFECYCLE_WALKS = ROOT + b"lifecycle-walks/"
"""Per bucket (by id), the lifecycle service's walk of the current UTC day:
shared by every API server, so one of them walks each bucket once a day
(lightningstor.core.lifecycle_service)."""


def lifecycle_walk_key(bucket_id: str) -> bytes:
    return LIFECYCLE_WALKS + bucket_id.encode()


FREED_CHUNKS = ROOT + b"freed-chunks/"
"""Chunks freed by a server that stopped before their delay was over
(lightningstor.core.freedchunks): ``freed-chunks/{due ms, 16 hex}/{random}``,
a JSON list of chunk ids, deleted by a running server once due."""


def freed_chunks_key(due_ms: int, tag: str) -> bytes:
    """A row of :data:`FREED_CHUNKS`; rows sort by due time."""
    return FREED_CHUNKS + f"{max(0, due_ms):016x}/{tag}".encode()


LEASES = ROOT + b"leases/"
"""Per background job, the lease of the API server that runs it
(lightningstor.core.leases): ``{holder, host, pid, expires}`` as JSON."""


def lease_key(job: str) -> bytes:
    """``leases/{job}``: one record per background job of the deployment."""
    return LEASES + job.encode()


BUCKET_NAMES = ROOT + b"bucket-names/"
BUCKET_NAMES_INDEXED = ROOT + b"upgrades/bucket-names"
"""Set once every bucket record had its entry (BucketManager.index_names):
until then a store written by an older version may hold buckets without
one, and lookups by name walk the bucket records instead."""


def bucket_name_prefix(name: str) -> bytes:
    """``bucket-names/{name}\\x00``: every scope's entry for ``name``, and
    only for it (names never contain NUL, so no longer name shares it)."""
    return BUCKET_NAMES + name.encode("utf-8") + b"\x00"


def bucket_name_key(org_id: str, project_id: str | None, name: str) -> bytes:
    """``bucket-names/{name}\\x00{org}/{project or ''}``, whose value is the
    bucket record's key (:func:`bucket_key`)."""
    return bucket_name_prefix(name) + f"{org_id}/{project_id or ''}".encode()


def objects_prefix(bucket_id: str) -> bytes:
    return OBJECTS + bucket_id.encode() + b"/"


def object_key(bucket_id: str, key: str) -> bytes:
    return objects_prefix(bucket_id) + key.encode("utf-8")


def chunk_key(chunk_id: str) -> bytes:
    """Chunk index entry: proves a committed record references the chunk."""
    return CHUNKS + chunk_id.encode()


MANIFESTS = ROOT + b"manifests/"


def manifest_prefix(manifest_id: str) -> bytes:
    """Every page of one paged chunk list (core/manifests.py)."""
    return MANIFESTS + manifest_id.encode() + b"/"


def manifest_page_key(manifest_id: str, page: int) -> bytes:
    """``manifests/{manifest_id}/{page:06d}``: zero-padded so scans are in page order."""
    return manifest_prefix(manifest_id) + f"{page:06d}".encode()


def credential_key(access_key_id: str) -> bytes:
    return CREDENTIALS + access_key_id.encode()


def credential_by_principal_key(principal_id: str, access_key_id: str) -> bytes:
    return CREDENTIALS_BY_PRINCIPAL + f"{principal_id}/{access_key_id}".encode()


def principal_key(principal_id: str) -> bytes:
    return PRINCIPALS + principal_id.encode()


def grants_prefix(subject: str) -> bytes:
    """Grants of one subject (``principal:{id}`` or ``role:{name}``)."""
    return GRANTS + subject.encode() + b"/"


def grant_key(subject: str, grant_id: str) -> bytes:
    return grants_prefix(subject) + grant_id.encode()


def uploads_prefix(bucket_id: str) -> bytes:
    """In-progress multipart uploads of one bucket, ordered by object key."""
    return UPLOADS + bucket_id.encode() + b"/"


def upload_key(bucket_id: str, key: str, upload_id: str) -> bytes:
    """``uploads/{bucket_id}/{key}\\x00{upload_id}``.

    Object keys never contain NUL, so the NUL ends the key unambiguously and
    a scan lists uploads by key (UTF-8 bytes), then by upload id (which
    starts with the initiation time: AWS lists a key's uploads oldest first).
    """
    return uploads_prefix(bucket_id) + key.encode("utf-8") + b"\x00" + upload_id.encode()


def parts_prefix(upload_id: str) -> bytes:
    return PARTS + upload_id.encode() + b"/"


def part_key(upload_id: str, part_number: int) -> bytes:
    """``parts/{upload_id}/{part_number:05d}``: zero-padded so scans are in part order."""
    return parts_prefix(upload_id) + f"{part_number:05d}".encode()


# Version sequence numbers are unsigned 64-bit (see version_key).
MAX_SEQUENCE = 2**64 - 1


def versions_prefix(bucket_id: str) -> bytes:
    """Noncurrent object versions of one bucket (current ones stay in ``objects/``)."""
    return VERSIONS + bucket_id.encode() + b"/"


def key_versions_prefix(bucket_id: str, key: str) -> bytes:
    """Every noncurrent version of one object key: ``versions/{bucket_id}/{key}\\x00``."""
    return versions_prefix(bucket_id) + key.encode("utf-8") + b"\x00"


def version_key(bucket_id: str, key: str, sequence: int) -> bytes:
    """``versions/{bucket_id}/{key}\\x00{2**64-1-sequence:016x}``.

    The NUL ends the key (object keys never contain one), so a scan yields
    keys in UTF-8 byte order; the inverted sequence number then puts each
    key's versions newest first, the order ListObjectVersions returns.
    """
    return key_versions_prefix(bucket_id, key) + b"%016x" % (MAX_SEQUENCE - sequence)



# -- quotas (SPEC §7.4; lightningstor.core.quotas) ------------------------------
QUOTAS = ROOT + b"quotas/"
USAGE = ROOT + b"usage/"
QUOTA_GUARDS = ROOT + b"quota-guards/"


def org_quota_key(org_id: str) -> bytes:
    """The limits record of an org (StorageLimits)."""
    return QUOTAS + f"org/{org_id}".encode()


def project_quota_key(org_id: str, project_id: str) -> bytes:
    """The limits record of one project of an org (StorageLimits)."""
    return QUOTAS + f"project/{org_id}/{project_id}".encode()


def bucket_quota_key(bucket_id: str) -> bytes:
    """A bucket's BucketQuota, by internal id: a re-created bucket starts without one."""
    return QUOTAS + f"bucket/{bucket_id}".encode()


def usage_scope_prefix(org_id: str, project_id: str | None = None) -> bytes:
    """Usage rows of every bucket of an org (``project_id`` None) or of one project.

    Rows are ``usage/{org}/{project}/{bucket_id}/...`` with an empty project
    segment for org-level buckets, so one scan of this prefix reads a whole
    scope at one revision (a consistent snapshot).
    """
    if project_id:
        return USAGE + f"{org_id}/{project_id}/".encode()
    return USAGE + f"{org_id}/".encode()


def usage_bucket_prefix(org_id: str, project_id: str | None, bucket_id: str) -> bytes:
    """``usage/{org}/{project or ''}/{bucket_id}/``: one bucket's base and deltas."""
    return USAGE + f"{org_id}/{project_id or ''}/{bucket_id}/".encode()


def usage_base_key(bucket_prefix: bytes) -> bytes:
    """The folded usage of a bucket (sorts before its deltas)."""
    return bucket_prefix + b"base"


def usage_delta_key(bucket_prefix: bytes, unique: str) -> bytes:
    """One not-yet-folded usage change of a bucket (unique key, never compared)."""
    return bucket_prefix + b"d/" + unique.encode()


def org_guard_key(org_id: str) -> bytes:
    """Bumped by every commit that must be serialized against an org limit."""
    return QUOTA_GUARDS + f"org/{org_id}".encode()


def project_guard_key(org_id: str, project_id: str) -> bytes:
    return QUOTA_GUARDS + f"project/{org_id}/{project_id}".encode()


def bucket_guard_key(bucket_id: str) -> bytes:
    return QUOTA_GUARDS + f"bucket/{bucket_id}".encode()


def quota_epoch_key(org_id: str) -> bytes:
    """Bumped with every change to a limit record of the org (its own, its
    projects', its buckets'): commits compare this one key instead of three."""
    return QUOTAS + f"epoch/{org_id}".encode()


MASTER_KEY_CHECK = ROOT + b"master-key-check"
"""A fixed text encrypted under the master key file's first line
(:meth:`lightningstor.core.credentials.CredentialStore.check_master_key`): a
server whose key file does not open it refuses to start."""


COLLECTOR_CLOCK = ROOT + b"collector/clock"
"""The orphan collector's shared clock (lightningstor.core.sightings): JSON
``{clock, run, pass}``, the unreferenced time observed so far and which
collector process made the pass that last advanced it."""
SIGHTINGS = ROOT + b"collector/sightings/"
"""Per chunk, index entry or manifest the collector last saw unreferenced,
the shared clock's value when it was first seen so."""


def sighting_key(kind: str, name: str) -> bytes:
    """``collector/sightings/{kind}/{name}`` (kind: chunk, entry, manifest)."""
    return SIGHTINGS + f"{kind}/{name}".encode()
