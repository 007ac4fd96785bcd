"""Validate a manifest as the Kubernetes API server would against a CRD's structural schema.

Plain JSON Schema gets two things wrong about Kubernetes' OpenAPI v3 schemas: `x-kubernetes-int-or-string`
(a quantity may be `2` or `"500m"`; the CRDs also spell it as anyOf, but the flag is what the server reads)
and unknown fields, which the server rejects (kubectl's strict field validation) unless a node says
`x-kubernetes-preserve-unknown-fields`. This validator handles both.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import jsonschema
import yaml
from jsonschema import validators

Draft = jsonschema.Draft7Validator


def _type(validator, types, instance, schema):
    if schema.get("x-kubernetes-int-or-string") and isinstance(instance, (int, str)) and not isinstance(instance, bool):
        return
    yield from Draft.VALIDATORS["type"](validator, types, instance, schema)


def _properties(validator, properties, instance, schema):
    yield from Draft.VALIDATORS["properties"](validator, properties, instance, schema)
    if (
        isinstance(instance, dict)
        and not schema.get("x-kubernetes-preserve-unknown-fields")
        and "additionalProperties" not in schema
    ):
        for key in sorted(set(instance) - set(properties)):
            yield jsonschema.ValidationError(f"unknown field {key!r} (known: {', '.join(sorted(properties))})")


KubeValidator = validators.extend(Draft, {"type": _type, "properties": _properties})


@cache
def crd_schema(path: Path, version: str = "v1") -> dict:
    crd = yaml.safe_load(path.read_text())
    return next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"]["openAPIV3Schema"]


def errors(manifest: dict, schema: dict) -> list[str]:
    """Every problem, as 'path.to.field: message' (empty when the API server would accept it)."""
    out = []
    for err in KubeValidator(schema).iter_errors(manifest):
        out.append(".".join(str(p) for p in err.absolute_path) + ": " + err.message)
    return sorted(out)
