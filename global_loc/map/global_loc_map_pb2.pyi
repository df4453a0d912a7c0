from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Array(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DTYPE_UNSPECIFIED: _ClassVar[Array.DType]
        UINT8: _ClassVar[Array.DType]
        INT32: _ClassVar[Array.DType]
        INT64: _ClassVar[Array.DType]
        FLOAT16: _ClassVar[Array.DType]
        FLOAT32: _ClassVar[Array.DType]
        FLOAT64: _ClassVar[Array.DType]
    DTYPE_UNSPECIFIED: Array.DType
    UINT8: Array.DType
    INT32: Array.DType
    INT64: Array.DType
    FLOAT16: Array.DType
    FLOAT32: Array.DType
    FLOAT64: Array.DType
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: Array.DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[_Union[Array.DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Camera(_message.Message):
    __slots__ = ("model", "width", "height", "params")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    model: str
    width: int
    height: int
    params: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, model: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., params: _Optional[_Iterable[float]] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "dim", "conf_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    CONF_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    dim: int
    conf_json: str
    def __init__(self, name: _Optional[str] = ..., dim: _Optional[int] = ..., conf_json: _Optional[str] = ...) -> None: ...

class Header(_message.Message):
    __slots__ = ("schema_version", "created_by", "frame_id", "local_features", "global_descriptor", "global_state", "cameras", "num_keyframes", "num_points3D", "num_observations", "metadata_json", "dense_features", "retrieval_index")
    class GlobalStateEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Array
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Array, _Mapping]] = ...) -> None: ...
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    LOCAL_FEATURES_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_DESCRIPTOR_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_STATE_FIELD_NUMBER: _ClassVar[int]
    CAMERAS_FIELD_NUMBER: _ClassVar[int]
    NUM_KEYFRAMES_FIELD_NUMBER: _ClassVar[int]
    NUM_POINTS3D_FIELD_NUMBER: _ClassVar[int]
    NUM_OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    DENSE_FEATURES_FIELD_NUMBER: _ClassVar[int]
    RETRIEVAL_INDEX_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    created_by: str
    frame_id: str
    local_features: ModelInfo
    global_descriptor: ModelInfo
    global_state: _containers.MessageMap[str, Array]
    cameras: _containers.RepeatedCompositeFieldContainer[Camera]
    num_keyframes: int
    num_points3D: int
    num_observations: int
    metadata_json: str
    dense_features: ModelInfo
    retrieval_index: RetrievalIndex
    def __init__(self, schema_version: _Optional[int] = ..., created_by: _Optional[str] = ..., frame_id: _Optional[str] = ..., local_features: _Optional[_Union[ModelInfo, _Mapping]] = ..., global_descriptor: _Optional[_Union[ModelInfo, _Mapping]] = ..., global_state: _Optional[_Mapping[str, Array]] = ..., cameras: _Optional[_Iterable[_Union[Camera, _Mapping]]] = ..., num_keyframes: _Optional[int] = ..., num_points3D: _Optional[int] = ..., num_observations: _Optional[int] = ..., metadata_json: _Optional[str] = ..., dense_features: _Optional[_Union[ModelInfo, _Mapping]] = ..., retrieval_index: _Optional[_Union[RetrievalIndex, _Mapping]] = ...) -> None: ...

class RetrievalIndex(_message.Message):
    __slots__ = ("kind", "params_json", "data")
    KIND_FIELD_NUMBER: _ClassVar[int]
    PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    kind: str
    params_json: str
    data: Array
    def __init__(self, kind: _Optional[str] = ..., params_json: _Optional[str] = ..., data: _Optional[_Union[Array, _Mapping]] = ...) -> None: ...

class ArrayEntry(_message.Message):
    __slots__ = ("name", "dtype", "shape", "offset", "nbytes", "crc32")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    NBYTES_FIELD_NUMBER: _ClassVar[int]
    CRC32_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: Array.DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    offset: int
    nbytes: int
    crc32: int
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[_Union[Array.DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., offset: _Optional[int] = ..., nbytes: _Optional[int] = ..., crc32: _Optional[int] = ...) -> None: ...

class Directory(_message.Message):
    __slots__ = ("arrays",)
    ARRAYS_FIELD_NUMBER: _ClassVar[int]
    arrays: _containers.RepeatedCompositeFieldContainer[ArrayEntry]
    def __init__(self, arrays: _Optional[_Iterable[_Union[ArrayEntry, _Mapping]]] = ...) -> None: ...

class KeyframeBatch(_message.Message):
    __slots__ = ("first_index", "ids", "names", "stamps", "cam_from_world", "camera_index", "global_descriptors", "num_observations", "keypoints", "descriptors", "point_index")
    FIRST_INDEX_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    STAMPS_FIELD_NUMBER: _ClassVar[int]
    CAM_FROM_WORLD_FIELD_NUMBER: _ClassVar[int]
    CAMERA_INDEX_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_DESCRIPTORS_FIELD_NUMBER: _ClassVar[int]
    NUM_OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    KEYPOINTS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTORS_FIELD_NUMBER: _ClassVar[int]
    POINT_INDEX_FIELD_NUMBER: _ClassVar[int]
    first_index: int
    ids: Array
    names: _containers.RepeatedScalarFieldContainer[str]
    stamps: Array
    cam_from_world: Array
    camera_index: Array
    global_descriptors: Array
    num_observations: Array
    keypoints: Array
    descriptors: Array
    point_index: Array
    def __init__(self, first_index: _Optional[int] = ..., ids: _Optional[_Union[Array, _Mapping]] = ..., names: _Optional[_Iterable[str]] = ..., stamps: _Optional[_Union[Array, _Mapping]] = ..., cam_from_world: _Optional[_Union[Array, _Mapping]] = ..., camera_index: _Optional[_Union[Array, _Mapping]] = ..., global_descriptors: _Optional[_Union[Array, _Mapping]] = ..., num_observations: _Optional[_Union[Array, _Mapping]] = ..., keypoints: _Optional[_Union[Array, _Mapping]] = ..., descriptors: _Optional[_Union[Array, _Mapping]] = ..., point_index: _Optional[_Union[Array, _Mapping]] = ...) -> None: ...

class PointBatch(_message.Message):
    __slots__ = ("first_index", "ids", "xyz", "rgb", "error", "reference_features")
    FIRST_INDEX_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    XYZ_FIELD_NUMBER: _ClassVar[int]
    RGB_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FEATURES_FIELD_NUMBER: _ClassVar[int]
    first_index: int
    ids: Array
    xyz: Array
    rgb: Array
    error: Array
    reference_features: Array
    def __init__(self, first_index: _Optional[int] = ..., ids: _Optional[_Union[Array, _Mapping]] = ..., xyz: _Optional[_Union[Array, _Mapping]] = ..., rgb: _Optional[_Union[Array, _Mapping]] = ..., error: _Optional[_Union[Array, _Mapping]] = ..., reference_features: _Optional[_Union[Array, _Mapping]] = ...) -> None: ...

class Footer(_message.Message):
    __slots__ = ("num_keyframes", "num_points3D", "num_records")
    NUM_KEYFRAMES_FIELD_NUMBER: _ClassVar[int]
    NUM_POINTS3D_FIELD_NUMBER: _ClassVar[int]
    NUM_RECORDS_FIELD_NUMBER: _ClassVar[int]
    num_keyframes: int
    num_points3D: int
    num_records: int
    def __init__(self, num_keyframes: _Optional[int] = ..., num_points3D: _Optional[int] = ..., num_records: _Optional[int] = ...) -> None: ...

class Record(_message.Message):
    __slots__ = ("header", "keyframes", "points", "footer", "directory")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    KEYFRAMES_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    FOOTER_FIELD_NUMBER: _ClassVar[int]
    DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    header: Header
    keyframes: KeyframeBatch
    points: PointBatch
    footer: Footer
    directory: Directory
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., keyframes: _Optional[_Union[KeyframeBatch, _Mapping]] = ..., points: _Optional[_Union[PointBatch, _Mapping]] = ..., footer: _Optional[_Union[Footer, _Mapping]] = ..., directory: _Optional[_Union[Directory, _Mapping]] = ...) -> None: ...
