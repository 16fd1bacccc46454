"""Helpers the benches and the tests share: the agent run as a subprocess, an OTLP receiver
built on opentelemetry-proto and grpcio, the sample records and the redaction table. Benches
import product code and these, never `tests`."""
