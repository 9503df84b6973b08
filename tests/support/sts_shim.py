"""A loopback front for moto's STS that lets web identity through IAM authentication.

Real STS takes AssumeRoleWithWebIdentity unsigned (the web identity token is the proof);
moto with IAM authentication on refuses every unsigned request. This shim forwards every
STS request to moto unchanged, except that it signs AssumeRoleWithWebIdentity with moto's
admin keys first. Everything else (the issued role credentials, the proxy's signed calls
with them) is moto's own behaviour. It also records the tokens it saw, so a test can tell
that the token file was read.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import parse_qs

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

# Hop-by-hop; everything else (Host included: it is signed) is forwarded as received.
_SKIP = {"connection", "transfer-encoding"}


class StsShim:
    def __init__(self, moto_url: str, admin: tuple[str, str], region: str) -> None:
        self.moto_url = moto_url
        self.admin = Credentials(*admin)
        self.region = region
        self.tokens: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="sts-shim", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def forward(self, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        form = parse_qs(body.decode())
        if form.get("Action") == ["AssumeRoleWithWebIdentity"] and "authorization" not in headers:
            self.tokens.append(form["WebIdentityToken"][0])
            signed = AWSRequest(method="POST", url=f"http://{headers['host']}/", data=body, headers=headers)
            SigV4Auth(self.admin, "sts", self.region).add_auth(signed)
            headers = {k.lower(): v for k, v in signed.headers.items()}
        request = urllib.request.Request(self.moto_url + "/", data=body, method="POST")
        for name, value in headers.items():
            if name not in _SKIP:
                request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.headers.get("Content-Type", "text/xml"), response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers.get("Content-Type", "text/xml"), error.read()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        shim = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, content_type, payload = shim.forward(headers, body)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_: object) -> None:
                pass

        return Handler
