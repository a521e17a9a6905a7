"""The built-in storage backends, metadata stores and authorizers, registered exactly the
way a third party registers its own plugins."""

from lightningstor.authz.aegis import aegisAuthorizerFactory
from lightningstor.authz.local import localAuthorizerFactory
from lightningstor.metadata.etcd import etcdStoreFactory
from lightningstor.metadata.sqlite import sqliteStoreFactory
from lightningstor.storage.distributed import distributedStorageFactory
from lightningstor.storage.local import localStorageFactory

__all__ = [
    "aegisAuthorizerFactory",
    "distributedStorageFactory",
    "etcdStoreFactory",
    "localAuthorizerFactory",
    "localStorageFactory",
    "sqliteStoreFactory",
]
