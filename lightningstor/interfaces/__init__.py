"""Public plugin interfaces: what a third-party backend or store implements."""

from lightningstor.interfaces.chunkwriter import BufferedChunkWriter
from lightningstor.interfaces.metadata import (
    Compare,
    Delete,
    DeleteRange,
    IMetadataStore,
    IMetadataStoreFactory,
    KeyValue,
    Put,
    TxnResult,
    prefix_end,
)
from lightningstor.interfaces.storage import (
    BackendCapabilities,
    ChunkInfo,
    DurabilityLevel,
    IChunkWriter,
    IStorageBackend,
    IStorageBackendFactory,
    PluginContext,
)

__all__ = [
    "BackendCapabilities",
    "BufferedChunkWriter",
    "ChunkInfo",
    "Compare",
    "Delete",
    "DeleteRange",
    "DurabilityLevel",
    "IChunkWriter",
    "IMetadataStore",
    "IMetadataStoreFactory",
    "IStorageBackend",
    "IStorageBackendFactory",
    "KeyValue",
    "PluginContext",
    "Put",
    "TxnResult",
    "prefix_end",
]
