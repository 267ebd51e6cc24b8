"""Build the JSON Schema of a parse result from the TypedDicts in result.py.

The shipped `result.schema.json` is this function's output, committed; a test checks that the
two agree, so the schema file cannot drift from the code that fills it.
"""

from __future__ import annotations

import json
import types
import typing
from importlib import resources
from typing import Any

from replay_cli import result
from replay_cli.result import DEPTHS, ERROR_KINDS, SCHEMA_VERSION, Status

SCHEMA_FILE = "result.schema.json"
JSON_TYPES: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _type_schema(annotation: Any, definitions: dict[str, Any]) -> dict[str, Any]:
    origin = typing.get_origin(annotation)
    if annotation is type(None):
        return {"type": "null"}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_type_schema(arg, definitions) for arg in typing.get_args(annotation)]}
    if origin is list:
        (item,) = typing.get_args(annotation)
        return {"type": "array", "items": _type_schema(item, definitions)}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type_schema(typing.get_args(annotation)[1], definitions)}
    if origin is typing.Literal:
        return {"enum": list(typing.get_args(annotation))}
    if typing.is_typeddict(annotation):
        name = annotation.__name__
        if name not in definitions:
            definitions[name] = {}  # reserve first: guards against recursion
            definitions[name] = _object_schema(annotation, definitions)
        return {"$ref": f"#/$defs/{name}"}
    if annotation is float:
        return {"type": "number"}  # JSON has no float/int split: 0.0 may arrive as 0
    if annotation in JSON_TYPES:
        return {"type": JSON_TYPES[annotation]}
    raise TypeError(f"no JSON Schema mapping for {annotation!r}")


def _object_schema(typed_dict: Any, definitions: dict[str, Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(typed_dict)
    return {
        "type": "object",
        "properties": {name: _type_schema(hint, definitions) for name, hint in hints.items()},
        "required": sorted(hints),
        "additionalProperties": False,
    }


def build_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of one parse result."""
    definitions: dict[str, Any] = {}
    schema = _object_schema(result.Result, definitions)
    properties = schema["properties"]
    properties["schema_version"] = {"const": SCHEMA_VERSION}
    properties["status"] = {"enum": list(typing.get_args(Status))}
    properties["depth_requested"] = {"enum": list(DEPTHS)}
    properties["depth_reached"] = {"anyOf": [{"enum": list(DEPTHS)}, {"type": "null"}]}
    definitions["ErrorInfo"]["properties"]["kind"] = {"enum": sorted(ERROR_KINDS)}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://replaycli.invalid/schema/result-v{SCHEMA_VERSION}.json",
        "title": f"replaycli parse result, schema version {SCHEMA_VERSION}",
        **schema,
        "$defs": dict(sorted(definitions.items())),
    }


def render_schema() -> str:
    """Return the schema as the text of the shipped file."""
    return json.dumps(build_schema(), indent=2, sort_keys=False) + "\n"


def shipped_schema_text() -> str:
    """Return the schema file shipped in the package."""
    return resources.files("replay_cli").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
