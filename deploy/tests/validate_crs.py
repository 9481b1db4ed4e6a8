#!/usr/bin/env python3
"""Validates custom resources in a rendered manifest against their CRDs' openAPIV3Schema.

Usage: validate_crs.py RENDERED.yaml CRD.yaml...

Kubernetes' own schemas (kubernetes-validate) do not know custom kinds. This checks every
resource whose group is served by one of the given CRDs, strictly: an object schema with
`properties` rejects other keys (the API server would prune them silently, so a misspelt field
would do nothing). A resource of a group the CRDs serve but of a kind or version they do not
define is an error. Prints one line per resource checked; exit 1 on any problem.
"""
import sys

import jsonschema
import yaml


def strict(schema):
    """Forbids unknown properties wherever the schema lists properties and does not say
    otherwise (additionalProperties, x-kubernetes-preserve-unknown-fields)."""
    if isinstance(schema, dict):
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        for v in schema.values():
            strict(v)
    elif isinstance(schema, list):
        for v in schema:
            strict(v)
    return schema


def main(rendered, crd_files):
    schemas = {}
    groups = set()
    for path in crd_files:
        with open(path) as f:
            crd = yaml.safe_load(f)
        spec = crd["spec"]
        groups.add(spec["group"])
        for version in spec["versions"]:
            schema = strict(version["schema"]["openAPIV3Schema"])
            schemas[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = schema
    problems = 0
    with open(rendered) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    for doc in docs:
        api, kind = doc.get("apiVersion", ""), doc.get("kind", "")
        if api.split("/")[0] not in groups:
            continue
        name = f"{kind}/{doc.get('metadata', {}).get('name')}"
        schema = schemas.get((api, kind))
        if schema is None:
            print(f"FAIL {name}: no CRD given for {api} {kind}")
            problems += 1
            continue
        errors = sorted(
            jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.path)
        )
        for e in errors:
            where = "/".join(str(p) for p in e.absolute_path) or "(top)"
            print(f"FAIL {name}: {where}: {e.message}")
        problems += len(errors)
        if not errors:
            print(f"ok {name} against {api} {kind}")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        sys.exit(64)
    sys.exit(main(sys.argv[1], sys.argv[2:]))
