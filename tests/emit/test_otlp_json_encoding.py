"""The OTLP-JSON line is built directly: the same JSON document (same keys, same order, same
values) as the SDK's protobuf encoder and protobuf's JSON printer give (the reference), for
every document the mappings produce and for the odd values an AnyValue can hold."""

from __future__ import annotations

import json

import pytest
from google.protobuf import json_format

from exporter.emit.otlpjson import JsonEncoder
from tests.emit import encoding_cases as cases


def request_to_json(request: object) -> str:
    """The reference: protobuf's JSON printer, lowerCamelCase keys, enums as integers (OTLP)."""
    return json_format.MessageToJson(request, indent=None, use_integers_for_enums=True)  # type: ignore[arg-type]


def same_document(resource, scope, batch) -> bool:  # type: ignore[no-untyped-def]
    mine = json.loads(cases.ours(JsonEncoder, resource, scope, batch), object_pairs_hook=list)  # order counts
    theirs = json.loads(request_to_json(cases.sdk_request(resource, scope, batch)), object_pairs_hook=list)
    return bool(mine == theirs)


@pytest.mark.parametrize("schema", ["ecs", "ocsf"])
def test_every_mapped_document_encodes_as_the_reference(schema: str) -> None:
    assert cases.every_case(same_document, cases.mapped(schema))


def test_odd_values_resources_and_scopes_encode_as_the_reference() -> None:
    for resource in cases.RESOURCES:
        for scope in cases.SCOPES:
            assert same_document(resource, scope, cases.odd(cases.ODD_BODIES))
    assert cases.ours(JsonEncoder, cases.RESOURCES[0], cases.SCOPES[0], []) == b"{}"


def test_a_line_is_one_line() -> None:
    line = cases.ours(JsonEncoder, cases.RESOURCES[0], cases.SCOPES[0], cases.odd(["a\nb", {"k": "x\r\ny"}]))
    assert b"\n" not in line and b"\r" not in line


def test_text_that_is_not_utf8_is_refused_for_the_caller_to_escape() -> None:
    with pytest.raises(UnicodeEncodeError):
        cases.ours(JsonEncoder, cases.RESOURCES[0], cases.SCOPES[0], cases.odd([{"path": "/etc/\udcff"}]))
