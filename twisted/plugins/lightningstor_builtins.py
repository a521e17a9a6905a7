"""The built-in storage backend and metadata store, registered exactly the
way a third party registers its own plugins."""

from lightningstor.metadata.sqlite import sqliteStoreFactory
from lightningstor.storage.local import localStorageFactory

__all__ = ["localStorageFactory", "sqliteStoreFactory"]
