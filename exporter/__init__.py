"""provex: an eBPF security exporter for Kubernetes nodes."""

__version__ = "0.1.0"
