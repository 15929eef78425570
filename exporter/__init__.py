"""vias-exporter: Prometheus exporter for Huawei Cloud VIAS jobs."""

__version__ = "0.1.0"
