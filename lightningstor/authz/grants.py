"""Grants for the local authorizer, kept in the metadata store.

A grant gives (or, with ``effect = "deny"``, takes away) a set of actions on
the resources matching a set of patterns, to one subject: a principal
(``principal:{id}``) or everyone holding a role (``role:{name}``).  Grants
live under ``lightningstor/grants/{subject}/{grant id}``, so finding a
principal's grants is one ranged scan per subject.

Patterns are resource paths (``org/acme/project/web/bucket/logs/object/2026/*``)
in which ``*`` matches any run of characters, ``/`` included; nothing else
is special, so object keys holding ``[`` or ``?`` need no escaping.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet.defer import inlineCallbacks

from lightningstor.core import keys
from lightningstor.core.access import GRANTABLE_ACTIONS
from lightningstor.core.patterns import matches
from lightningstor.interfaces.metadata import Compare, Delete, IMetadataStore, Put, prefix_end

EFFECTS = ("allow", "deny")


def subject_of(principal_id: str | None = None, role: str | None = None) -> str:
    if (principal_id is None) == (role is None):
        raise ValueError("a grant's subject is one principal or one role")
    return f"principal:{principal_id}" if principal_id is not None else f"role:{role}"


def validate_action_pattern(pattern: str) -> str:
    """An action pattern must be able to match at least one known action:
    a typo (``lightningstor:object:get``) would otherwise grant nothing, silently."""
    if not any(matches(pattern, action) for action in GRANTABLE_ACTIONS):
        raise ValueError(f"action {pattern!r} matches none of: {', '.join(GRANTABLE_ACTIONS)}")
    return pattern


def validate_resource_pattern(pattern: str) -> str:
    if not pattern or not (pattern.startswith("org/") or pattern == "*"):
        raise ValueError(f"resource {pattern!r}: a pattern starts with 'org/' (or is '*')")
    return pattern


@dataclass(frozen=True)
class Grant:
    grant_id: str
    subject: str  # principal:{id} | role:{name}
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    effect: str = "allow"
    created_at: int = 0

    def applies(self, action: str, resource_path: str) -> bool:
        return any(matches(a, action) for a in self.actions) and any(
            matches(r, resource_path) for r in self.resources
        )

    def encode(self) -> bytes:
        return json.dumps(
            {"v": 1, "id": self.grant_id, "subject": self.subject, "actions": list(self.actions),
             "resources": list(self.resources), "effect": self.effect, "created": self.created_at},
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> Grant:
        d = json.loads(data)
        return cls(d["id"], d["subject"], tuple(d["actions"]), tuple(d["resources"]),
                   d.get("effect", "allow"), int(d.get("created", 0)))


class GrantStore:
    """Add, list and revoke grants."""

    def __init__(self, store: IMetadataStore, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock

    @inlineCallbacks
    def add(
        self, subject: str, actions: tuple[str, ...], resources: tuple[str, ...], effect: str = "allow"
    ) -> Any:
        """Deferred[Grant]; ValueError for an empty or unknown action/resource."""
        if effect not in EFFECTS:
            raise ValueError(f"effect {effect!r}: one of {', '.join(EFFECTS)}")
        if not actions or not resources:
            raise ValueError("a grant names at least one action and one resource")
        for a in actions:
            validate_action_pattern(a)
        for r in resources:
            validate_resource_pattern(r)
        grant = Grant(
            "g" + secrets.token_hex(8), subject, tuple(actions), tuple(resources), effect,
            int(self._clock() * 1000),
        )
        key = keys.grant_key(subject, grant.grant_id)
        yield self._store.txn([Compare(key, 0)], [Put(key, grant.encode())])
        return grant

    @inlineCallbacks
    def of(self, subject: str) -> Any:
        """Deferred[list[Grant]] of one subject."""
        prefix = keys.grants_prefix(subject)
        rows = yield self._store.scan(prefix, prefix_end(prefix))
        return [Grant.decode(kv.value) for kv in rows]

    @inlineCallbacks
    def all(self) -> Any:
        """Deferred[list[Grant]]: every grant (the admin listing)."""
        rows = yield self._store.scan(keys.GRANTS, prefix_end(keys.GRANTS))
        return [Grant.decode(kv.value) for kv in rows]

    @inlineCallbacks
    def revoke(self, grant_id: str) -> Any:
        """Deferred[bool]: True if a grant with that id existed and is gone."""
        grants = yield self.all()
        for grant in grants:
            if grant.grant_id == grant_id:
                key = keys.grant_key(grant.subject, grant_id)
                yield self._store.txn([], [Delete(key)])
                return True
        return False
