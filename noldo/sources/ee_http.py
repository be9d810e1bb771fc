"""The build's two Earth Engine calls (``computePixels``, ``listAssets`` pages) over a plain HTTP pool.

The client library sends them through four layers (the discovery client, its HTTP adapter,
google-auth's wrapper, requests), which re-serialise the expression, scan the environment and copy
answers in 10 kB pieces: a few milliseconds of CPU per request, the largest cost of a build's
request path. Here one request is one POST of an already serialised body (or one GET) on a pooled
urllib3 connection, authorised with the credentials the library was initialised with (refreshed under a
lock when they expire, and once more when the server answers 401), proxies and CA bundle read once
from the environment. Refusals raise :class:`Refusal` with the status and the server's message, which
the retry table (:mod:`noldo.sources.ee_errors`) judges like the library's own errors.
"""

from __future__ import annotations

import json
import os
import platform
import threading
import urllib.parse
import urllib.request
from typing import Any

import orjson
import urllib3

from noldo._version import __version__

_CA_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")


class Refusal(Exception):
    """Earth Engine answered with an error status; ``str()`` is its message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def refusal(status: int, body: bytes) -> Refusal:
    """The refusal of an error answer: the message of Google's JSON error body, else the body's first line."""
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = (body.decode(errors="replace").strip().splitlines() or [f"HTTP {status}"])[0][:200]
    return Refusal(status, str(message))


def pool_for(url: str, connections: int, timeout: float) -> urllib3.PoolManager:
    """A connection pool for ``url``: through the proxy the environment names for it, with its CA bundle."""
    parts = urllib.parse.urlsplit(url)
    options: dict[str, Any] = {"maxsize": connections, "retries": False, "timeout": urllib3.Timeout(
        connect=min(timeout, 30.0), read=timeout)}
    if parts.scheme == "https":
        import certifi

        options["ca_certs"] = next((os.environ[n] for n in _CA_ENV if os.environ.get(n)), certifi.where())
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        return urllib3.ProxyManager(proxy, **options)
    return urllib3.PoolManager(**options)


class RestClient:
    """The REST calls of one project: ``computePixels`` (a serialised body in, the answer's bytes out) and
    ``listAssets`` pages (decoded JSON)."""

    def __init__(self, url: str, project_path: str, credentials: Any, connections: int, timeout: float) -> None:
        self.url = url
        self.endpoint = f"{url}/v1/{project_path}/image:computePixels"
        self.pool = pool_for(url, connections, timeout)
        self.credentials = credentials
        self._refresh_lock = threading.Lock()
        self._headers = {
            "content-type": "application/json", "accept-encoding": "identity",
            "user-agent": f"noldo/{__version__}",
            "x-goog-api-client": f"noldo/{__version__} python/{platform.python_version()}",
            "x-goog-user-project": project_path.removeprefix("projects/"),
        }

    def compute_pixels(self, body: bytes) -> bytes:
        """The answer to one request (raises :class:`Refusal`, or urllib3's errors when no answer came)."""
        return self._send("POST", self.endpoint, body)

    def list_assets(self, parent: str, params: dict[str, Any]) -> dict[str, Any]:
        """One page of ``listAssets`` of a collection (an asset id such as ``COPERNICUS/S2_HARMONIZED``), decoded
        by orjson (a third of the standard parser's CPU on a page; a torn page raises ``ValueError``)."""
        name = parent if parent.startswith("projects/") else f"projects/earthengine-public/assets/{parent}"
        query = urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
        return orjson.loads(self._send("GET", f"{self.url}/v1/{urllib.parse.quote(name)}:listAssets?{query}"))

    def _send(self, method: str, url: str, body: bytes | None = None) -> bytes:
        refused = None
        while True:
            token = self._token(refused)
            response = self.pool.request(method, url, body=body, preload_content=True, decode_content=False,
                                         headers={**self._headers, "authorization": f"Bearer {token}"})
            if response.status == 200:
                return response.data
            if response.status != 401 or refused is not None:
                raise refusal(response.status, response.data)
            refused = token

    def _token(self, refused: str | None) -> str:
        """A valid token: refreshed when it expired or the server refused it (once for all threads that saw it)."""
        credentials = self.credentials
        if refused is None and credentials.valid:
            return credentials.token
        with self._refresh_lock:
            if credentials.token == refused or not credentials.valid:
                import google.auth.transport.requests

                credentials.refresh(google.auth.transport.requests.Request())
            return credentials.token
