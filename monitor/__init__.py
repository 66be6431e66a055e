"""gateway-monitor: a Prometheus/alerting sidecar for the Tektii Trading Gateway."""

__version__ = "0.1.0"
