"""Schemathesis hooks for the config API's contract test (`tests/tests/e2e/config_api.rs`).

A create's 201 links to the operations of both destination types, because an OpenAPI link
cannot depend on the created body: after a GRAFANA_LOKI create, the DATADOG operations answer
404, as the document says. Schemathesis's ST302 (a resource just created is not found) would
take those for lost resources, so the test turns it off and runs it here on the operations of
the created type only, where it holds in full.

Uses the check context's recorder (`ctx.internals`), which schemathesis keeps for its own
checks: the Makefile pins the version this was written against.

Loki `labels` is an object whose names follow a rule (`propertyNames` in the document) that
OpenAPI 3.0 has no keyword for, and schemathesis generates names without it; the names of
generated labels are therefore made valid (`valid_label_names`), and everything else about
the case, its values included, is kept as generated.
"""

import re

import schemathesis
from schemathesis.specs.openapi.checks import ensure_resource_availability

# /v1/projects/{project_id}/event_log_streaming/{TYPE}/...
DESTINATION_TYPE_SEGMENT = 5


@schemathesis.check
def created_stream_is_found(ctx, response, case):
    """ST302, on the operations of the destination type the parent request created."""
    parent = ctx.internals.find_parent(case_id=case.id)
    if parent is None or not isinstance(parent.body, dict):
        return None
    segments = case.path.split("/")
    if len(segments) <= DESTINATION_TYPE_SEGMENT:
        return None
    if segments[DESTINATION_TYPE_SEGMENT] != parent.body.get("destination_type"):
        return None
    return ensure_resource_availability(ctx, response, case)


LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,1023}")
RESERVED_LABEL_NAMES = {"source", "service_name"}


def valid_label_name(name):
    return (
        LABEL_NAME.fullmatch(name) is not None
        and not name.startswith("__")
        and name not in RESERVED_LABEL_NAMES
    )


@schemathesis.hook
def map_case(ctx, case):
    """Renames generated Loki label names that break the documented rule."""
    body = case.body
    if not isinstance(body, dict):
        return case
    config = body.get("destination_config")
    loki = config.get("grafana_loki") if isinstance(config, dict) else None
    labels = loki.get("labels") if isinstance(loki, dict) else None
    if isinstance(labels, dict):
        renamed = {}
        for index, (name, value) in enumerate(labels.items()):
            if not valid_label_name(name):
                name = f"label_{index}"
            renamed[name] = value
        loki["labels"] = renamed
    return case
