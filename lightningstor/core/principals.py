"""Principals: who a credential belongs to, their roles, and whether they may act.

A principal belongs to an org and optionally a project (SPEC §4.3, §7.1).
Its record (``lightningstor/principals/{id}``) holds the roles the local
authorizer reads and a ``disabled`` flag that stops every access key of the
principal at once.  Credentials point at a principal by id; the credential
lookup joins the two (:meth:`CredentialStore.lookup`), so one cached read
per access key decides authentication.

Ids are restricted to a safe alphabet: they appear in metadata keys,
resource paths and audit records.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from twisted.internet.defer import inlineCallbacks

from lightningstor.core import keys
from lightningstor.interfaces.metadata import Compare, IMetadataStore, Put, prefix_end

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}\Z")

# Roles the local authorizer knows (lightningstor.authz.local); other names
# are custom roles whose permissions come only from grants.
BUILTIN_ROLES = ("admin", "read-write", "read-only")


def validate_id(value: str, what: str) -> str:
    """``value`` if it is a usable principal/org/project id; ValueError otherwise."""
    if not _ID.match(value or ""):
        raise ValueError(
            f"{what} {value!r}: use 1-128 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
        )
    return value


def validate_role(value: str) -> str:
    if not re.match(r"^[a-z0-9][a-z0-9-]{0,63}\Z", value or ""):
        raise ValueError(f"role {value!r}: use 1-64 lower-case letters, digits or '-'")
    return value


@dataclass(frozen=True)
class PrincipalRecord:
    principal_id: str
    org_id: str
    project_id: str | None = None
    display_name: str = ""
    roles: tuple[str, ...] = field(default_factory=tuple)
    disabled: bool = False
    created_at: int = 0  # Unix ms

    def encode(self) -> bytes:
        return json.dumps(
            {
                "v": 1,
                "id": self.principal_id,
                "org": self.org_id,
                "project": self.project_id,
                "name": self.display_name,
                "roles": list(self.roles),
                "disabled": self.disabled,
                "created": self.created_at,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> PrincipalRecord:
        d = json.loads(data)
        return cls(
            principal_id=d["id"],
            org_id=d["org"],
            project_id=d.get("project"),
            display_name=d.get("name", ""),
            roles=tuple(d.get("roles", ())),
            disabled=bool(d.get("disabled", False)),
            created_at=int(d.get("created", 0)),
        )


class PrincipalStore:
    """Create, read, list and change principal records."""

    def __init__(self, store: IMetadataStore, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock

    @inlineCallbacks
    def create(
        self,
        principal_id: str,
        org_id: str,
        project_id: str | None = None,
        *,
        roles: tuple[str, ...] = (),
        display_name: str = "",
    ) -> Any:
        """Deferred[PrincipalRecord]; ValueError if the id is taken or invalid."""
        validate_id(principal_id, "principal id")
        validate_id(org_id, "org id")
        if project_id:
            validate_id(project_id, "project id")
        for role in roles:
            validate_role(role)
        record = PrincipalRecord(
            principal_id, org_id, project_id or None, display_name, tuple(dict.fromkeys(roles)),
            False, int(self._clock() * 1000),
        )
        key = keys.principal_key(principal_id)
        result = yield self._store.txn([Compare(key, 0)], [Put(key, record.encode())])
        if not result.succeeded:
            raise ValueError(f"principal {principal_id} already exists")
        return record

    @inlineCallbacks
    def ensure(self, record: PrincipalRecord) -> Any:
        """Make the record exist as given unless an identical one does
        (the root principal at start-up); Deferred[PrincipalRecord]."""
        key = keys.principal_key(record.principal_id)
        kv = yield self._store.get(key)
        if kv is not None:
            current = PrincipalRecord.decode(kv.value)
            if replace(current, created_at=0) == replace(record, created_at=0):
                return current
            record = replace(record, created_at=current.created_at)
        elif not record.created_at:
            record = replace(record, created_at=int(self._clock() * 1000))
        yield self._store.txn([], [Put(key, record.encode())])
        return record

    @inlineCallbacks
    def get(self, principal_id: str) -> Any:
        """Deferred[PrincipalRecord | None]."""
        kv = yield self._store.get(keys.principal_key(principal_id))
        return None if kv is None else PrincipalRecord.decode(kv.value)

    @inlineCallbacks
    def list(self, org_id: str | None = None) -> Any:
        """Deferred[list[PrincipalRecord]] sorted by id, optionally of one org."""
        rows = yield self._store.scan(keys.PRINCIPALS, prefix_end(keys.PRINCIPALS))
        out = [PrincipalRecord.decode(kv.value) for kv in rows]
        return [p for p in out if org_id is None or p.org_id == org_id]

    @inlineCallbacks
    def update(self, principal_id: str, change: Callable[[PrincipalRecord], PrincipalRecord]) -> Any:
        """Deferred[PrincipalRecord] after ``change``; KeyError if unknown.
        Compare-and-swap, retried, so concurrent admin edits never lose one."""
        key = keys.principal_key(principal_id)
        for _attempt in range(50):
            kv = yield self._store.get(key)
            if kv is None:
                raise KeyError(principal_id)
            record = change(PrincipalRecord.decode(kv.value))
            for role in record.roles:
                validate_role(role)
            result = yield self._store.txn([Compare(key, kv.mod_revision)], [Put(key, record.encode())])
            if result.succeeded:
                return record
        raise RuntimeError(f"principal {principal_id} keeps changing; try again")
