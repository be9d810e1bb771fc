"""A real S3 implementation on 127.0.0.1 for tests and benchmarks: moto's server, in a thread.

This is moto's own S3 (create-only and ``If-Match`` puts and deletes, ``ChecksumSHA256``,
multipart uploads, paginated listings), not a mock of our code; :class:`S3Server` only adds an
optional latency per request, to measure how reads hide it.

Example:
    >>> with S3Server() as s3:  # doctest: +SKIP
    ...     s3.create_bucket("noldo-test")
    ...     env = s3.environment()   # AWS_ENDPOINT_URL and dummy credentials for a subprocess

Or in its own process: ``python -m noldo.testing.s3 --latency 0.02 --bucket noldo-test`` prints the endpoint.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise

#: A recognisable dummy secret: tests check it never reaches a store, a log or a summary.
DUMMY_SECRET = "noldoTESTsecret0123456789abcdefghijklmnopq"


class S3Server:
    """moto's S3 server on a free loopback port; ``latency`` seconds are added to every request."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.requests = 0
        app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server("127.0.0.1", 0, self._delayed(app), threaded=True,
                                   request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="s3-server", daemon=True)

    def _delayed(self, app: Any) -> Any:
        def serve(environ: dict, start_response: Any) -> Any:
            self.requests += 1
            if self.latency:
                time.sleep(self.latency)
            return app(environ, start_response)

        return serve

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def environment(self) -> dict[str, str]:
        """What a client needs to reach this server the standard way (dummy credentials)."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "noldo-test-key",
                "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET, "AWS_REGION": "us-east-1"}

    def client(self) -> Any:
        import boto3

        env = self.environment()
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=env["AWS_REGION"],
                            aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=DUMMY_SECRET)

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def start(self) -> S3Server:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    """``python -m noldo.testing.s3 [--latency SECONDS]``: serve until interrupted; prints the endpoint."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument("--bucket", action="append", default=[], help="a bucket to create (repeatable)")
    args = parser.parse_args()
    with S3Server(args.latency) as server:
        for bucket in args.bucket:
            server.create_bucket(bucket)
        print(server.endpoint, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
