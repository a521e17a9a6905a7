# ruff: noqa
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PutChunkRequest(_message.Message):
    __slots__ = ("chunk_id", "data", "crc32c", "size", "has_crc32c", "replace_crc32c", "has_replace_crc32c")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CRC32C_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    HAS_CRC32C_FIELD_NUMBER: _ClassVar[int]
    REPLACE_CRC32C_FIELD_NUMBER: _ClassVar[int]
    HAS_REPLACE_CRC32C_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    data: bytes
    crc32c: int
    size: int
    has_crc32c: bool
    replace_crc32c: int
    has_replace_crc32c: bool
    def __init__(self, chunk_id: _Optional[str] = ..., data: _Optional[bytes] = ..., crc32c: _Optional[int] = ..., size: _Optional[int] = ..., has_crc32c: _Optional[bool] = ..., replace_crc32c: _Optional[int] = ..., has_replace_crc32c: _Optional[bool] = ...) -> None: ...

class PutChunkResponse(_message.Message):
    __slots__ = ("size",)
    SIZE_FIELD_NUMBER: _ClassVar[int]
    size: int
    def __init__(self, size: _Optional[int] = ...) -> None: ...

class GetChunkRequest(_message.Message):
    __slots__ = ("chunk_id", "offset", "length", "has_length")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    HAS_LENGTH_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    offset: int
    length: int
    has_length: bool
    def __init__(self, chunk_id: _Optional[str] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ..., has_length: _Optional[bool] = ...) -> None: ...

class GetChunkResponse(_message.Message):
    __slots__ = ("data", "chunk_size", "chunk_crc32c", "has_chunk_info")
    DATA_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_CRC32C_FIELD_NUMBER: _ClassVar[int]
    HAS_CHUNK_INFO_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    chunk_size: int
    chunk_crc32c: int
    has_chunk_info: bool
    def __init__(self, data: _Optional[bytes] = ..., chunk_size: _Optional[int] = ..., chunk_crc32c: _Optional[int] = ..., has_chunk_info: _Optional[bool] = ...) -> None: ...

class DeleteChunkRequest(_message.Message):
    __slots__ = ("chunk_id",)
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    def __init__(self, chunk_id: _Optional[str] = ...) -> None: ...

class DeleteChunkResponse(_message.Message):
    __slots__ = ("existed",)
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    existed: bool
    def __init__(self, existed: _Optional[bool] = ...) -> None: ...

class HasChunkRequest(_message.Message):
    __slots__ = ("chunk_id",)
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    def __init__(self, chunk_id: _Optional[str] = ...) -> None: ...

class HasChunkResponse(_message.Message):
    __slots__ = ("exists",)
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    exists: bool
    def __init__(self, exists: _Optional[bool] = ...) -> None: ...

class VerifyChunkRequest(_message.Message):
    __slots__ = ("chunk_id",)
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    def __init__(self, chunk_id: _Optional[str] = ...) -> None: ...

class VerifyChunkResponse(_message.Message):
    __slots__ = ("size", "crc32c")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CRC32C_FIELD_NUMBER: _ClassVar[int]
    size: int
    crc32c: int
    def __init__(self, size: _Optional[int] = ..., crc32c: _Optional[int] = ...) -> None: ...

class ListChunksRequest(_message.Message):
    __slots__ = ("start_after", "limit")
    START_AFTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    start_after: str
    limit: int
    def __init__(self, start_after: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ChunkEntry(_message.Message):
    __slots__ = ("chunk_id", "size", "created_at")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    size: int
    created_at: float
    def __init__(self, chunk_id: _Optional[str] = ..., size: _Optional[int] = ..., created_at: _Optional[float] = ...) -> None: ...

class ListChunksResponse(_message.Message):
    __slots__ = ("chunks", "next_start_after")
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_START_AFTER_FIELD_NUMBER: _ClassVar[int]
    chunks: _containers.RepeatedCompositeFieldContainer[ChunkEntry]
    next_start_after: str
    def __init__(self, chunks: _Optional[_Iterable[_Union[ChunkEntry, _Mapping]]] = ..., next_start_after: _Optional[str] = ...) -> None: ...

class StatRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatResponse(_message.Message):
    __slots__ = ("node_id", "zone", "free_bytes", "used_bytes", "total_bytes", "chunk_count", "chunk_bytes")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    zone: str
    free_bytes: int
    used_bytes: int
    total_bytes: int
    chunk_count: int
    chunk_bytes: int
    def __init__(self, node_id: _Optional[str] = ..., zone: _Optional[str] = ..., free_bytes: _Optional[int] = ..., used_bytes: _Optional[int] = ..., total_bytes: _Optional[int] = ..., chunk_count: _Optional[int] = ..., chunk_bytes: _Optional[int] = ...) -> None: ...

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthResponse(_message.Message):
    __slots__ = ("serving", "detail")
    SERVING_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    serving: bool
    detail: str
    def __init__(self, serving: _Optional[bool] = ..., detail: _Optional[str] = ...) -> None: ...
