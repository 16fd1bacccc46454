"""The bounded cause labels of provex_k8s_watch_errors{cause}, one per kind of failure."""

from __future__ import annotations

import json
import ssl

import pytest

from exporter.enrich.kubeclient import ApiError, GoneError
from exporter.enrich.pods import PodFormatError
from exporter.enrich.watcher import classify_error


@pytest.mark.parametrize(
    ("exc", "cause"),
    [
        (GoneError(410, "Gone"), "gone"),
        (ApiError(403, "Forbidden"), "http_403"),
        (ssl.SSLCertVerificationError("certificate verify failed"), "tls"),
        (json.JSONDecodeError("Expecting value", "{", 1), "bad_response"),
        (PodFormatError("no metadata"), "bad_response"),
        (KeyError("items"), "bad_response"),
        (TimeoutError(), "timeout"),
        (ConnectionRefusedError(), "refused"),
        (ConnectionResetError(), "connection"),
        (RuntimeError("?"), "other"),
    ],
)
def test_each_failure_has_its_cause(exc: BaseException, cause: str) -> None:
    assert classify_error(exc) == cause
