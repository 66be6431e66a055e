"""Fixtures of the alerting tests; the helpers they use live in alerts_support.py."""

from alerts_support import (  # noqa: F401 - importing a fixture registers it
    alerts,
    amtool,
    gateway_metric_names,
    monitor_scrape_names,
    monitor_scrape_text,
    no_leftover_daemons,
    promtool,
)
from processes import (  # noqa: F401 - importing a fixture registers it
    alertmanager_factory,
    prometheus_factory,
    version_line,
    webhook_receiver,
)
