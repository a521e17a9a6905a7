"""The built-in storage backends, metadata stores and authorizers, registered exactly the
way a third party registers its own plugins.

Twisted imports this module to find plugins (every time, in every worker), so
it names the implementations without importing them (``LazyFactory``): only
the one a server is configured with is loaded.
"""

from lightningstor.interfaces.authorizer import IAuthorizerFactory
from lightningstor.interfaces.metadata import IMetadataStoreFactory
from lightningstor.interfaces.storage import IStorageBackendFactory
from lightningstor.plugins import LazyFactory

aegisAuthorizerFactory = LazyFactory(IAuthorizerFactory, "aegis", "lightningstor.authz.aegis:aegisAuthorizerFactory")
localAuthorizerFactory = LazyFactory(IAuthorizerFactory, "local", "lightningstor.authz.local:localAuthorizerFactory")
etcdStoreFactory = LazyFactory(IMetadataStoreFactory, "etcd", "lightningstor.metadata.etcd:etcdStoreFactory")
sqliteStoreFactory = LazyFactory(IMetadataStoreFactory, "sqlite", "lightningstor.metadata.sqlite:sqliteStoreFactory")
distributedStorageFactory = LazyFactory(
    IStorageBackendFactory, "distributed", "lightningstor.storage.distributed:distributedStorageFactory"
)
localStorageFactory = LazyFactory(IStorageBackendFactory, "local", "lightningstor.storage.local:localStorageFactory")

BUILTINS = [
    aegisAuthorizerFactory,
    localAuthorizerFactory,
    etcdStoreFactory,
    sqliteStoreFactory,
    distributedStorageFactory,
    localStorageFactory,
]

__all__ = [
    "BUILTINS",
    "aegisAuthorizerFactory",
    "distributedStorageFactory",
    "etcdStoreFactory",
    "localAuthorizerFactory",
    "localStorageFactory",
    "sqliteStoreFactory",
]
