#!/usr/bin/env python3
"""Checks docs/openapi.yaml: valid YAML, an OpenAPI 3.1 document whose every operation has
responses, whose every $ref resolves, and whose path template parameters are all declared as
path parameters. Route coverage (documented == served) is checked by test/roles/openapi_test.cpp.

    scripts/check-openapi.py [docs/openapi.yaml]
"""
import re
import sys

import yaml

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def resolve(document, ref):
    if not ref.startswith("#/"):
        raise ValueError(f"only local $refs are used here: {ref}")
    node = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            raise KeyError(ref)
        node = node[part]
    return node


def walk(node, document, where, errors):
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            try:
                resolve(document, ref)
            except (KeyError, ValueError) as e:
                errors.append(f"{where}: unresolved $ref {e}")
        for key, value in node.items():
            walk(value, document, f"{where}/{key}", errors)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            walk(value, document, f"{where}/{i}", errors)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "docs/openapi.yaml"
    with open(path, encoding="utf-8") as f:
        document = yaml.safe_load(f)
    errors = []
    if not str(document.get("openapi", "")).startswith("3.1."):
        errors.append("openapi must be 3.1.x")
    info = document.get("info", {})
    if not info.get("title") or not info.get("version"):
        errors.append("info.title and info.version are required")
    paths = document.get("paths") or {}
    if not paths:
        errors.append("no paths")
    operations = 0
    for route, item in paths.items():
        if not route.startswith("/"):
            errors.append(f"{route}: a path must start with /")
        template = set(re.findall(r"{([^}]+)}", route))
        for method, operation in item.items():
            if method not in METHODS:
                errors.append(f"{route}: unknown key {method}")
                continue
            operations += 1
            responses = operation.get("responses") or {}
            if not responses:
                errors.append(f"{method.upper()} {route}: no responses")
            for status in responses:
                if not re.fullmatch(r"[1-5][0-9][0-9]|default", str(status)):
                    errors.append(f"{method.upper()} {route}: bad status {status}")
            declared = set()
            for parameter in operation.get("parameters", []) + item.get("parameters", []):
                if "$ref" in parameter:
                    parameter = resolve(document, parameter["$ref"])
                if parameter.get("in") == "path":
                    declared.add(parameter["name"])
                    if parameter.get("required") is not True:
                        errors.append(f"{method.upper()} {route}: path parameter "
                                      f"{parameter['name']} must be required")
            if declared != template:
                errors.append(f"{method.upper()} {route}: path parameters {sorted(declared)} "
                              f"do not match the template {sorted(template)}")
    walk(document, document, "#", errors)
    for error in errors:
        print(f"{path}: {error}", file=sys.stderr)
    if errors:
        return 1
    print(f"{path}: OpenAPI {document['openapi']}, {len(paths)} paths, {operations} operations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
