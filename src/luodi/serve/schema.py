"""Request and response schemas generated from a package's input schema and its task's outputs, and request
columns to Arrow.

One `FieldType` per input-schema type says how a field is accepted over HTTP (the JSON annotation that
validates it and appears in /docs, the Open Inference Protocol datatypes it takes and whether it travels in the
packed numeric tensor), what a warm-up value looks like, how a column of accepted values becomes the Arrow
column the feature pipeline reads, and how the prediction log stores it. The request schema, /v2 and the
prediction log all read this one table; new feature types (images as base64, numeric vectors) slot in as one
more entry. Outputs are the task's (`task.output_specs`, tasks/outputs.py): the /v1 response, /v2 outputs and
the log follow them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import orjson
import pyarrow as pa
from pydantic import ConfigDict, Field, StringConstraints, TypeAdapter
from typing_extensions import NotRequired, TypedDict

from luodi.errors import InputError
from luodi.package import output_specs
from luodi.tasks import OutputSpec, Predictions

NUMERIC_TYPES = frozenset({"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32",
                           "UINT64"})
SCALAR_TYPES = NUMERIC_TYPES | {"BOOL", "BYTES"}


@dataclass(frozen=True)
class Limits:
    """Bounds on every request: rows per request and characters per string."""

    max_rows: int = 1024
    max_string_length: int = 10_000


def arrow_text(value: Any) -> str | None:
    """A value spelled as Arrow casts it to text (True -> 'true', 2.0 -> '2'), the spelling encoders compare."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating):
        number = float(value)
        if number.is_integer() and abs(number) < 1e15:
            return str(int(number))
        return repr(number)
    return str(value)


def concat_columns(parts: list[Any]) -> Any:
    """One column from several requests' parts: lists stay lists; any array (v2 tensors) makes a float64 array."""
    if len(parts) == 1:
        return parts[0]
    if any(isinstance(part, np.ndarray) for part in parts):
        return np.concatenate([np.asarray(part, dtype=np.float64) for part in parts])
    return [value for part in parts for value in part]


def numbers_to_arrow(values: list[Any] | np.ndarray) -> pa.Array:
    if isinstance(values, np.ndarray):
        return pa.array(values.astype(np.float64, copy=False))
    return pa.array(values, pa.float64())


def scalars_to_arrow(values: list[Any] | np.ndarray) -> pa.Array:
    """A column of strings, numbers or booleans; a mix of Python types becomes text as Arrow would spell it."""
    if isinstance(values, np.ndarray):
        return pa.array(values)
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([arrow_text(value) for value in values], pa.string())


def text_to_arrow(values: list[Any] | np.ndarray) -> pa.Array:
    return pa.array([arrow_text(value) for value in values], pa.string())


def _bounded_text(limits: Limits) -> Any:
    return Annotated[str, StringConstraints(max_length=limits.max_string_length)]


# JSON numbers as a field accepts them: integers within int64 (Arrow's, so a huge one cannot overflow a column),
# and finite floats: `NaN` and `Infinity` (not JSON, but Python clients write them) are refused naming the field,
# never imputed as missing (`null` is how a request says missing).
Int64 = Annotated[int, Field(ge=-(1 << 63), le=(1 << 63) - 1)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]  # a JSON number (an integer too), never a boolean


def _scalar(limits: Limits) -> Any:
    return _bounded_text(limits) | bool | Int64 | Finite | None


def _first(state: dict[str, Any], key: str, default: Any) -> Any:
    values = state.get(key) or []
    return values[0] if values else default


@dataclass(frozen=True)
class FieldType:
    """How one kind of input field travels over HTTP and into the feature pipeline."""

    annotation: Callable[[Limits], Any]  # the JSON type of one value (validates /v1 records; shown in /docs)
    v2_datatype: str  # what /v2 model metadata advertises
    v2_accepts: frozenset[str]  # which /v2 tensor datatypes are accepted
    sample: Callable[[dict[str, Any]], Any]  # a plausible value from the fitted feature state (warm-up, examples)
    to_arrow: Callable[[list[Any] | np.ndarray], pa.Array]  # a column of accepted values to Arrow
    to_log: Callable[[list[Any] | np.ndarray], pa.Array]  # how the prediction log stores the column
    packed: bool = False  # /v2: travels in the packed [rows, k] numeric tensor (and takes numeric tensors as is)


FIELD_TYPES: dict[str, FieldType] = {
    "numeric": FieldType(lambda limits: Number | None, "FP64", NUMERIC_TYPES,
                         lambda state: round(float(state.get("center", 0.0)), 4), numbers_to_arrow, numbers_to_arrow,
                         packed=True),
    "category": FieldType(_scalar, "BYTES", SCALAR_TYPES,
                          lambda state: _first(state, "vocabulary", "unknown"), scalars_to_arrow, text_to_arrow),
    "binary": FieldType(_scalar, "BYTES", SCALAR_TYPES,
                        lambda state: _first(state, "values", "true"), scalars_to_arrow, text_to_arrow),
    "text": FieldType(lambda limits: _bounded_text(limits) | None, "BYTES", frozenset({"BYTES"}),
                      lambda state: " ".join(state.get("vocabulary", [])[:5]), text_to_arrow, text_to_arrow),
}


OUTPUT_ANNOTATIONS: dict[str, Callable[[OutputSpec], Any]] = {  # the JSON type of one row of an output in /v1
    "label": lambda spec: Literal[spec.labels],
    "number": lambda spec: float,
    "scores": lambda spec: typed_dict(spec.name.capitalize(), {part: float for part in spec.parts}),
}


def typed_dict(name: str, fields: dict[str, Any]) -> Any:
    """A TypedDict made at run time: field names are column names (any string), types come from the package."""
    return TypedDict(name, fields)  # type: ignore[operator]


@dataclass(frozen=True)
class InputField:
    name: str
    type: str
    kind: FieldType
    sample: Any


class ServingSchema:
    """Everything per-request-invariant about one package's inputs and outputs, computed once at load."""

    def __init__(self, manifest: dict[str, Any], limits: Limits):
        self.limits = limits
        states = {item["name"]: item for item in manifest["features"]["features"]}
        fields = []
        for item in manifest["input_schema"]:
            kind = FIELD_TYPES.get(item["type"])
            if kind is None:
                raise InputError(f"input field {item['name']!r} has type {item['type']!r}, which this server cannot "
                                 f"accept (known: {sorted(FIELD_TYPES)})")
            fields.append(InputField(item["name"], item["type"], kind, kind.sample(states.get(item["name"], {}))))
        self.fields = fields
        self.names = [field.name for field in fields]
        output = manifest["output_schema"]
        self.target: str = output["name"]
        self.task: str = output["task"]
        self.outputs = output_specs(manifest)
        self.output_names = [spec.name for spec in self.outputs]
        record = typed_dict("Record", {field.name: field.kind.annotation(limits) for field in fields})
        record.__pydantic_config__ = ConfigDict(extra="ignore")  # whole rows may carry ids and targets
        self.request = TypeAdapter(typed_dict("PredictRequest", {
            "records": Annotated[list[record], Field(min_length=1, max_length=limits.max_rows)]}))  # type: ignore
        self.sample_record = {field.name: field.sample for field in fields}

    # ------------------------------------------------------------------------------------------ /v1
    def parse_records(self, body: bytes) -> list[dict[str, Any]]:
        """Validate a /v1 body; pydantic's ValidationError names the record and field that is wrong."""
        records: list[dict[str, Any]] = self.request.validate_json(body)["records"]
        return records

    def columns(self, records: list[dict[str, Any]]) -> dict[str, list[Any]]:
        return {name: [record[name] for record in records] for name in self.names}

    def table(self, columns: dict[str, Any]) -> pa.Table:
        """Request columns (lists or arrays, one per field) as the Arrow table the feature pipeline reads."""
        return pa.table({field.name: field.kind.to_arrow(columns[field.name]) for field in self.fields})

    def v1_response(self, name: str, version: int, predictions: Predictions, request_id: str) -> bytes:
        reply: dict[str, Any] = {"model": name, "version": version, "request_id": request_id,
                                 "predictions": predictions.rows()}
        if predictions.warnings:
            reply["warnings"] = list(predictions.warnings)
        return orjson.dumps(reply)

    def openapi(self, prefix: str) -> dict[str, Any]:
        """/v1 request and response JSON schemas, their definitions named `prefix.X`, and an example request."""
        row = {spec.name: OUTPUT_ANNOTATIONS[spec.kind](spec) for spec in self.outputs}
        response = typed_dict("PredictResponse", {
            "model": str, "version": int, "request_id": str,
            "predictions": list[typed_dict("PredictionRow", row)],  # type: ignore
            "warnings": NotRequired[list[str]]})
        template = f"#/components/schemas/{prefix}.{{model}}"
        components: dict[str, Any] = {}
        schemas = {}
        for key, adapter in (("request", self.request), ("response", TypeAdapter(response))):
            schema = adapter.json_schema(ref_template=template)
            components.update({f"{prefix}.{name}": value for name, value in schema.pop("$defs", {}).items()})
            schemas[key] = schema
        return {**schemas, "components": components, "example": {"records": [self.sample_record]}}
