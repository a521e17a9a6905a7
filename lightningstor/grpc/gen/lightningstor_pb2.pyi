from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VersioningStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERSIONING_STATUS_UNSPECIFIED: _ClassVar[VersioningStatus]
    VERSIONING_STATUS_DISABLED: _ClassVar[VersioningStatus]
    VERSIONING_STATUS_ENABLED: _ClassVar[VersioningStatus]
    VERSIONING_STATUS_SUSPENDED: _ClassVar[VersioningStatus]

class StorageClass(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STORAGE_CLASS_UNSPECIFIED: _ClassVar[StorageClass]
    STORAGE_CLASS_STANDARD: _ClassVar[StorageClass]
    STORAGE_CLASS_REDUCED_REDUNDANCY: _ClassVar[StorageClass]
    STORAGE_CLASS_ARCHIVE: _ClassVar[StorageClass]

class ChecksumAlgorithm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHECKSUM_ALGORITHM_UNSPECIFIED: _ClassVar[ChecksumAlgorithm]
    CHECKSUM_ALGORITHM_SHA256: _ClassVar[ChecksumAlgorithm]
    CHECKSUM_ALGORITHM_SHA1: _ClassVar[ChecksumAlgorithm]
    CHECKSUM_ALGORITHM_MD5: _ClassVar[ChecksumAlgorithm]
    CHECKSUM_ALGORITHM_CRC32: _ClassVar[ChecksumAlgorithm]
    CHECKSUM_ALGORITHM_CRC32C: _ClassVar[ChecksumAlgorithm]
    CHECKSUM_ALGORITHM_CRC64NVME: _ClassVar[ChecksumAlgorithm]

class ChecksumType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHECKSUM_TYPE_UNSPECIFIED: _ClassVar[ChecksumType]
    CHECKSUM_TYPE_COMPOSITE: _ClassVar[ChecksumType]
    CHECKSUM_TYPE_FULL_OBJECT: _ClassVar[ChecksumType]

class MetadataDirective(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    METADATA_DIRECTIVE_COPY: _ClassVar[MetadataDirective]
    METADATA_DIRECTIVE_REPLACE: _ClassVar[MetadataDirective]
VERSIONING_STATUS_UNSPECIFIED: VersioningStatus
VERSIONING_STATUS_DISABLED: VersioningStatus
VERSIONING_STATUS_ENABLED: VersioningStatus
VERSIONING_STATUS_SUSPENDED: VersioningStatus
STORAGE_CLASS_UNSPECIFIED: StorageClass
STORAGE_CLASS_STANDARD: StorageClass
STORAGE_CLASS_REDUCED_REDUNDANCY: StorageClass
STORAGE_CLASS_ARCHIVE: StorageClass
CHECKSUM_ALGORITHM_UNSPECIFIED: ChecksumAlgorithm
CHECKSUM_ALGORITHM_SHA256: ChecksumAlgorithm
CHECKSUM_ALGORITHM_SHA1: ChecksumAlgorithm
CHECKSUM_ALGORITHM_MD5: ChecksumAlgorithm
CHECKSUM_ALGORITHM_CRC32: ChecksumAlgorithm
CHECKSUM_ALGORITHM_CRC32C: ChecksumAlgorithm
CHECKSUM_ALGORITHM_CRC64NVME: ChecksumAlgorithm
CHECKSUM_TYPE_UNSPECIFIED: ChecksumType
CHECKSUM_TYPE_COMPOSITE: ChecksumType
CHECKSUM_TYPE_FULL_OBJECT: ChecksumType
METADATA_DIRECTIVE_COPY: MetadataDirective
METADATA_DIRECTIVE_REPLACE: MetadataDirective

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VersioningConfig(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: VersioningStatus
    def __init__(self, status: _Optional[_Union[VersioningStatus, str]] = ...) -> None: ...

class ObjectChecksum(_message.Message):
    __slots__ = ("algorithm", "value")
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    algorithm: ChecksumAlgorithm
    value: str
    def __init__(self, algorithm: _Optional[_Union[ChecksumAlgorithm, str]] = ..., value: _Optional[str] = ...) -> None: ...

class Owner(_message.Message):
    __slots__ = ("id", "display_name")
    ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    id: str
    display_name: str
    def __init__(self, id: _Optional[str] = ..., display_name: _Optional[str] = ...) -> None: ...

class ObjectAttributes(_message.Message):
    __slots__ = ("content_type", "metadata", "content_encoding", "content_disposition", "content_language", "cache_control", "expires", "storage_class")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CONTENT_ENCODING_FIELD_NUMBER: _ClassVar[int]
    CONTENT_DISPOSITION_FIELD_NUMBER: _ClassVar[int]
    CONTENT_LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    CACHE_CONTROL_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    STORAGE_CLASS_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    metadata: _containers.ScalarMap[str, str]
    content_encoding: str
    content_disposition: str
    content_language: str
    cache_control: str
    expires: str
    storage_class: StorageClass
    def __init__(self, content_type: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., content_encoding: _Optional[str] = ..., content_disposition: _Optional[str] = ..., content_language: _Optional[str] = ..., cache_control: _Optional[str] = ..., expires: _Optional[str] = ..., storage_class: _Optional[_Union[StorageClass, str]] = ...) -> None: ...

class Bucket(_message.Message):
    __slots__ = ("name", "org_id", "project_id", "versioning", "created_at", "updated_at", "created_by", "storage_class", "metadata", "tags", "region")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSIONING_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    STORAGE_CLASS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    name: str
    org_id: str
    project_id: str
    versioning: VersioningConfig
    created_at: int
    updated_at: int
    created_by: str
    storage_class: StorageClass
    metadata: _containers.ScalarMap[str, str]
    tags: _containers.ScalarMap[str, str]
    region: str
    def __init__(self, name: _Optional[str] = ..., org_id: _Optional[str] = ..., project_id: _Optional[str] = ..., versioning: _Optional[_Union[VersioningConfig, _Mapping]] = ..., created_at: _Optional[int] = ..., updated_at: _Optional[int] = ..., created_by: _Optional[str] = ..., storage_class: _Optional[_Union[StorageClass, str]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., tags: _Optional[_Mapping[str, str]] = ..., region: _Optional[str] = ...) -> None: ...

class ObjectMetadata(_message.Message):
    __slots__ = ("bucket", "key", "version_id", "size", "etag", "content_type", "content_encoding", "content_disposition", "content_language", "cache_control", "expires", "checksums", "storage_class", "metadata", "last_modified", "delete_marker", "tags", "parts_count", "owner")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_ENCODING_FIELD_NUMBER: _ClassVar[int]
    CONTENT_DISPOSITION_FIELD_NUMBER: _ClassVar[int]
    CONTENT_LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    CACHE_CONTROL_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    CHECKSUMS_FIELD_NUMBER: _ClassVar[int]
    STORAGE_CLASS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    LAST_MODIFIED_FIELD_NUMBER: _ClassVar[int]
    DELETE_MARKER_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    PARTS_COUNT_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    key: str
    version_id: str
    size: int
    etag: str
    content_type: str
    content_encoding: str
    content_disposition: str
    content_language: str
    cache_control: str
    expires: str
    checksums: _containers.RepeatedCompositeFieldContainer[ObjectChecksum]
    storage_class: StorageClass
    metadata: _containers.ScalarMap[str, str]
    last_modified: int
    delete_marker: bool
    tags: _containers.ScalarMap[str, str]
    parts_count: int
    owner: str
    def __init__(self, bucket: _Optional[str] = ..., key: _Optional[str] = ..., version_id: _Optional[str] = ..., size: _Optional[int] = ..., etag: _Optional[str] = ..., content_type: _Optional[str] = ..., content_encoding: _Optional[str] = ..., content_disposition: _Optional[str] = ..., content_language: _Optional[str] = ..., cache_control: _Optional[str] = ..., expires: _Optional[str] = ..., checksums: _Optional[_Iterable[_Union[ObjectChecksum, _Mapping]]] = ..., storage_class: _Optional[_Union[StorageClass, str]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., last_modified: _Optional[int] = ..., delete_marker: _Optional[bool] = ..., tags: _Optional[_Mapping[str, str]] = ..., parts_count: _Optional[int] = ..., owner: _Optional[str] = ...) -> None: ...

class ErrorDetail(_message.Message):
    __slots__ = ("code", "message", "resource", "fields")
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    resource: str
    fields: _containers.ScalarMap[str, str]
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., resource: _Optional[str] = ..., fields: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PutObjectRequest(_message.Message):
    __slots__ = ("bucket", "key", "content", "content_type", "metadata", "checksum_algorithm", "checksum_value", "attributes", "tags", "if_match", "if_none_match")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_VALUE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    IF_MATCH_FIELD_NUMBER: _ClassVar[int]
    IF_NONE_MATCH_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    key: str
    content: bytes
    content_type: str
    metadata: _containers.ScalarMap[str, str]
    checksum_algorithm: ChecksumAlgorithm
    checksum_value: str
    attributes: ObjectAttributes
    tags: _containers.ScalarMap[str, str]
    if_match: str
    if_none_match: str
    def __init__(self, bucket: _Optional[str] = ..., key: _Optional[str] = ..., content: _Optional[bytes] = ..., content_type: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., checksum_algorithm: _Optional[_Union[ChecksumAlgorithm, str]] = ..., checksum_value: _Optional[str] = ..., attributes: _Optional[_Union[ObjectAttributes, _Mapping]] = ..., tags: _Optional[_Mapping[str, str]] = ..., if_match: _Optional[str] = ..., if_none_match: _Optional[str] = ...) -> None: ...

class PutObjectResponse(_message.Message):
    __slots__ = ("etag", "version_id", "checksums", "size")
    ETAG_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKSUMS_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    etag: str
    version_id: str
    checksums: _containers.RepeatedCompositeFieldContainer[ObjectChecksum]
    size: int
    def __init__(self, etag: _Optional[str] = ..., version_id: _Optional[str] = ..., checksums: _Optional[_Iterable[_Union[ObjectChecksum, _Mapping]]] = ..., size: _Optional[int] = ...) -> None: ...

class GetObjectRequest(_message.Message):
    __slots__ = ("bucket", "key", "version_id", "range", "if_match", "if_none_match")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    IF_MATCH_FIELD_NUMBER: _ClassVar[int]
    IF_NONE_MATCH_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    key: str
    version_id: str
    range: str
    if_match: str
    if_none_match: str
    def __init__(self, bucket: _Optional[str] = ..., key: _Optional[str] = ..., version_id: _Optional[str] = ..., range: _Optional[str] = ..., if_match: _Optional[str] = ..., if_none_match: _Optional[str] = ...) -> None: ...

class ContentRange(_message.Message):
    __slots__ = ("start", "end", "size")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    size: int
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ..., size: _Optional[int] = ...) -> None: ...

class GetObjectResponse(_message.Message):
    __slots__ = ("metadata", "content", "content_range", "content_length")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_RANGE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    metadata: ObjectMetadata
    content: bytes
    content_range: ContentRange
    content_length: int
    def __init__(self, metadata: _Optional[_Union[ObjectMetadata, _Mapping]] = ..., content: _Optional[bytes] = ..., content_range: _Optional[_Union[ContentRange, _Mapping]] = ..., content_length: _Optional[int] = ...) -> None: ...

class HeadObjectRequest(_message.Message):
    __slots__ = ("bucket", "key", "version_id", "if_match", "if_none_match")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    IF_MATCH_FIELD_NUMBER: _ClassVar[int]
    IF_NONE_MATCH_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    key: str
    version_id: str
    if_match: str
    if_none_match: str
    def __init__(self, bucket: _Optional[str] = ..., key: _Optional[str] = ..., version_id: _Optional[str] = ..., if_match: _Optional[str] = ..., if_none_match: _Optional[str] = ...) -> None: ...

class HeadObjectResponse(_message.Message):
    __slots__ = ("metadata",)
    METADATA_FIELD_NUMBER: _ClassVar[int]
    metadata: ObjectMetadata
    def __init__(self, metadata: _Optional[_Union[ObjectMetadata, _Mapping]] = ...) -> None: ...

class DeleteObjectRequest(_message.Message):
    __slots__ = ("bucket", "key", "version_id")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    key: str
    version_id: str
    def __init__(self, bucket: _Optional[str] = ..., key: _Optional[str] = ..., version_id: _Optional[str] = ...) -> None: ...

class DeleteObjectResponse(_message.Message):
    __slots__ = ("version_id", "delete_marker")
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    DELETE_MARKER_FIELD_NUMBER: _ClassVar[int]
    version_id: str
    delete_marker: bool
    def __init__(self, version_id: _Optional[str] = ..., delete_marker: _Optional[bool] = ...) -> None: ...

class ObjectIdentifier(_message.Message):
    __slots__ = ("key", "version_id")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    key: str
    version_id: str
    def __init__(self, key: _Optional[str] = ..., version_id: _Optional[str] = ...) -> None: ...

class DeleteObjectsRequest(_message.Message):
    __slots__ = ("bucket", "objects", "quiet")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    QUIET_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    objects: _containers.RepeatedCompositeFieldContainer[ObjectIdentifier]
    quiet: bool
    def __init__(self, bucket: _Optional[str] = ..., objects: _Optional[_Iterable[_Union[ObjectIdentifier, _Mapping]]] = ..., quiet: _Optional[bool] = ...) -> None: ...

class DeletedObject(_message.Message):
    __slots__ = ("key", "version_id", "delete_marker", "delete_marker_version_id")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    DELETE_MARKER_FIELD_NUMBER: _ClassVar[int]
    DELETE_MARKER_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    key: str
    version_id: str
    delete_marker: bool
    delete_marker_version_id: str
    def __init__(self, key: _Optional[str] = ..., version_id: _Optional[str] = ..., delete_marker: _Optional[bool] = ..., delete_marker_version_id: _Optional[str] = ...) -> None: ...

class DeleteError(_message.Message):
    __slots__ = ("key", "version_id", "code", "message")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    key: str
    version_id: str
    code: str
    message: str
    def __init__(self, key: _Optional[str] = ..., version_id: _Optional[str] = ..., code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class DeleteObjectsResponse(_message.Message):
    __slots__ = ("deleted", "errors")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    deleted: _containers.RepeatedCompositeFieldContainer[DeletedObject]
    errors: _containers.RepeatedCompositeFieldContainer[DeleteError]
    def __init__(self, deleted: _Optional[_Iterable[_Union[DeletedObject, _Mapping]]] = ..., errors: _Optional[_Iterable[_Union[DeleteError, _Mapping]]] = ...) -> None: ...

class CopyObjectRequest(_message.Message):
    __slots__ = ("source_bucket", "source_key", "source_version_id", "bucket", "key", "metadata_directive", "attributes", "replace_tags", "tags", "source_if_match", "source_if_none_match", "if_none_match")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SOURCE_BUCKET_FIELD_NUMBER: _ClassVar[int]
    SOURCE_KEY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    METADATA_DIRECTIVE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    REPLACE_TAGS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_IF_MATCH_FIELD_NUMBER: _ClassVar[int]
    SOURCE_IF_NONE_MATCH_FIELD_NUMBER: _ClassVar[int]
    IF_NONE_MATCH_FIELD_NUMBER: _ClassVar[int]
    source_bucket: str
    source_key: str
    source_version_id: str
    bucket: str
    key: str
    metadata_directive: MetadataDirective
    attributes: ObjectAttributes
    replace_tags: bool
    tags: _containers.ScalarMap[str, str]
    source_if_match: str
    source_if_none_match: str
    if_none_match: str
    def __init__(self, source_bucket: _Optional[str] = ..., source_key: _Optional[str] = ..., source_version_id: _Optional[str] = ..., bucket: _Optional[str] = ..., key: _Optional[str] = ..., metadata_directive: _Optional[_Union[MetadataDirective, str]] = ..., attributes: _Optional[_Union[ObjectAttributes, _Mapping]] = ..., replace_tags: _Optional[bool] = ..., tags: _Optional[_Mapping[str, str]] = ..., source_if_match: _Optional[str] = ..., source_if_none_match: _Optional[str] = ..., if_none_match: _Optional[str] = ...) -> None: ...

class CopyObjectResponse(_message.Message):
    __slots__ = ("etag", "version_id", "source_version_id", "last_modified", "checksums", "size")
    ETAG_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_MODIFIED_FIELD_NUMBER: _ClassVar[int]
    CHECKSUMS_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    etag: str
    version_id: str
    source_version_id: str
    last_modified: int
    checksums: _containers.RepeatedCompositeFieldContainer[ObjectChecksum]
    size: int
    def __init__(self, etag: _Optional[str] = ..., version_id: _Optional[str] = ..., source_version_id: _Optional[str] = ..., last_modified: _Optional[int] = ..., checksums: _Optional[_Iterable[_Union[ObjectChecksum, _Mapping]]] = ..., size: _Optional[int] = ...) -> None: ...

class ListObjectsRequest(_message.Message):
    __slots__ = ("bucket", "prefix", "delimiter", "max_keys", "continuation_token", "start_after")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    DELIMITER_FIELD_NUMBER: _ClassVar[int]
    MAX_KEYS_FIELD_NUMBER: _ClassVar[int]
    CONTINUATION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    START_AFTER_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    prefix: str
    delimiter: str
    max_keys: int
    continuation_token: str
    start_after: str
    def __init__(self, bucket: _Optional[str] = ..., prefix: _Optional[str] = ..., delimiter: _Optional[str] = ..., max_keys: _Optional[int] = ..., continuation_token: _Optional[str] = ..., start_after: _Optional[str] = ...) -> None: ...

class ObjectSummary(_message.Message):
    __slots__ = ("key", "size", "etag", "last_modified", "storage_class", "owner", "checksum_algorithms", "checksum_type")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    LAST_MODIFIED_FIELD_NUMBER: _ClassVar[int]
    STORAGE_CLASS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_ALGORITHMS_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_TYPE_FIELD_NUMBER: _ClassVar[int]
    key: str
    size: int
    etag: str
    last_modified: int
    storage_class: StorageClass
    owner: str
    checksum_algorithms: _containers.RepeatedScalarFieldContainer[ChecksumAlgorithm]
    checksum_type: ChecksumType
    def __init__(self, key: _Optional[str] = ..., size: _Optional[int] = ..., etag: _Optional[str] = ..., last_modified: _Optional[int] = ..., storage_class: _Optional[_Union[StorageClass, str]] = ..., owner: _Optional[str] = ..., checksum_algorithms: _Optional[_Iterable[_Union[ChecksumAlgorithm, str]]] = ..., checksum_type: _Optional[_Union[ChecksumType, str]] = ...) -> None: ...

class ListObjectsResponse(_message.Message):
    __slots__ = ("objects", "common_prefixes", "is_truncated", "next_continuation_token", "key_count")
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    COMMON_PREFIXES_FIELD_NUMBER: _ClassVar[int]
    IS_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    NEXT_CONTINUATION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    KEY_COUNT_FIELD_NUMBER: _ClassVar[int]
    objects: _containers.RepeatedCompositeFieldContainer[ObjectSummary]
    common_prefixes: _containers.RepeatedScalarFieldContainer[str]
    is_truncated: bool
    next_continuation_token: str
    key_count: int
    def __init__(self, objects: _Optional[_Iterable[_Union[ObjectSummary, _Mapping]]] = ..., common_prefixes: _Optional[_Iterable[str]] = ..., is_truncated: _Optional[bool] = ..., next_continuation_token: _Optional[str] = ..., key_count: _Optional[int] = ...) -> None: ...

class ListObjectVersionsRequest(_message.Message):
    __slots__ = ("bucket", "prefix", "delimiter", "max_keys", "key_marker", "version_id_marker")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    DELIMITER_FIELD_NUMBER: _ClassVar[int]
    MAX_KEYS_FIELD_NUMBER: _ClassVar[int]
    KEY_MARKER_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_MARKER_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    prefix: str
    delimiter: str
    max_keys: int
    key_marker: str
    version_id_marker: str
    def __init__(self, bucket: _Optional[str] = ..., prefix: _Optional[str] = ..., delimiter: _Optional[str] = ..., max_keys: _Optional[int] = ..., key_marker: _Optional[str] = ..., version_id_marker: _Optional[str] = ...) -> None: ...

class ObjectVersion(_message.Message):
    __slots__ = ("key", "version_id", "is_latest", "delete_marker", "size", "etag", "last_modified", "storage_class", "owner", "checksum_algorithms", "checksum_type")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    IS_LATEST_FIELD_NUMBER: _ClassVar[int]
    DELETE_MARKER_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    LAST_MODIFIED_FIELD_NUMBER: _ClassVar[int]
    STORAGE_CLASS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_ALGORITHMS_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_TYPE_FIELD_NUMBER: _ClassVar[int]
    key: str
    version_id: str
    is_latest: bool
    delete_marker: bool
    size: int
    etag: str
    last_modified: int
    storage_class: StorageClass
    owner: str
    checksum_algorithms: _containers.RepeatedScalarFieldContainer[ChecksumAlgorithm]
    checksum_type: ChecksumType
    def __init__(self, key: _Optional[str] = ..., version_id: _Optional[str] = ..., is_latest: _Optional[bool] = ..., delete_marker: _Optional[bool] = ..., size: _Optional[int] = ..., etag: _Optional[str] = ..., last_modified: _Optional[int] = ..., storage_class: _Optional[_Union[StorageClass, str]] = ..., owner: _Optional[str] = ..., checksum_algorithms: _Optional[_Iterable[_Union[ChecksumAlgorithm, str]]] = ..., checksum_type: _Optional[_Union[ChecksumType, str]] = ...) -> None: ...

class ListObjectVersionsResponse(_message.Message):
    __slots__ = ("versions", "common_prefixes", "is_truncated", "next_key_marker", "next_version_id_marker")
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    COMMON_PREFIXES_FIELD_NUMBER: _ClassVar[int]
    IS_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    NEXT_KEY_MARKER_FIELD_NUMBER: _ClassVar[int]
    NEXT_VERSION_ID_MARKER_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[ObjectVersion]
    common_prefixes: _containers.RepeatedScalarFieldContainer[str]
    is_truncated: bool
    next_key_marker: str
    next_version_id_marker: str
    def __init__(self, versions: _Optional[_Iterable[_Union[ObjectVersion, _Mapping]]] = ..., common_prefixes: _Optional[_Iterable[str]] = ..., is_truncated: _Optional[bool] = ..., next_key_marker: _Optional[str] = ..., next_version_id_marker: _Optional[str] = ...) -> None: ...

class CreateMultipartUploadRequest(_message.Message):
    __slots__ = ("bucket", "key", "attributes", "tags", "checksum_algorithm", "checksum_type")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_TYPE_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    key: str
    attributes: ObjectAttributes
    tags: _containers.ScalarMap[str, str]
    checksum_algorithm: ChecksumAlgorithm
    checksum_type: ChecksumType
    def __init__(self, bucket: _Optional[str] = ..., key: _Optional[str] = ..., attributes: _Optional[_Union[ObjectAttributes, _Mapping]] = ..., tags: _Optional[_Mapping[str, str]] = ..., checksum_algorithm: _Optional[_Union[ChecksumAlgorithm, str]] = ..., checksum_type: _Optional[_Union[ChecksumType, str]] = ...) -> None: ...

class CreateMultipartUploadResponse(_message.Message):
    __slots__ = ("bucket", "key", "upload_id", "checksum_algorithm", "checksum_type")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_TYPE_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    key: str
    upload_id: str
    checksum_algorithm: ChecksumAlgorithm
    checksum_type: ChecksumType
    def __init__(self, bucket: _Optional[str] = ..., key: _Optional[str] = ..., upload_id: _Optional[str] = ..., checksum_algorithm: _Optional[_Union[ChecksumAlgorithm, str]] = ..., checksum_type: _Optional[_Union[ChecksumType, str]] = ...) -> None: ...

class UploadPartRequest(_message.Message):
    __slots__ = ("bucket", "key", "upload_id", "part_number", "content", "content_md5", "checksum_value", "content_length")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    PART_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_MD5_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_VALUE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    key: str
    upload_id: str
    part_number: int
    content: bytes
    content_md5: str
    checksum_value: str
    content_length: int
    def __init__(self, bucket: _Optional[str] = ..., key: _Optional[str] = ..., upload_id: _Optional[str] = ..., part_number: _Optional[int] = ..., content: _Optional[bytes] = ..., content_md5: _Optional[str] = ..., checksum_value: _Optional[str] = ..., content_length: _Optional[int] = ...) -> None: ...

class UploadPartResponse(_message.Message):
    __slots__ = ("part_number", "etag", "size", "checksums")
    PART_NUMBER_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CHECKSUMS_FIELD_NUMBER: _ClassVar[int]
    part_number: int
    etag: str
    size: int
    checksums: _containers.RepeatedCompositeFieldContainer[ObjectChecksum]
    def __init__(self, part_number: _Optional[int] = ..., etag: _Optional[str] = ..., size: _Optional[int] = ..., checksums: _Optional[_Iterable[_Union[ObjectChecksum, _Mapping]]] = ...) -> None: ...

class CompletedPart(_message.Message):
    __slots__ = ("part_number", "etag", "checksum_value")
    PART_NUMBER_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_VALUE_FIELD_NUMBER: _ClassVar[int]
    part_number: int
    etag: str
    checksum_value: str
    def __init__(self, part_number: _Optional[int] = ..., etag: _Optional[str] = ..., checksum_value: _Optional[str] = ...) -> None: ...

class CompleteMultipartUploadRequest(_message.Message):
    __slots__ = ("bucket", "key", "upload_id", "parts", "if_match", "if_none_match", "checksum_value", "checksum_type", "object_size")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    IF_MATCH_FIELD_NUMBER: _ClassVar[int]
    IF_NONE_MATCH_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_VALUE_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_TYPE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_SIZE_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    key: str
    upload_id: str
    parts: _containers.RepeatedCompositeFieldContainer[CompletedPart]
    if_match: str
    if_none_match: str
    checksum_value: str
    checksum_type: ChecksumType
    object_size: int
    def __init__(self, bucket: _Optional[str] = ..., key: _Optional[str] = ..., upload_id: _Optional[str] = ..., parts: _Optional[_Iterable[_Union[CompletedPart, _Mapping]]] = ..., if_match: _Optional[str] = ..., if_none_match: _Optional[str] = ..., checksum_value: _Optional[str] = ..., checksum_type: _Optional[_Union[ChecksumType, str]] = ..., object_size: _Optional[int] = ...) -> None: ...

class CompleteMultipartUploadResponse(_message.Message):
    __slots__ = ("bucket", "key", "etag", "version_id", "checksums", "checksum_type", "size")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKSUMS_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    key: str
    etag: str
    version_id: str
    checksums: _containers.RepeatedCompositeFieldContainer[ObjectChecksum]
    checksum_type: ChecksumType
    size: int
    def __init__(self, bucket: _Optional[str] = ..., key: _Optional[str] = ..., etag: _Optional[str] = ..., version_id: _Optional[str] = ..., checksums: _Optional[_Iterable[_Union[ObjectChecksum, _Mapping]]] = ..., checksum_type: _Optional[_Union[ChecksumType, str]] = ..., size: _Optional[int] = ...) -> None: ...

class AbortMultipartUploadRequest(_message.Message):
    __slots__ = ("bucket", "key", "upload_id")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    key: str
    upload_id: str
    def __init__(self, bucket: _Optional[str] = ..., key: _Optional[str] = ..., upload_id: _Optional[str] = ...) -> None: ...

class AbortMultipartUploadResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListMultipartUploadsRequest(_message.Message):
    __slots__ = ("bucket", "prefix", "delimiter", "key_marker", "upload_id_marker", "max_uploads")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    DELIMITER_FIELD_NUMBER: _ClassVar[int]
    KEY_MARKER_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_MARKER_FIELD_NUMBER: _ClassVar[int]
    MAX_UPLOADS_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    prefix: str
    delimiter: str
    key_marker: str
    upload_id_marker: str
    max_uploads: int
    def __init__(self, bucket: _Optional[str] = ..., prefix: _Optional[str] = ..., delimiter: _Optional[str] = ..., key_marker: _Optional[str] = ..., upload_id_marker: _Optional[str] = ..., max_uploads: _Optional[int] = ...) -> None: ...

class MultipartUpload(_message.Message):
    __slots__ = ("key", "upload_id", "initiated_at", "initiator", "storage_class", "checksum_algorithm", "checksum_type")
    KEY_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    INITIATED_AT_FIELD_NUMBER: _ClassVar[int]
    INITIATOR_FIELD_NUMBER: _ClassVar[int]
    STORAGE_CLASS_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_TYPE_FIELD_NUMBER: _ClassVar[int]
    key: str
    upload_id: str
    initiated_at: int
    initiator: Owner
    storage_class: StorageClass
    checksum_algorithm: ChecksumAlgorithm
    checksum_type: ChecksumType
    def __init__(self, key: _Optional[str] = ..., upload_id: _Optional[str] = ..., initiated_at: _Optional[int] = ..., initiator: _Optional[_Union[Owner, _Mapping]] = ..., storage_class: _Optional[_Union[StorageClass, str]] = ..., checksum_algorithm: _Optional[_Union[ChecksumAlgorithm, str]] = ..., checksum_type: _Optional[_Union[ChecksumType, str]] = ...) -> None: ...

class ListMultipartUploadsResponse(_message.Message):
    __slots__ = ("uploads", "common_prefixes", "is_truncated", "next_key_marker", "next_upload_id_marker")
    UPLOADS_FIELD_NUMBER: _ClassVar[int]
    COMMON_PREFIXES_FIELD_NUMBER: _ClassVar[int]
    IS_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    NEXT_KEY_MARKER_FIELD_NUMBER: _ClassVar[int]
    NEXT_UPLOAD_ID_MARKER_FIELD_NUMBER: _ClassVar[int]
    uploads: _containers.RepeatedCompositeFieldContainer[MultipartUpload]
    common_prefixes: _containers.RepeatedScalarFieldContainer[str]
    is_truncated: bool
    next_key_marker: str
    next_upload_id_marker: str
    def __init__(self, uploads: _Optional[_Iterable[_Union[MultipartUpload, _Mapping]]] = ..., common_prefixes: _Optional[_Iterable[str]] = ..., is_truncated: _Optional[bool] = ..., next_key_marker: _Optional[str] = ..., next_upload_id_marker: _Optional[str] = ...) -> None: ...

class ListPartsRequest(_message.Message):
    __slots__ = ("bucket", "key", "upload_id", "part_number_marker", "max_parts")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    PART_NUMBER_MARKER_FIELD_NUMBER: _ClassVar[int]
    MAX_PARTS_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    key: str
    upload_id: str
    part_number_marker: int
    max_parts: int
    def __init__(self, bucket: _Optional[str] = ..., key: _Optional[str] = ..., upload_id: _Optional[str] = ..., part_number_marker: _Optional[int] = ..., max_parts: _Optional[int] = ...) -> None: ...

class Part(_message.Message):
    __slots__ = ("part_number", "etag", "size", "last_modified", "checksums")
    PART_NUMBER_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    LAST_MODIFIED_FIELD_NUMBER: _ClassVar[int]
    CHECKSUMS_FIELD_NUMBER: _ClassVar[int]
    part_number: int
    etag: str
    size: int
    last_modified: int
    checksums: _containers.RepeatedCompositeFieldContainer[ObjectChecksum]
    def __init__(self, part_number: _Optional[int] = ..., etag: _Optional[str] = ..., size: _Optional[int] = ..., last_modified: _Optional[int] = ..., checksums: _Optional[_Iterable[_Union[ObjectChecksum, _Mapping]]] = ...) -> None: ...

class ListPartsResponse(_message.Message):
    __slots__ = ("upload", "parts", "is_truncated", "next_part_number_marker")
    UPLOAD_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    IS_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    NEXT_PART_NUMBER_MARKER_FIELD_NUMBER: _ClassVar[int]
    upload: MultipartUpload
    parts: _containers.RepeatedCompositeFieldContainer[Part]
    is_truncated: bool
    next_part_number_marker: int
    def __init__(self, upload: _Optional[_Union[MultipartUpload, _Mapping]] = ..., parts: _Optional[_Iterable[_Union[Part, _Mapping]]] = ..., is_truncated: _Optional[bool] = ..., next_part_number_marker: _Optional[int] = ...) -> None: ...

class GetObjectTaggingRequest(_message.Message):
    __slots__ = ("bucket", "key", "version_id")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    key: str
    version_id: str
    def __init__(self, bucket: _Optional[str] = ..., key: _Optional[str] = ..., version_id: _Optional[str] = ...) -> None: ...

class PutObjectTaggingRequest(_message.Message):
    __slots__ = ("bucket", "key", "version_id", "tags")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    key: str
    version_id: str
    tags: _containers.ScalarMap[str, str]
    def __init__(self, bucket: _Optional[str] = ..., key: _Optional[str] = ..., version_id: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DeleteObjectTaggingRequest(_message.Message):
    __slots__ = ("bucket", "key", "version_id")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    key: str
    version_id: str
    def __init__(self, bucket: _Optional[str] = ..., key: _Optional[str] = ..., version_id: _Optional[str] = ...) -> None: ...

class ObjectTagging(_message.Message):
    __slots__ = ("tags", "version_id")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TAGS_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    tags: _containers.ScalarMap[str, str]
    version_id: str
    def __init__(self, tags: _Optional[_Mapping[str, str]] = ..., version_id: _Optional[str] = ...) -> None: ...

class CreateBucketRequest(_message.Message):
    __slots__ = ("name", "org_id", "project_id", "versioning", "storage_class", "tags")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSIONING_FIELD_NUMBER: _ClassVar[int]
    STORAGE_CLASS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    org_id: str
    project_id: str
    versioning: VersioningConfig
    storage_class: StorageClass
    tags: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., org_id: _Optional[str] = ..., project_id: _Optional[str] = ..., versioning: _Optional[_Union[VersioningConfig, _Mapping]] = ..., storage_class: _Optional[_Union[StorageClass, str]] = ..., tags: _Optional[_Mapping[str, str]] = ...) -> None: ...

class HeadBucketRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class HeadBucketResponse(_message.Message):
    __slots__ = ("bucket",)
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    bucket: Bucket
    def __init__(self, bucket: _Optional[_Union[Bucket, _Mapping]] = ...) -> None: ...

class DeleteBucketRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteBucketResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListBucketsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListBucketsResponse(_message.Message):
    __slots__ = ("buckets", "owner")
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    buckets: _containers.RepeatedCompositeFieldContainer[Bucket]
    owner: Owner
    def __init__(self, buckets: _Optional[_Iterable[_Union[Bucket, _Mapping]]] = ..., owner: _Optional[_Union[Owner, _Mapping]] = ...) -> None: ...

class GetBucketVersioningRequest(_message.Message):
    __slots__ = ("bucket",)
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    def __init__(self, bucket: _Optional[str] = ...) -> None: ...

class PutBucketVersioningRequest(_message.Message):
    __slots__ = ("bucket", "versioning")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    VERSIONING_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    versioning: VersioningConfig
    def __init__(self, bucket: _Optional[str] = ..., versioning: _Optional[_Union[VersioningConfig, _Mapping]] = ...) -> None: ...

class GetBucketTaggingRequest(_message.Message):
    __slots__ = ("bucket",)
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    def __init__(self, bucket: _Optional[str] = ...) -> None: ...

class PutBucketTaggingRequest(_message.Message):
    __slots__ = ("bucket", "tags")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    tags: _containers.ScalarMap[str, str]
    def __init__(self, bucket: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DeleteBucketTaggingRequest(_message.Message):
    __slots__ = ("bucket",)
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    def __init__(self, bucket: _Optional[str] = ...) -> None: ...

class BucketTagging(_message.Message):
    __slots__ = ("tags",)
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TAGS_FIELD_NUMBER: _ClassVar[int]
    tags: _containers.ScalarMap[str, str]
    def __init__(self, tags: _Optional[_Mapping[str, str]] = ...) -> None: ...
