"""Checks Hermetic's OpenAPI document, and real answers against it.

    openapi_check.py DOC.json [SAMPLES.json]

1. Validates DOC.json as an OpenAPI 3.1 document with openapi-spec-validator (the document must
   declare 3.1.0).
2. Validates every example in the document (request bodies, answers, header schemas' examples are
   left to 1) against the schema beside it.
3. With SAMPLES.json, a list of answers the real server gave,
   [{"method": "POST", "path": "/api/v1/events", "status": 202,
     "content_type": "application/json", "body": {...}}, ...]
   (`path` is the route template), checks that the operation documents each status and content
   type, and validates each body against the documented schema (formats checked: uuid,
   date-time, email).

Prints one line per failure and exits 1 if there was any; prints a summary line otherwise. Run
with the test-tools venv (ensure_py_tools in common.sh).
"""

import copy
import json
import sys

from openapi_schema_validator import OAS31Validator, oas31_format_checker
from openapi_spec_validator import validate as validate_spec
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError


def pointer(*parts):
    return "#/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def validator(doc, *parts):
    """A validator for the schema at DOC/parts, whose `$ref`s resolve within DOC."""
    root = copy.copy(doc)
    root["$ref"] = pointer(*parts)
    return OAS31Validator(root, format_checker=oas31_format_checker)


def errors_of(v, instance):
    return ["%s: %s" % ("/" + "/".join(map(str, e.absolute_path)), e.message) for e in v.iter_errors(instance)]


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        doc = json.load(f)
    failures = []

    if doc.get("openapi") != "3.1.0":
        failures.append("the document declares openapi %r, not 3.1.0" % doc.get("openapi"))
    try:
        validate_spec(doc)
    except OpenAPIValidationError as e:
        failures.append("openapi-spec-validator: %s" % e)

    examples = 0
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            body = op.get("requestBody", {})
            for ct, content in body.get("content", {}).items():
                if "example" in content:
                    examples += 1
                    v = validator(doc, "paths", path, method, "requestBody", "content", ct, "schema")
                    for e in errors_of(v, content["example"]):
                        failures.append("%s %s request example: %s" % (method.upper(), path, e))
            for status, res in op["responses"].items():
                for ct, content in res.get("content", {}).items():
                    if "example" in content:
                        examples += 1
                        v = validator(doc, "paths", path, method, "responses", status, "content", ct, "schema")
                        for e in errors_of(v, content["example"]):
                            failures.append("%s %s %s example: %s" % (method.upper(), path, status, e))

    samples = []
    if len(sys.argv) == 3:
        with open(sys.argv[2]) as f:
            samples = json.load(f)
    for s in samples:
        what = "%s %s -> %s" % (s["method"], s["path"], s["status"])
        op = doc.get("paths", {}).get(s["path"], {}).get(s["method"].lower())
        if op is None:
            failures.append("%s: the operation is not documented" % what)
            continue
        status = str(s["status"])
        if status not in op["responses"]:
            failures.append("%s: this status is not documented for the operation" % what)
            continue
        content = op["responses"][status].get("content", {})
        ct = s["content_type"].split(";")[0].strip()
        if ct not in content:
            failures.append("%s: content type %s is not documented (documented: %s)" % (what, ct, ", ".join(content)))
            continue
        v = validator(doc, "paths", s["path"], s["method"].lower(), "responses", status, "content", ct, "schema")
        for e in errors_of(v, s["body"]):
            failures.append("%s: body does not match the schema: %s" % (what, e))

    for f in failures:
        print(f)
    if failures:
        return 1
    print("OpenAPI document valid (openapi-spec-validator, OpenAPI %s); %d examples and %d real answers match their schemas"
          % (doc.get("openapi"), examples, len(samples)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
