"""The ``local`` authorizer: roles, grants and the owner rule, from the metadata store.

A request is allowed when, in this order:

1. no **deny** grant of the principal or of one of its roles matches
   (an explicit deny always wins, as in AWS IAM; a deny of ``objects:put``
   also refuses ``objects:put-acl``);
2. the principal **owns** the bucket (created it): owners control their buckets;
3. one of the principal's **roles** allows the action on a resource inside
   the principal's own scope (see :data:`ROLE_ACTIONS`);
4. an **allow** grant of the principal or of one of its roles matches.

Everything else is denied.  Scope still bounds all of it: the core resolves
bucket names only in the caller's scope, so no grant reaches another tenant.

Grant lists are cached per subject for ``cache_seconds`` (``[iam]``,
default 5): a grant or revoke made with ``lightningstor-admin`` takes effect
on running servers within that time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.plugin import IPlugin
from zope.interface import implementer

from lightningstor.authz.grants import Grant, GrantStore, matches, subject_of
from lightningstor.core import access
from lightningstor.core.access import ResourceRef
from lightningstor.core.types import Principal
from lightningstor.errors import ConfigError
from lightningstor.interfaces.authorizer import AuthorizerContext, IAuthorizer, IAuthorizerFactory

# What each built-in role may do inside its holder's scope.  Creating and
# deleting buckets is an administrator's act; read-write covers object and
# upload work but not changing who may read what: objects:put-acl (making
# an object public, or sharing it with another tenant) is the admin's and
# the bucket owner's, as AWS keeps s3:PutObjectAcl apart from s3:PutObject.
ROLE_ACTIONS: dict[str, tuple[str, ...]] = {
    "admin": ("lightningstor:*",),
    "read-write": (
        access.BUCKETS_GET, access.BUCKETS_LIST, access.OBJECTS_PUT, access.OBJECTS_GET, access.OBJECTS_LIST,
        access.OBJECTS_DELETE, access.OBJECTS_COPY, "lightningstor:uploads:*",
    ),
    "read-only": (access.BUCKETS_GET, access.BUCKETS_LIST, access.OBJECTS_GET, access.OBJECTS_LIST),
}


# Bucket administration (creating, deleting, configuring buckets).  A
# project principal's roles do not carry these onto the org's shared buckets:
# a project admin administers its project, and the org's buckets belong to
# the org (an org principal, or a grant, may still allow them).
_BUCKET_ADMINISTRATION = frozenset({access.BUCKETS_CREATE, access.BUCKETS_DELETE})


def in_scope(principal: Principal, resource: ResourceRef) -> bool:
    """Whether ``resource`` lies in the principal's own scope: its org, and
    for a project principal its project or the org's shared buckets."""
    if resource.org_id != principal.org_id:
        return False
    if principal.project_id is None:
        return True
    return resource.project_id in (None, principal.project_id)


def role_reaches(principal: Principal, action: str, resource: ResourceRef) -> bool:
    """Whether the principal's roles apply to ``action`` on ``resource``:
    inside its scope, except bucket administration of the org's shared
    buckets by a project principal."""
    if not in_scope(principal, resource):
        return False
    shared = principal.project_id is not None and resource.project_id is None and resource.bucket is not None
    return not (shared and action in _BUCKET_ADMINISTRATION)


# An ACL write is a write: a deny of objects:put also refuses
# objects:put-acl, so deny grants made before objects:put-acl existed keep
# refusing everything they refused.
_DENIED_WITH = {access.OBJECTS_PUT_ACL: access.OBJECTS_PUT}


@implementer(IAuthorizer)
class LocalAuthorizer:
    name = "local"
    # Asked objects:put-acl itself rather than objects:put (core/access.py).
    refined_actions = frozenset({access.OBJECTS_PUT_ACL})

    def __init__(self, grants: GrantStore, clock: Callable[[], float], cache_seconds: float = 5.0) -> None:
        self._grants = grants
        self._clock = clock
        self._ttl = cache_seconds
        self._cache: dict[str, tuple[float, list[Grant]]] = {}

    @inlineCallbacks
    def _grants_of(self, subject: str) -> Any:
        now = self._clock()
        hit = self._cache.get(subject)
        if hit is not None and hit[0] > now:
            return hit[1]
        grants = yield self._grants.of(subject)
        if self._ttl > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[subject] = (now + self._ttl, grants)
        return grants

    def authorize(self, principal: Principal, action: str, resource: ResourceRef) -> Deferred[bool]:
        """Deferred[bool].  When every subject's grants are cached (the
        usual case: the cache lives ``cache_seconds``), the decision is made
        at once and returned already fired, without a generator per subject."""
        subjects = _subjects(principal)
        now = self._clock()
        grants: list[Grant] = []
        for subject in subjects:
            hit = self._cache.get(subject)
            if hit is None or hit[0] <= now:
                d: Deferred[bool] = self._authorize_loading(principal, action, resource, subjects)
                return d
            grants.extend(hit[1])
        try:
            return succeed(self._decide(principal, action, resource, grants))
        except Exception:
            return fail()

    @inlineCallbacks
    def _authorize_loading(
        self, principal: Principal, action: str, resource: ResourceRef, subjects: list[str]
    ) -> Any:
        grants: list[Grant] = []
        for subject in subjects:
            found = yield self._grants_of(subject)
            grants.extend(found)
        return self._decide(principal, action, resource, grants)

    @inlineCallbacks
    def denies(self, principal: Principal, action: str, resource: ResourceRef) -> Any:
        """Deferred[bool]: whether a deny grant of the principal or of one of
        its roles matches (the optional question of core/access.py): an
        explicit deny also refuses what an ACL would grant, as an explicit
        Deny beats every Allow on AWS."""
        grants: list[Grant] = []
        for subject in _subjects(principal):
            grants.extend((yield self._grants_of(subject)))
        return _denied(action, resource.path, grants)

    @staticmethod
    def _decide(principal: Principal, action: str, resource: ResourceRef, grants: list[Grant]) -> bool:
        path = resource.path
        if _denied(action, path, grants):
            return False
        if resource.owner and resource.owner == principal.principal_id and in_scope(principal, resource):
            return True
        if role_reaches(principal, action, resource):
            for role in principal.roles:
                if any(matches(p, action) for p in ROLE_ACTIONS.get(role, ())):
                    return True
        return any(g.effect == "allow" and g.applies(action, path) for g in grants)

    def close(self) -> Any:
        from twisted.internet.defer import succeed

        self._cache.clear()
        return succeed(None)


def _subjects(principal: Principal) -> list[str]:
    """Whose grants apply to ``principal``: its own and its roles'."""
    return [subject_of(principal_id=principal.principal_id)] + [subject_of(role=r) for r in principal.roles]


def _denied(action: str, path: str, grants: list[Grant]) -> bool:
    also = _DENIED_WITH.get(action)
    return any(g.effect == "deny" and (g.applies(action, path) or (also and g.applies(also, path))) for g in grants)


@implementer(IPlugin, IAuthorizerFactory)
class LocalAuthorizerFactory:
    name = "local"
    description = "Roles, grants and the owner rule, kept in the metadata store"

    def create(self, options: Mapping[str, Any], context: AuthorizerContext) -> LocalAuthorizer:
        cache = options.get("cache_seconds", 5.0)
        if not isinstance(cache, (int, float)) or isinstance(cache, bool) or cache < 0:
            raise ConfigError("iam.cache_seconds: a number of seconds >= 0")
        return LocalAuthorizer(GrantStore(context.store, context.clock), context.clock, float(cache))


localAuthorizerFactory = LocalAuthorizerFactory()
