"""Finding storage-backend, metadata-store and authorizer plugins by name, and
opening the configured ones.

Built-in plugins are registered exactly like a third party's: a module in a
``twisted/plugins/`` directory on ``sys.path`` exposing objects that provide
``IStorageBackendFactory`` / ``IMetadataStoreFactory``.  Twisted's loader
only *logs* a plugin module that fails to import, so a configured name that
is missing is reported together with the names that were found.

Twisted imports every plugin module to find the plugins, so the built-ins
register :class:`LazyFactory` objects: the backend a server is configured
with is imported when it is selected, the others never (they cost each
worker process about 5 MiB: etcd, the distributed store and its node
client, the aegis client).
"""

from __future__ import annotations

import importlib
import time
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.plugin import IPlugin, getPlugins
from zope.interface import directlyProvides

from lightningstor.errors import ConfigError
from lightningstor.interfaces.authorizer import AuthorizerContext, IAuthorizerFactory
from lightningstor.interfaces.metadata import IMetadataStoreFactory
from lightningstor.interfaces.storage import IStorageBackendFactory, PluginContext

if TYPE_CHECKING:
    from lightningstor.config import Settings

T = TypeVar("T")

# ``[metadata] backend = "chainfire"`` is the SPEC's name for the platform KV
# store; etcd plays that role, so the two names select the same plugin.
ALIASES = {"metadata": {"chainfire": "etcd"}}


class LazyFactory:
    """A plugin factory whose implementation is imported on first use.

    ``target`` is ``"module:attribute"``, the real factory; ``name`` must be
    its name (a test checks every built-in).  :func:`find_storage_factory`
    and its siblings hand out the real factory; any other use of this one
    (``create``, ``description``) loads it and passes through.
    """

    def __init__(self, interface: Any, name: str, target: str) -> None:
        self.name = name
        self.target = target
        directlyProvides(self, IPlugin, interface)

    def load(self) -> Any:
        module, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module), attribute)

    def create(self, options: Any, context: Any) -> Any:
        return self.load().create(options, context)

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return getattr(self.load(), attribute)


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


def find_authorizer_factory(name: str, *, load: bool = True) -> Any:
    """The ``IAuthorizerFactory`` called ``name`` (``[iam] authorizer``)."""
    return _find(name, available_authorizers(), "iam.authorizer", "authorizer", load=load)


def find_storage_factory(name: str, *, load: bool = True) -> Any:
    """The ``IStorageBackendFactory`` called ``name``; ConfigError lists the others."""
    return _find(name, available_storage_backends(), "storage.backend", "storage backend", load=load)


def find_metadata_factory(name: str, *, load: bool = True) -> Any:
    name = ALIASES["metadata"].get(name, name)
    return _find(name, available_metadata_stores(), "metadata.backend", "metadata store", load=load)


def check_configured(settings: Any) -> None:
    """Raise ``ConfigError`` if no plugin has a name the settings select,
    without loading any implementation (the supervisor's check, before it
    daemonizes: a worker's own error would go to a daemon's closed stderr)."""
    find_metadata_factory(settings.metadata.backend, load=False)
    find_storage_factory(settings.storage.backend, load=False)
    find_authorizer_factory(settings.iam.authorizer, load=False)


def _find(name: str, found: dict[str, Any], key: str, what: str, *, load: bool = True) -> Any:
    try:
        plugin = found[name]
    except KeyError:
        names = ", ".join(sorted(found)) or "none"
        raise ConfigError(
            f"{key}: no {what} plugin named {name!r} is installed (found: {names}); "
            "a plugin module that failed to import is logged by twisted.plugin"
        ) from None
    return plugin.load() if load and isinstance(plugin, LazyFactory) else plugin


# -- opening the configured plugins (the server, and the admin commands that
# open its data without importing the server) ---------------------------------


def plugin_options(section: Any, name: str) -> dict[str, Any]:
    """A plugin's options: its section with its own sub-table (``[storage.local]``)
    merged on top, so plugin-specific keys need not sit beside the generic ones."""
    options = dict(section)
    own = options.get(name)
    if own is not None and hasattr(own, "items"):
        options.update(dict(own.items()))
    return options


def open_plugins(
    settings: Settings, reactor: Any, io_pool: Any, store_factory: Any = None, backend_factory: Any = None
) -> tuple[Any, Any]:
    """The configured metadata store and storage backend, created exactly as
    the server creates them (``lightningstor-admin collect``/``scrub`` open the same
    data this way, so they can never disagree about where it is)."""
    store_factory = store_factory or find_metadata_factory(settings.metadata.backend)
    backend_factory = backend_factory or find_storage_factory(settings.storage.backend)
    context = PluginContext(
        reactor=reactor, io_pool=io_pool, data_dir=settings.data_dir, settings=settings.to_dict()
    )
    store = store_factory.create(plugin_options(settings.metadata.options, store_factory.name), context)
    storage_options = plugin_options(settings.storage.options, backend_factory.name)
    storage_options.setdefault("data_dir", settings.storage.data_dir)
    backend = backend_factory.create(storage_options, context)
    return store, backend


def open_authorizer(settings: Settings, reactor: Any, store: Any) -> Any:
    """The configured ``IAuthorizer`` (``[iam] authorizer``), found like any plugin."""
    factory = find_authorizer_factory(settings.iam.authorizer)
    options = plugin_options(settings.to_dict()["iam"], factory.name)
    context = AuthorizerContext(reactor=reactor, store=store, clock=time.time, settings=settings.to_dict())
    return factory.create(options, context)
