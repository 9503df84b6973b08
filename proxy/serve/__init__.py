"""The process: listeners, the data and admin servers, limits, drain, TLS, workers."""
