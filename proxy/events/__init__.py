"""IVS events: from the SQS queue an EventBridge rule fills, to subscribers of the proxy's
GET /_ivs-proxy/events (docs/events.md)."""
