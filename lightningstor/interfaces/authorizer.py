"""The authorizer plugin interface: who may do what to which resource.

Every S3 and gRPC operation names one or more (action, resource) pairs
(SPEC §7.3; :mod:`lightningstor.core.access` holds the action names and the
resource path format).  The core asks the configured ``IAuthorizer`` about
each pair before it touches anything; ``local`` decides from roles and grants
kept in the metadata store, ``aegis`` asks the platform IAM service.  Third
parties ship their own exactly like storage plugins: an object providing
``IAuthorizerFactory`` in a ``twisted/plugins/`` module, selected by
``[iam] authorizer``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from zope.interface import Attribute, Interface


@dataclass(frozen=True)
class AuthorizerContext:
    """What an authorizer plugin may use.

    ``store`` is the server's metadata store (``IMetadataStore``): the local
    authorizer keeps its grants there, so every API server and the admin
    command see the same ones.  ``settings`` is the whole configuration as
    plain data.
    """

    reactor: Any
    store: Any
    clock: Any
    settings: Mapping[str, Any] = field(default_factory=dict)


class IAuthorizer(Interface):
    """Decides single (principal, action, resource) questions."""

    name = Attribute("The plugin name this authorizer was created from (str).")

    def authorize(principal: Any, action: str, resource: Any) -> Any:
        """Deferred[bool]: may ``principal`` (a ``core.types.Principal``) do
        ``action`` (one of ``core.access.ACTIONS``, or of the authorizer's
        optional ``refined_actions``: finer actions, such as
        ``objects:put-acl``, that an authorizer without that attribute is
        never asked, being asked the SPEC action they refine instead) to
        ``resource`` (a ``core.access.ResourceRef``)?

        Fail (errback) only when no decision can be made (the IAM service is
        unreachable); the core then refuses the request, since an authorizer
        that cannot decide must never allow.
        """

    def close() -> Any:
        """Deferred[None]: release connections and caches at shutdown."""


class ITokenAuthenticator(Interface):
    """An authorizer that also vouches for bearer tokens its IAM service
    issued (SPEC §4.3, §9.1: "aegis bearer tokens" on the gRPC API).

    Optional: the gRPC layer offers a bearer token that is not LightningStor's
    own (``lst1.``) to the configured authorizer only if it provides this
    interface; otherwise such a token is malformed, as before.
    """

    def authenticate_token(token: str) -> Any:
        """Deferred[``core.types.Principal`` | None]: whom ``token`` names, or
        None when the IAM service does not accept it (unknown, expired,
        revoked).  Fail (errback) only when no answer can be had; the call is
        then refused as unavailable, never let through."""


class IAuthorizerFactory(Interface):
    """A plugin that makes authorizers; found with ``getPlugins``."""

    name = Attribute("The name ``[iam] authorizer`` selects (str).")
    description = Attribute("One line for humans (str).")

    def create(options: Mapping[str, Any], context: AuthorizerContext) -> IAuthorizer:
        """Build an authorizer from the ``[iam]`` section (as a dict, including
        a sub-table named like the plugin).  Raise ``ConfigError`` for bad options."""
