"""DeleteObjects: many deletions in one request, each succeeding or failing alone.

Shared by the S3 (``POST ?delete``) and gRPC (``DeleteObjects``) layers so
both report the same per-key outcomes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import inlineCallbacks

from lightningstor import errors
from lightningstor.core.objects import validate_key
from lightningstor.core.types import Bucket


@dataclass(frozen=True)
class Deleted:
    key: str
    version_id: str | None  # as the request named it
    delete_marker: bool
    # The marker created, or the marker removed when the version named was one.
    delete_marker_version_id: str | None


@dataclass(frozen=True)
class DeleteFailure:
    key: str
    version_id: str | None
    code: str
    message: str


@dataclass
class BulkDeleteResult:
    deleted: list[Deleted] = field(default_factory=list)
    failed: list[DeleteFailure] = field(default_factory=list)


@inlineCallbacks
def delete_objects(
    objects: Any,
    bucket: Bucket,
    items: Iterable[tuple[str, str | None]],
    *,
    owner: str,
    authorize: Callable[[str, str | None, str | None], Any] | None = None,
    bypass: Callable[[str], Any] | None = None,
    if_match: Sequence[str | None] = (),
) -> Any:
    """Deferred[BulkDeleteResult] for ``(key, version_id)`` pairs, in order.

    A missing key or version is success (as for DeleteObject).  A malformed
    version id names no version: AWS reports it per entry as NoSuchVersion,
    not as the InvalidArgument a single DeleteObject gets.
    ``if_match[i]`` (an ETag or ``*``; the entry's ``<ETag>``) makes the
    i-th deletion conditional, as DeleteObject's ``If-Match``
    (:meth:`ObjectManager.delete`); a failed condition fails that entry alone.
    ``authorize(key, version_id, if_match)`` (Deferred) is asked before each deletion:
    a key the caller may not delete fails alone with AccessDenied, as in
    AWS.  ``bypass(key)`` (Deferred[bool]), when the request asked to bypass
    GOVERNANCE retention, says whether it may for that key; a locked version
    fails alone with AccessDenied (core/objectlock.py).
    """
    result = BulkDeleteResult()
    for index, (key, version) in enumerate(items):
        condition = if_match[index] if index < len(if_match) else None
        try:
            validate_key(key)
            if authorize is not None:
                yield authorize(key, version, condition)
            may_bypass = False
            if bypass is not None and version is not None:
                may_bypass = yield bypass(key)
            outcome = yield objects.delete(
                bucket, key, version, owner=owner, bypass_governance=may_bypass, if_match=condition
            )
        except errors.S3Error as e:
            if version is not None and e.code == "InvalidArgument" and e.fields.get("ArgumentName") == "versionId":
                e = errors.NoSuchVersion()
            result.failed.append(DeleteFailure(key, version, e.code, e.message))
            continue
        marker_id = outcome.version_id if outcome.delete_marker else None
        result.deleted.append(Deleted(key, version, outcome.delete_marker, marker_id))
    return result
