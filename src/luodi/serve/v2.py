"""Open Inference Protocol v2 (KServe / Triton): model metadata, infer requests and responses, JSON or binary.

A server serves one version of each model (the one its reference points at now): the versioned routes
(/v2/models/NAME/versions/V, .../ready, .../infer) answer for that version and 404 for any other.

Inputs are the package's input fields. Numeric fields travel together as one tensor, `numeric`, of shape
[rows, k] in the order the metadata lists (`parameters.columns`), the way Triton users send tabular models;
a numeric field may also come alone under its own name, shape [rows]. Every other field is its own [rows]
tensor (BYTES for text and categories). Outputs are the task's (tasks/outputs.py): a label travels as BYTES
[rows] (class names), a number as FP64 [rows], scores as [rows, parts] with the part names in the metadata's
parameters: a classifier gives `prediction` and `probabilities` [rows, classes] FP32, a regression `prediction`.

The binary data extension: with an `Inference-Header-Content-Length` header, the body is that many bytes
of JSON followed by raw tensors in input order, each input saying its `parameters.binary_data_size`. BYTES
tensors are 4-byte little-endian lengths each followed by the bytes, as tritonclient writes them.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from luodi.serve.schema import NUMERIC_TYPES, SCALAR_TYPES, ServingSchema, arrow_text
from luodi.tasks import Output, OutputSpec, Predictions

NUMPY_TYPES = {"BOOL": np.dtype(np.bool_), "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"),
               "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"), "UINT8": np.dtype("<u1"),
               "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"),
               "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}
PACKED = "numeric"
MAX_TIMEOUT_US = 10**15  # microseconds (31 years): a bound, so no number overflows when it is converted


class ProtocolError(ValueError):
    """The request breaks the protocol or the model's inputs (HTTP 422 with {"error": message})."""


@dataclass
class InferRequest:
    columns: dict[str, Any]
    rows: int
    request_id: str | None = None
    outputs: list[str] = field(default_factory=list)
    binary: set[str] = field(default_factory=set)
    timeout_s: float | None = None


def packed_name(schema: ServingSchema) -> str:
    """`numeric`, unless a field already has that name."""
    return PACKED if PACKED not in schema.names else f"{PACKED}__packed"


def numeric_fields(schema: ServingSchema) -> list[str]:
    """The fields that travel together in the packed [rows, k] tensor, in metadata order."""
    return [f.name for f in schema.fields if f.kind.packed]


def model_metadata(name: str, version: int, platform: str, schema: ServingSchema) -> dict[str, Any]:
    numeric = numeric_fields(schema)
    inputs: list[dict[str, Any]] = []
    if numeric:
        inputs.append({"name": packed_name(schema), "datatype": "FP32", "shape": [-1, len(numeric)],
                       "parameters": {"columns": numeric}})
    inputs += [{"name": f.name, "datatype": f.kind.v2_datatype, "shape": [-1]} for f in schema.fields
               if not f.kind.packed]
    outputs = [output_metadata(spec) for spec in schema.outputs]
    return {"name": name, "versions": [str(version)], "platform": platform, "inputs": inputs, "outputs": outputs}


def output_metadata(spec: OutputSpec) -> dict[str, Any]:
    """An output's metadata: labels are BYTES [rows]; numbers [rows]; scores [rows, parts] with the part names."""
    if spec.kind == "label":
        return {"name": spec.name, "datatype": "BYTES", "shape": [-1]}
    if spec.kind == "number":
        return {"name": spec.name, "datatype": spec.v2_datatype, "shape": [-1]}
    return {"name": spec.name, "datatype": spec.v2_datatype, "shape": [-1, len(spec.parts)],
            "parameters": {spec.parts_key: list(spec.parts)}}


def version_missing(name: str, requested: str, served: int) -> str:
    """The 404 message for a path that names a version other than the one served."""
    return f"model {name!r} version {requested!r} is not served here; this server serves version {served}"


def _flatten(data: Any, depth: int = 0) -> list[Any]:
    if not isinstance(data, list):
        raise ProtocolError("'data' must be a list (nested lists are flattened row-major)")
    if data and isinstance(data[0], list):
        if depth >= 3:
            raise ProtocolError("'data' is nested too deeply")
        return [item for part in data for item in _flatten(part, depth + 1)]
    return data


def _bytes_elements(raw: bytes, count: int, limit: int, name: str) -> list[str]:
    values, offset = [], 0
    for _ in range(count):
        if offset + 4 > len(raw):
            raise ProtocolError(f"input {name!r}: binary BYTES data ends early")
        (length,) = struct.unpack_from("<I", raw, offset)
        if length > limit * 4:
            raise ProtocolError(f"input {name!r}: an element of {length} bytes is longer than the limit")
        values.append(raw[offset + 4:offset + 4 + length].decode("utf-8", errors="replace"))
        offset += 4 + length
    if offset != len(raw):
        raise ProtocolError(f"input {name!r}: binary_data_size does not match its {count} elements")
    return values


def _tensor(item: dict[str, Any], binary: memoryview, offset: int, limit: int) -> tuple[Any, list[int], int]:
    """(values: ndarray or list of str, shape, new binary offset) of one input tensor."""
    name, datatype, shape = item["name"], item["datatype"], item["shape"]
    count = int(np.prod(shape)) if shape else 1
    size = (item.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise ProtocolError(f"input {name!r}: binary_data_size {size!r} runs past the end of the body")
        raw = bytes(binary[offset:offset + size])
        offset += size
        if datatype == "BYTES":
            return _bytes_elements(raw, count, limit, name), shape, offset
        dtype = NUMPY_TYPES[datatype]
        if size != count * dtype.itemsize:
            raise ProtocolError(f"input {name!r}: {size} bytes is not {count} {datatype} values")
        return np.frombuffer(raw, dtype=dtype), shape, offset
    if "data" not in item:
        raise ProtocolError(f"input {name!r}: give 'data' or parameters.binary_data_size")
    flat = _flatten(item["data"])
    if len(flat) != count:
        raise ProtocolError(f"input {name!r}: shape {shape} needs {count} values, 'data' has {len(flat)}")
    if datatype == "BYTES":
        if not all(isinstance(value, str) and len(value) <= limit for value in flat):
            raise ProtocolError(f"input {name!r}: BYTES data must be strings of at most {limit} characters")
        return flat, shape, offset
    try:
        array = np.asarray(flat)
    except (ValueError, TypeError):
        array = np.asarray([], dtype=object)  # ragged or mixed: refused just below
    kind = "b" if datatype == "BOOL" else "biuf"
    if flat and (array.dtype.kind not in kind or array.shape != (len(flat),)) or \
            datatype != "BOOL" and array.dtype.kind == "b":
        raise ProtocolError(f"input {name!r}: {datatype} data must be {'booleans' if kind == 'b' else 'numbers'}")
    with np.errstate(all="ignore"):  # out-of-range values wrap or saturate, as a C client's cast would
        return array.astype(NUMPY_TYPES[datatype]) if flat else np.zeros(0, NUMPY_TYPES[datatype]), shape, offset


def _check_input(item: Any, index: int) -> None:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise ProtocolError(f"inputs[{index}] must be an object with a 'name'")
    shape, datatype = item.get("shape"), item.get("datatype")
    if not isinstance(shape, list) or not 1 <= len(shape) <= 2 or \
            not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 1 << 24 for d in shape):
        raise ProtocolError(f"input {item['name']!r}: shape must be 1 or 2 non-negative integers")
    if not isinstance(datatype, str) or datatype not in SCALAR_TYPES:
        raise ProtocolError(f"input {item['name']!r}: datatype {datatype!r} is not one of {sorted(SCALAR_TYPES)}")
    if not isinstance(item.get("parameters", {}), dict):
        raise ProtocolError(f"input {item['name']!r}: parameters must be an object")


def _check_finite(block: np.ndarray, names: list[str]) -> None:
    """Infinity is refused naming the field. NaN is how a numeric tensor (which has no null) says missing, as a NaN
    cell does in a CSV file for `luodi predict`; it is imputed as in training."""
    if block.dtype.kind == "f" and np.isinf(block).any():
        column = int(np.flatnonzero(np.isinf(block).any(axis=0))[0])
        raise ProtocolError(f"input field {names[column]!r}: Infinity is not accepted (NaN means missing)")


def parse_infer(body: bytes, header_length: int | None, schema: ServingSchema) -> InferRequest:
    """Decode and check a v2 infer body into request columns (one per input field)."""
    if header_length is not None and not 0 < header_length <= len(body):
        raise ProtocolError(f"Inference-Header-Content-Length {header_length} does not fit a {len(body)}-byte body")
    json_part = body if header_length is None else body[:header_length]
    binary = memoryview(body)[header_length or len(body):]
    try:
        header = orjson.loads(json_part)
    except orjson.JSONDecodeError:
        try:  # Python clients (tritonclient among them) write NaN and Infinity, which strict JSON lacks
            header = json.loads(json_part)
        except (ValueError, RecursionError) as error:
            raise ProtocolError(f"the request is not valid JSON: {error}") from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list) or not header["inputs"]:
        raise ProtocolError("the request needs a non-empty 'inputs' list")
    packed, numeric = packed_name(schema), numeric_fields(schema)
    known = {f.name: f for f in schema.fields}
    if len(header["inputs"]) > len(known) + 1:
        raise ProtocolError(f"too many inputs: the model takes {len(known)} fields")
    limit = schema.limits.max_string_length
    columns: dict[str, Any] = {}
    rows: int | None = None
    offset = 0
    for index, item in enumerate(header["inputs"]):
        _check_input(item, index)
        name, datatype = item["name"], item["datatype"]
        if name != packed and name not in known:
            raise ProtocolError(f"unknown input {name!r}; the model takes {[packed, *schema.names]}")
        values, shape, offset = _tensor(item, binary, offset, limit)
        if name == packed:
            if datatype not in NUMERIC_TYPES or len(shape) != 2 or shape[1] != len(numeric):
                raise ProtocolError(f"input {packed!r} must be a numeric [rows, {len(numeric)}] tensor ({numeric})")
            block = np.asarray(values).reshape(shape)
            _check_finite(block, numeric)
            columns.update(zip(numeric, block.T, strict=True))  # column views, made in one C loop
        else:
            kind = known[name].kind
            if datatype not in kind.v2_accepts:
                raise ProtocolError(f"input {name!r} ({known[name].type}) does not take {datatype}")
            if len(shape) == 2 and shape[1] != 1:
                raise ProtocolError(f"input {name!r} must have shape [rows] or [rows, 1]")
            if kind.packed:
                _check_finite(np.asarray(values).reshape(-1, 1), [name])
            elif datatype != "BYTES":
                values = [arrow_text(value) for value in np.asarray(values).tolist()]
            columns[name] = values
        if rows is not None and shape[0] != rows:
            raise ProtocolError(f"input {name!r} has {shape[0]} rows, an earlier input has {rows}")
        rows = shape[0]
    if offset != len(binary):
        raise ProtocolError(f"{len(binary) - offset} bytes after the last binary input are not claimed by any input")
    missing = [name for name in schema.names if name not in columns]
    if missing:
        raise ProtocolError(f"missing input(s) {missing}" + (f" (numeric fields go in {packed!r})" if numeric else ""))
    if not rows or rows > schema.limits.max_rows:
        raise ProtocolError(f"a request holds 1 to {schema.limits.max_rows} rows, this one {rows}")
    return InferRequest(columns, rows, *_options(header, schema.output_names))


def _options(header: dict[str, Any], available: list[str]) -> tuple[str | None, list[str], set[str], float | None]:
    request_id = header.get("id")
    if request_id is not None and (not isinstance(request_id, str) or len(request_id) > 256):
        raise ProtocolError("'id' must be a string of at most 256 characters")
    parameters = header.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ProtocolError("'parameters' must be an object")
    outputs, binary = list(available), set(available) if parameters.get("binary_data_output") is True else set()
    requested = header.get("outputs")
    if requested is not None:
        if not isinstance(requested, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                      and o["name"] in available for o in requested):
            raise ProtocolError(f"'outputs' must name outputs among {available}")
        if not all(isinstance(o.get("parameters", {}), dict | None) for o in requested):
            raise ProtocolError("outputs[].parameters must be an object")
        outputs = [o["name"] for o in requested]
        binary = {o["name"] for o in requested if (o.get("parameters") or {}).get("binary_data") is True}
    timeout = parameters.get("timeout")
    if timeout is not None and (not isinstance(timeout, int | float) or isinstance(timeout, bool)
                                or not 0 < timeout <= MAX_TIMEOUT_US):
        raise ProtocolError(f"parameters.timeout must be a positive number of microseconds, at most {MAX_TIMEOUT_US}")
    return request_id, outputs, binary, timeout / 1e6 if timeout else None


def _encode_bytes(values: list[str]) -> bytes:
    parts = []
    for value in values:
        raw = value.encode("utf-8")
        parts += [struct.pack("<I", len(raw)), raw]
    return b"".join(parts)


def _tensor_of(output: Output) -> tuple[str, list[int], Any]:
    """(datatype, shape, values: list of str or ndarray) of one output for a response."""
    spec, rows = output.spec, len(output.data)
    if spec.kind == "label":
        return "BYTES", [rows], output.text()
    dtype = NUMPY_TYPES[spec.v2_datatype]
    if spec.kind == "number":
        return spec.v2_datatype, [rows], output.data.astype(dtype)
    return spec.v2_datatype, [rows, len(spec.parts)], output.data.astype(dtype)


def infer_response(name: str, version: int, request: InferRequest, predictions: Predictions
                   ) -> tuple[bytes, int | None]:
    """The response body, and the JSON header length when some outputs are binary."""
    outputs, blobs = [], []
    for output_name in request.outputs:
        datatype, shape, values = _tensor_of(predictions[output_name])
        entry: dict[str, Any] = {"name": output_name, "datatype": datatype, "shape": shape}
        if output_name in request.binary:
            blob = _encode_bytes(values) if datatype == "BYTES" else np.ascontiguousarray(values).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = values if datatype == "BYTES" else values.reshape(-1).tolist()
        outputs.append(entry)
    head: dict[str, Any] = {"model_name": name, "model_version": str(version), "outputs": outputs}
    if request.request_id is not None:
        head["id"] = request.request_id
    if predictions.warnings:  # values the model never saw (answered as unknown)
        head["parameters"] = {"warnings": list(predictions.warnings)}
    header = orjson.dumps(head)
    return (header + b"".join(blobs), len(header)) if blobs else (header, None)
