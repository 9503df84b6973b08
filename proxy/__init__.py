"""ivs-proxy: a request-signing proxy for the Amazon IVS APIs."""

__version__ = "0.1.0"
