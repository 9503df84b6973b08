"""TLS on the data listener: the server context, and the client certificate per request.

`server_context` builds an `ssl.SSLContext(PROTOCOL_TLS_SERVER)` from `tls:`; with a
client CA it verifies client certificates during the handshake (expired, unknown CA or
none at all when required: the connection never gets to HTTP). The data port hands the
verified certificate of each request's connection to the authenticator through
`identity.PEER_CERTIFICATE` (proxy/serve/server.py, `DataApp.peer_certificates`).
"""

from __future__ import annotations

import functools
import ssl

from proxy.config import TlsConfig
from proxy.errors import ConfigError


@functools.lru_cache(maxsize=4)
def server_context(config: TlsConfig) -> ssl.SSLContext | None:
    """The data listener's context, or None for plain HTTP. Cached: built once per config."""
    if config.cert_file is None or config.key_file is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.cert_file, config.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("tls.cert_file", f"cannot load the certificate and key: {exc}") from None
    if config.client_ca_file is not None:
        try:
            context.load_verify_locations(cafile=config.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError("tls.client_ca_file", f"cannot load: {exc}") from None
        context.verify_mode = ssl.CERT_REQUIRED if config.client_cert == "required" else ssl.CERT_OPTIONAL
    return context
