"""Finding storage-backend, metadata-store and authorizer plugins by name.

Built-in plugins are registered exactly like a third party's: a module in a
``twisted/plugins/`` directory on ``sys.path`` exposing objects that provide
``IStorageBackendFactory`` / ``IMetadataStoreFactory``.  Twisted's loader
only *logs* a plugin module that fails to import, so a configured name that
is missing is reported together with the names that were found.
"""

from __future__ import annotations

from typing import Any, TypeVar

from twisted.plugin import getPlugins

from lightningstor.errors import ConfigError
from lightningstor.interfaces.authorizer import IAuthorizerFactory
from lightningstor.interfaces.metadata import IMetadataStoreFactory
from lightningstor.interfaces.storage import IStorageBackendFactory

T = TypeVar("T")

# ``[metadata] backend = "chainfire"`` is the SPEC's name for the platform KV
# store; etcd plays that role, so the two names select the same plugin.
ALIASES = {"metadata": {"chainfire": "etcd"}}


def _plugins(interface: Any) -> dict[str, Any]:
    import twisted.plugins

    found: dict[str, Any] = {}
    for plugin in getPlugins(interface, twisted.plugins):
        found.setdefault(plugin.name, plugin)
    return found


def available_storage_backends() -> dict[str, Any]:
    return _plugins(IStorageBackendFactory)


def available_metadata_stores() -> dict[str, Any]:
    return _plugins(IMetadataStoreFactory)


def available_authorizers() -> dict[str, Any]:
    return _plugins(IAuthorizerFactory)


def find_authorizer_factory(name: str) -> Any:
    """The ``IAuthorizerFactory`` called ``name`` (``[iam] authorizer``)."""
    return _find(name, available_authorizers(), "iam.authorizer", "authorizer")


def find_storage_factory(name: str) -> Any:
    """The ``IStorageBackendFactory`` called ``name``; ConfigError lists the others."""
    return _find(name, available_storage_backends(), "storage.backend", "storage backend")


def find_metadata_factory(name: str) -> Any:
    name = ALIASES["metadata"].get(name, name)
    return _find(name, available_metadata_stores(), "metadata.backend", "metadata store")


def _find(name: str, found: dict[str, Any], key: str, what: str) -> Any:
    try:
        return found[name]
    except KeyError:
        names = ", ".join(sorted(found)) or "none"
        raise ConfigError(
            f"{key}: no {what} plugin named {name!r} is installed (found: {names}); "
            "a plugin module that failed to import is logged by twisted.plugin"
        ) from None
