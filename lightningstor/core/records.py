"""Serialization of core records to metadata-store values.

Compact JSON: readable with any etcd/SQLite tool when debugging, stable
across Python versions, and cheap enough (records are small).  Each record
carries a format version ``v`` so later releases can migrate lazily.

An object record with inline data is its JSON, one NUL byte, then the data
as it is (:data:`INLINE_SEPARATOR`).  JSON text never holds a raw NUL (the
encoder escapes every control character), so the first NUL ends the JSON.
Before, the data was a base64 field of the JSON: encoding and decoding it
cost about 50 and 70 us per 4 KiB object, more than the rest of the record
(docs/performance.md, "Fifth round").  Records written that way still read.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from typing import Any

from lightningstor.core.acl import BUCKET_OWNER_ENFORCED
from lightningstor.core.types import (
    Acl,
    Bucket,
    BucketEncryption,
    ChunkRef,
    CorsRule,
    CustomerKeyCheck,
    DefaultRetention,
    Encryption,
    Grant,
    LifecycleFilter,
    LifecycleRule,
    ListEntry,
    Manifest,
    ObjectRecord,
    PublicAccessBlock,
    Versioning,
    WebsiteConfiguration,
    WebsiteRedirect,
    WebsiteRoutingRule,
)

_FORMAT = 1


def encode_encryption(e: Encryption) -> dict[str, str]:
    """The ``sse`` field of an encrypted object or upload record (SSE-C:
    the key check ``cm``/``cs``/``ch``, never the key)."""
    d = {
        "a": e.algorithm,
        "k": base64.b64encode(e.wrapped_key).decode("ascii"),
        "n": base64.b64encode(e.inline_nonce).decode("ascii"),
    }
    if e.customer is not None:
        d["cm"] = e.customer.key_md5
        d["cs"] = base64.b64encode(e.customer.salt).decode("ascii")
        d["ch"] = base64.b64encode(e.customer.mac).decode("ascii")
    return d


def decode_encryption(d: dict[str, str]) -> Encryption:
    """The inverse of :func:`encode_encryption`."""
    customer = None
    if "cm" in d:
        customer = CustomerKeyCheck(d["cm"], base64.b64decode(d["cs"]), base64.b64decode(d["ch"]))
    return Encryption(d["a"], base64.b64decode(d["k"]), base64.b64decode(d["n"]), customer)

def encode_acl(acl: Acl) -> list[Any]:
    """The ``acl`` field of a bucket, object or upload record: the owner,
    then one ``[type, grantee, permission]`` per grant (types shortened:
    ``u`` CanonicalUser, ``g`` Group)."""
    return [acl.owner, [[_GRANTEE_CODES[g.grantee_type], g.grantee, g.permission] for g in acl.grants]]


def decode_acl(raw: list[Any]) -> Acl:
    """The inverse of :func:`encode_acl`."""
    owner, grants = raw
    return Acl(owner, tuple(Grant(_GRANTEE_TYPES[t], grantee, perm) for t, grantee, perm in grants))


_GRANTEE_CODES = {"CanonicalUser": "u", "Group": "g"}
_GRANTEE_TYPES = {code: name for name, code in _GRANTEE_CODES.items()}

INLINE_SEPARATOR = b"\x00"
"""Ends the JSON of an object record whose inline data follows it."""


def dumps(obj: dict[str, Any]) -> bytes:
    """The one JSON form of every metadata record (compact, UTF-8): records
    read and written back by other modules (core/multipart.py, the SSE
    re-wrap) come out byte for byte as this module writes them."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_bucket(b: Bucket) -> bytes:
    d: dict[str, Any] = {
        "v": _FORMAT,
        "name": b.name,
        "id": b.bucket_id,
        "org": b.org_id,
        "project": b.project_id,
        "created": b.created_at,
        "updated": b.updated_at,
        "by": b.created_by,
        "versioning": b.versioning.value,
        "class": b.storage_class,
        "region": b.region,
        "tags": b.tags,
        "meta": b.metadata,
    }
    if b.deleting:  # only while a DeleteBucket runs: records stay as they were
        d["deleting"] = True
    if b.cors:  # only once configured: other records stay as they were
        d["cors"] = [_encode_cors_rule(r) for r in b.cors]
    if b.lifecycle:  # the same: only once configured
        d["lc"] = [_encode_lifecycle_rule(r) for r in b.lifecycle]
    if b.policy:  # the same: only once configured
        d["pol"] = b.policy
    if b.public_access_block is not None:
        p = b.public_access_block
        d["pab"] = [p.block_public_acls, p.ignore_public_acls, p.block_public_policy, p.restrict_public_buckets]
    if b.object_lock:  # the same: only once enabled
        d["lock"] = True
    if b.default_retention is not None:
        r = b.default_retention
        d["dret"] = [r.mode, r.days, r.years]
    if b.encryption is not None:  # only once configured
        d["sse"] = [b.encryption.algorithm, b.encryption.bucket_key_enabled]
    if b.website is not None:  # only once configured
        d["web"] = _encode_website(b.website)
    if b.object_ownership != BUCKET_OWNER_ENFORCED:
        # Absent: ACLs disabled, which every bucket made before ACLs existed
        # here had in effect; "" stores "no ownership controls".
        d["own"] = b.object_ownership or ""
    if b.acl is not None:  # only once set
        d["acl"] = encode_acl(b.acl)
    return dumps(d)


def _encode_redirect(r: WebsiteRedirect) -> list[str | None]:
    """A redirect as a positional list (the record stays small)."""
    return [r.host_name, r.protocol, r.replace_key_prefix_with, r.replace_key_with, r.http_redirect_code]


def _encode_website(w: WebsiteConfiguration) -> dict[str, Any]:
    """The website configuration: only its parts that are set."""
    d: dict[str, Any] = {}
    if w.index_suffix is not None:
        d["idx"] = w.index_suffix
    if w.error_key is not None:
        d["err"] = w.error_key
    if w.redirect_all is not None:
        d["all"] = _encode_redirect(w.redirect_all)
    if w.routing_rules:
        d["rules"] = [
            [r.key_prefix_equals, r.http_error_code_returned_equals, _encode_redirect(r.redirect)]
            for r in w.routing_rules
        ]
    return d


def _decode_website(d: dict[str, Any]) -> WebsiteConfiguration:
    """The inverse of :func:`_encode_website`."""
    return WebsiteConfiguration(
        index_suffix=d.get("idx"),
        error_key=d.get("err"),
        redirect_all=WebsiteRedirect(*d["all"]) if "all" in d else None,
        routing_rules=tuple(WebsiteRoutingRule(p, c, WebsiteRedirect(*r)) for p, c, r in d.get("rules", ())),
    )


def _encode_cors_rule(rule: CorsRule) -> dict[str, Any]:
    """One CORS rule: methods and origins always, the rest when set."""
    d: dict[str, Any] = {"m": list(rule.allowed_methods), "o": list(rule.allowed_origins)}
    if rule.allowed_headers:
        d["h"] = list(rule.allowed_headers)
    if rule.expose_headers:
        d["e"] = list(rule.expose_headers)
    if rule.max_age_seconds is not None:
        d["age"] = rule.max_age_seconds
    if rule.rule_id is not None:
        d["id"] = rule.rule_id
    return d


def _decode_cors_rule(d: dict[str, Any]) -> CorsRule:
    return CorsRule(
        allowed_methods=tuple(d["m"]),
        allowed_origins=tuple(d["o"]),
        allowed_headers=tuple(d.get("h", ())),
        expose_headers=tuple(d.get("e", ())),
        max_age_seconds=d.get("age"),
        rule_id=d.get("id"),
    )


# LifecycleRule fields stored when set: record name -> attribute.
_LIFECYCLE_FIELDS = (
    ("ed", "expiration_days"),
    ("edate", "expiration_date"),
    ("dm", "expired_object_delete_marker"),
    ("nd", "noncurrent_days"),
    ("nn", "newer_noncurrent_versions"),
    ("ab", "abort_days"),
)


def _encode_lifecycle_rule(rule: LifecycleRule) -> dict[str, Any]:
    """One lifecycle rule: id, status and form always, the rest when set."""
    d: dict[str, Any] = {"id": rule.rule_id, "on": rule.enabled, "form": rule.form}
    f = rule.filter
    if f.prefix is not None:
        d["p"] = f.prefix
    if f.tags:
        d["t"] = [list(tag) for tag in f.tags]
    if f.size_greater_than is not None:
        d["gt"] = f.size_greater_than
    if f.size_less_than is not None:
        d["lt"] = f.size_less_than
    for name, attr in _LIFECYCLE_FIELDS:
        value = getattr(rule, attr)
        if value is not None:
            d[name] = value
    return d


def _decode_lifecycle_rule(d: dict[str, Any]) -> LifecycleRule:
    return LifecycleRule(
        rule_id=d["id"],
        enabled=bool(d["on"]),
        form=d.get("form", "filter"),
        filter=LifecycleFilter(
            prefix=d.get("p"),
            tags=tuple((k, v) for k, v in d.get("t", ())),
            size_greater_than=d.get("gt"),
            size_less_than=d.get("lt"),
        ),
        **{attr: d.get(name) for name, attr in _LIFECYCLE_FIELDS},
    )


def _decode_lifecycle(raw: list[dict[str, Any]]) -> tuple[LifecycleRule, ...]:
    return tuple(_decode_lifecycle_rule(r) for r in raw)


def decode_bucket(data: bytes) -> Bucket:
    d = _load_record(data)
    return Bucket(
        name=d["name"],
        bucket_id=d["id"],
        org_id=d["org"],
        project_id=d.get("project"),
        created_at=d["created"],
        updated_at=d["updated"],
        created_by=d.get("by", ""),
        versioning=Versioning(d.get("versioning", "Disabled")),
        storage_class=d.get("class", "STANDARD"),
        region=d.get("region", "us-east-1"),
        tags=d.get("tags", {}),
        metadata=d.get("meta", {}),
        deleting=bool(d.get("deleting", False)),
        # Every bucket read decodes a record; most have no CORS rules.
        cors=_decode_cors(d["cors"]) if "cors" in d else (),
        lifecycle=_decode_lifecycle(d["lc"]) if "lc" in d else (),
        policy=d.get("pol", ""),
        public_access_block=PublicAccessBlock(*map(bool, d["pab"])) if "pab" in d else None,
        object_lock=bool(d.get("lock", False)),
        default_retention=DefaultRetention(*d["dret"]) if "dret" in d else None,
        encryption=BucketEncryption(*d["sse"]) if "sse" in d else None,
        website=_decode_website(d["web"]) if "web" in d else None,
        object_ownership=d.get("own", BUCKET_OWNER_ENFORCED) or None,
        acl=decode_acl(d["acl"]) if "acl" in d else None,
    )


def _decode_cors(raw: list[dict[str, Any]]) -> tuple[CorsRule, ...]:
    return tuple(_decode_cors_rule(r) for r in raw)


def encode_chunks(chunks: Sequence[ChunkRef]) -> list[list[Any]]:
    """The ``chunks`` field: ``[[id, offset, size, crc32c], ...]``, the same in
    object, version and part records and in manifest pages (the scrub, the
    collector and the crash checks read it without decoding the rest)."""
    return [[c.chunk_id, c.offset, c.size, c.checksum] for c in chunks]


def decode_chunks(raw: Sequence[Sequence[Any]]) -> list[ChunkRef]:
    """The inverse of :func:`encode_chunks`."""
    return [ChunkRef(c[0], c[1], c[2], c[3]) for c in raw]


def encode_object(o: ObjectRecord) -> bytes:
    d: dict[str, Any] = {
        "v": _FORMAT,
        "key": o.key,
        "size": o.size,
        "etag": o.etag,
        "ts": o.created_at,
        "ct": o.content_type,
    }
    if o.version_id is not None:
        d["vid"] = o.version_id
    if o.system_headers:
        d["sys"] = o.system_headers
    if o.metadata:
        d["meta"] = o.metadata
    if o.checksums:
        d["ck"] = o.checksums
    if o.storage_class != "STANDARD":
        d["class"] = o.storage_class
    if o.delete_marker:
        d["dm"] = True
    if o.manifest is not None:
        d["mf"] = {"id": o.manifest.manifest_id, "s": o.manifest.starts, "n": o.manifest.count}
    elif o.chunks:
        d["chunks"] = encode_chunks(o.chunks)
    if o.tags:
        d["tags"] = o.tags
    if o.owner:
        d["owner"] = o.owner
    if o.part_sizes:
        d["parts"] = o.part_sizes
    if o.part_checksums:
        d["pck"] = o.part_checksums
    if o.sequence:
        d["seq"] = o.sequence
    if o.null_sequence is not None:
        d["nseq"] = o.null_sequence
    if o.upload_id is not None:
        d["up"] = o.upload_id
    if o.completed_parts is not None:
        d["upl"] = o.completed_parts
    if o.completed_checksums:
        d["uck"] = o.completed_checksums
    if o.lock_mode is not None:
        d["lm"] = o.lock_mode
        d["lu"] = o.lock_until
    if o.legal_hold is not None:
        d["lh"] = o.legal_hold
    if o.encryption is not None:
        d["sse"] = encode_encryption(o.encryption)
    if o.acl is not None:  # only once set: other records stay as they were
        d["acl"] = encode_acl(o.acl)
    if o.inline is not None:
        return b"".join((dumps(d), INLINE_SEPARATOR, o.inline))
    return dumps(d)


def decode_object(data: bytes) -> ObjectRecord:
    # Every GET, HEAD and overwrite decodes one.
    end = data.find(INLINE_SEPARATOR)
    inline: bytes | None
    if end >= 0:
        d = _load_record(data[:end])
        inline = data[end + 1 :]
    else:
        d = _load_record(data)
        legacy = d.get("inline")  # written before the data followed the JSON
        inline = base64.b64decode(legacy) if legacy is not None else None
    mf = d.get("mf")
    return ObjectRecord(
        key=d["key"],
        size=d["size"],
        etag=d["etag"],
        created_at=d["ts"],
        version_id=d.get("vid"),
        content_type=d.get("ct", "binary/octet-stream"),
        system_headers=d.get("sys", {}),
        metadata=d.get("meta", {}),
        checksums=d.get("ck", {}),
        storage_class=d.get("class", "STANDARD"),
        delete_marker=d.get("dm", False),
        chunks=decode_chunks(d.get("chunks", ())),
        inline=inline,
        tags=d.get("tags", {}),
        owner=d.get("owner", ""),
        part_sizes=d.get("parts", []),
        part_checksums=d.get("pck", {}),
        sequence=d.get("seq", 0),
        null_sequence=d.get("nseq"),
        manifest=Manifest(mf["id"], mf["s"], mf["n"]) if mf is not None else None,
        upload_id=d.get("up"),
        completed_parts=d.get("upl"),
        completed_checksums=d.get("uck", {}),
        lock_mode=d.get("lm"),
        lock_until=d.get("lu"),
        legal_hold=d.get("lh"),
        encryption=decode_encryption(d["sse"]) if "sse" in d else None,
        acl=decode_acl(d["acl"]) if "acl" in d else None,
    )


# The C scanner behind json.loads, called directly: ``loads`` ->
# ``JSONDecoder.decode`` -> ``raw_decode`` (plus two whitespace regex
# matches) cost as much again as the parse of a small record, a quarter of a
# full listing walk (docs/performance.md, "Listing at 10k/100k/1M keys").
# The scanner holds the GIL for a whole call, so sharing it between threads
# is as safe as sharing json's default decoder.
_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def record_fields(value: bytes) -> Any:
    """The JSON fields of a stored record (``json.loads`` of it), without
    the inline data an object record may carry after them: for readers of
    single fields (the scrub's and the chunk index's ``chunks``)."""
    end = value.find(INLINE_SEPARATOR)
    return _load_record(value if end < 0 else value[:end])


def _load_record(value: bytes) -> Any:
    """``json.loads(value)`` for a stored record, without loads' overhead.

    Records are written by :func:`dumps` (no whitespace around them); any
    value the bare scanner does not take whole (leading or trailing bytes,
    invalid JSON) goes through ``json.loads``, so the result or the error is
    exactly what ``json.loads`` gives.
    """
    text = value.decode("utf-8")  # a str skips json's encoding sniffing
    try:
        d, end = _scan_json(text, 0)
    except (StopIteration, ValueError):
        return json.loads(text)
    if end != len(text):
        return json.loads(text)
    return d


def listing_entry(key: str, value: bytes) -> ListEntry | None:
    """The ListObjects entry of a current-version record; None for a delete marker.

    Reads only the fields a listing shows instead of decoding the whole
    record (:func:`decode_object` also builds the chunk list and copies
    inline data, up to 64 KiB per object): that measured as a third of a
    full walk's CPU (docs/performance.md, "Listing at 10k/100k/1M keys").
    Same field names and defaults as ``decode_object``.
    """
    d = record_fields(value)
    if d.get("dm", False):
        return None
    # Positional: binding keyword arguments cost more than the fields
    # themselves (ListEntry's fields are key, size, etag, last_modified,
    # storage_class, owner, version_id, is_latest, delete_marker, checksums;
    # tests/unit/test_records.py checks each one against the full decode).
    return ListEntry(
        key, d["size"], d["etag"], d["ts"], d.get("class", "STANDARD"), d.get("owner", ""), d.get("vid"),
        True, False, d.get("ck"),
    )  # fmt: skip
