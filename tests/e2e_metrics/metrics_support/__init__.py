"""Helpers of the METRICS end-to-end suite (tests/e2e_metrics).

- `prom`        a real `prometheus` server (temp config and storage) scraping the
                gateway, and its HTTP query API
- `dashboards`  the Grafana dashboards of deploy/grafana: panels, target
                expressions with their template variables filled in
- `workload`    a small mixed workload through the real SDKs (intent-bus 2.1.2,
                holokai-neuron-sdk 0.2.0) and raw governance / task API calls
"""
