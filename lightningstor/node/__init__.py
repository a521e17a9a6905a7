"""Storage nodes: ``twistd lightningstor-node`` serving chunks over gRPC (SPEC §5.2)."""

ERROR_KIND_KEY = "lightningstor-error"
"""Trailing metadata key with which a node names the kind of a refusal
whose gRPC code alone is ambiguous (gRPC itself answers RESOURCE_EXHAUSTED
for an oversized message or a concurrency limit, which are not a full
disk)."""

STORAGE_FULL = "storage-full"
"""``ERROR_KIND_KEY`` value of a write the node refused for lack of disk
space (its local backend raised ``StorageFull``); sent with
RESOURCE_EXHAUSTED, and :mod:`lightningstor.storage.nodeclient` raises
``StorageFull`` for it."""
