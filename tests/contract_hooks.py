"""Schemathesis hooks for the config API's contract test (`tests/tests/e2e/config_api.rs`).

A create's 201 links to the operations of both destination types, because an OpenAPI link
cannot depend on the created body: after a GRAFANA_LOKI create, the DATADOG operations answer
404, as the document says. Schemathesis's ST302 (a resource just created is not found) would
take those for lost resources, so the test turns it off and runs it here on the operations of
the created type only, where it holds in full.

Uses the check context's recorder (`ctx.internals`), which schemathesis keeps for its own
checks: the Makefile pins the version this was written against.
"""

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
