"""A stand-in OTLP collector for tests: gRPC LogsService and HTTP/protobuf /v1/logs.

Built only on the official protobufs (opentelemetry-proto) and grpcio, bound
to 127.0.0.1, optionally with TLS. It keeps every request with its headers
and arrival time, and decodes AnyValue trees to plain Python for assertions.
"""

from __future__ import annotations

import contextlib
import gzip
import http.server
import socket
import ssl
import threading
import time
import zlib
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue


def any_to_py(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "kvlist_value":
        return {kv.key: any_to_py(kv.value) for kv in value.kvlist_value.values}
    if kind == "array_value":
        return [any_to_py(v) for v in value.array_value.values]
    return getattr(value, kind)


def kv_to_dict(items: list[KeyValue]) -> dict[str, Any]:
    return {kv.key: any_to_py(kv.value) for kv in items}


@dataclass
class Received:
    request: logs_service_pb2.ExportLogsServiceRequest
    headers: dict[str, str]
    arrival_ns: int  # time.perf_counter_ns() when the request was decoded
    arrival_wall_ns: int  # time.time_ns() at the same moment (to compare with kernel event times)


@dataclass
class Record:
    resource: dict[str, Any]
    scope_name: str
    scope_attributes: dict[str, Any]
    body: Any
    attributes: dict[str, Any]
    severity_number: int
    severity_text: str
    event_name: str
    time_unix_nano: int
    observed_time_unix_nano: int
    arrival_ns: int
    arrival_wall_ns: int
    headers: dict[str, str]


# A LogRecord's fields a Record keeps as they are.
_AS_SENT = ("severity_number", "severity_text", "event_name", "time_unix_nano", "observed_time_unix_nano")


def decode_records(item: Received, light: bool = False) -> list[Record]:
    """The log records of one request. `light` decodes only alert bodies and leaves resource
    and scope attributes out (bench/eval.py decodes thousands of raw events per second)."""
    out = []
    for rl in item.request.resource_logs:
        resource = {} if light else kv_to_dict(rl.resource.attributes)
        for sl in rl.scope_logs:
            scope_attrs = {} if light else kv_to_dict(sl.scope.attributes)
            for lr in sl.log_records:
                body = any_to_py(lr.body) if not light or lr.event_name == "provex.alert" else None
                fields = {name: getattr(lr, name) for name in _AS_SENT}
                fields.update(arrival_ns=item.arrival_ns, arrival_wall_ns=item.arrival_wall_ns)
                out.append(
                    Record(resource, sl.scope.name, scope_attrs, body, kv_to_dict(lr.attributes),
                           headers=item.headers, **fields)
                )  # fmt: skip
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OtlpReceiver:
    """protocol: "grpc" or "http/protobuf". tls: (cert_pem_path, key_pem_path) or None."""

    def __init__(
        self, protocol: str = "grpc", port: int = 0, tls: tuple[str, str] | None = None, status: int = 200
    ) -> None:
        self.protocol = protocol
        self.port = port or free_port()
        self.tls = tls
        self.http_status = status  # HTTP: answer with this status (e.g. 503 for a sick collector)
        # gRPC: fail every Export with this status (e.g. UNAVAILABLE), after counting the attempt.
        self.grpc_status: grpc.StatusCode | None = None
        # Both: accept the request but answer partial_success, rejecting this many of its records
        # (-1: all of them) with this message. Rejected requests are not kept in `received`.
        self.reject: tuple[int, str] | None = None
        self.attempts = 0  # Export calls seen, answered or not
        self.received: list[Received] = []
        self._cond = threading.Condition()
        self._grpc: grpc.Server | None = None
        self._http: http.server.ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    @property
    def endpoint(self) -> str:
        scheme = "https" if self.tls else "http"
        path = "/v1/logs" if self.protocol == "http/protobuf" else ""
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def _keep(self, request: logs_service_pb2.ExportLogsServiceRequest, headers: dict[str, str]) -> None:
        with self._cond:
            self.received.append(Received(request, headers, time.perf_counter_ns(), time.time_ns()))
            self._cond.notify_all()

    def _answer_to(
        self, request: logs_service_pb2.ExportLogsServiceRequest, headers: dict[str, str]
    ) -> logs_service_pb2.ExportLogsServiceResponse:
        """Keep the request, or answer partial_success as configured."""
        with self._cond:
            self.attempts += 1
            self._cond.notify_all()
        response = logs_service_pb2.ExportLogsServiceResponse()
        if self.reject is None:
            self._keep(request, headers)
            return response
        count, message = self.reject
        total = sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
        response.partial_success.rejected_log_records = total if count < 0 else min(count, total)
        response.partial_success.error_message = message
        return response

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> OtlpReceiver:
        if self.protocol == "grpc":
            self._start_grpc()
        else:
            self._start_http()
        return self

    def stop(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=None).wait()
            self._grpc = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
            # A dead collector also drops its keep-alive connections.
            for conn in list(self._connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self._connections.clear()

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start_grpc(self) -> None:
        receiver = self

        class Servicer(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request, context):
                if receiver.grpc_status is not None:
                    with receiver._cond:
                        receiver.attempts += 1
                        receiver._cond.notify_all()
                    context.abort(receiver.grpc_status, "collector stand-in: answering with an error")
                return receiver._answer_to(request, {k: v for k, v in context.invocation_metadata()})

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Servicer(), server)
        address = f"127.0.0.1:{self.port}"
        if self.tls:
            cert, key = (Path(p).read_bytes() for p in self.tls)
            bound = server.add_secure_port(address, grpc.ssl_server_credentials([(key, cert)]))
        else:
            bound = server.add_insecure_port(address)
        if bound != self.port:
            raise OSError(f"could not bind {address}")
        server.start()
        self._grpc = server

    def _start_http(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                receiver._connections.add(self.connection)

            def finish(self) -> None:
                receiver._connections.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                data = self.rfile.read(length)
                if self.path != "/v1/logs":
                    self._answer(404, b"")
                    return
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    data = gzip.decompress(data)
                elif encoding == "deflate":
                    data = zlib.decompress(data)
                if self.headers.get("Content-Type") != "application/x-protobuf":
                    self._answer(415, b"")
                    return
                if receiver.http_status != 200:
                    with receiver._cond:
                        receiver.attempts += 1
                        receiver._cond.notify_all()
                    self._answer(receiver.http_status, b"")
                    return
                request = logs_service_pb2.ExportLogsServiceRequest.FromString(data)
                response = receiver._answer_to(request, {k.lower(): v for k, v in self.headers.items()})
                self._answer(200, response.SerializeToString())

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._http = server
        self._http_thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._http_thread.start()

    # -- reading --------------------------------------------------------------

    def records(self) -> list[Record]:
        with self._cond:
            received = list(self.received)
        return [record for item in received for record in decode_records(item)]

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[Record]:
        """Block until `count` log records arrived (or time out); return them all."""
        deadline = time.monotonic() + timeout_s
        while True:
            records = self.records()
            if len(records) >= count:
                return records
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{len(records)} of {count} log records arrived within {timeout_s}s")
            with self._cond:
                self._cond.wait(min(remaining, 0.05))


class Capture:
    """An exporter (exporter.emit.processor.Exporter) that keeps every request in memory,
    decoded with the official protobufs: for tests that need no network."""

    encoding = "protobuf"
    name = "capture"

    def __init__(self) -> None:
        self.requests: list[logs_service_pb2.ExportLogsServiceRequest] = []

    def export(self, request: bytes, records: int, signal: str) -> bool:
        self.requests.append(logs_service_pb2.ExportLogsServiceRequest.FromString(request))
        return True

    @property
    def records(self) -> list[Record]:
        return [r for request in self.requests for r in decode_records(Received(request, {}, 0, 0))]

    def shutdown(self) -> None:
        pass
