"""The built-in storage backend and metadata stores, registered exactly the
way a third party registers its own plugins."""

from lightningstor.metadata.etcd import etcdStoreFactory
from lightningstor.metadata.sqlite import sqliteStoreFactory
from lightningstor.storage.distributed import distributedStorageFactory
from lightningstor.storage.local import localStorageFactory

__all__ = ["distributedStorageFactory", "etcdStoreFactory", "localStorageFactory", "sqliteStoreFactory"]
