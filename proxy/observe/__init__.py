"""What the proxy tells its operators: structured logs and Prometheus metrics."""
