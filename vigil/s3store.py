"""The embedded broker's durable storage: ``localbucket`` (a file-backed S3 server) that checks who asks.

localbucket stores buckets as folders and, by design, checks no credentials: any process that can
reach its port could read or rewrite every record the broker holds. Run as
``python -m vigil.s3store DATA_ROOT --port P --credentials FILE``, it serves the same folders but
answers only requests signed (AWS Signature Version 4, as Tansu's S3 client signs every request)
with the access key and secret in FILE, which ``vigil.broker`` generates per data folder (0600).
Anything else gets 403 and one warning line.

Only the signature over the request line and signed headers is checked, not the body against its
``x-amz-content-sha256``: the threat is another local user who can connect to the port, not someone
rewriting loopback traffic in flight (that needs root, who can read the data folder anyway).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import re
import sys
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import localbucket

log = logging.getLogger("vigil.s3store")
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<scope>[^,]+), ?SignedHeaders=(?P<signed>[^,]+), ?"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)


def signature_matches(handler: Any, access_key: str, secret_key: str) -> bool:
    """Whether the request in ``handler`` carries a valid SigV4 signature made with these credentials."""
    match = _AUTH.match(handler.headers.get("Authorization", ""))
    if match is None or not hmac.compare_digest(match["key"], access_key):
        return False
    scope = match["scope"]  # date/region/service/aws4_request
    parts = scope.split("/")
    if len(parts) != 4 or parts[3] != "aws4_request":
        return False
    signed = match["signed"].split(";")
    url = urlsplit(handler.path)
    canonical = "\n".join(
        [
            handler.command,
            quote(unquote(url.path), safe="/-_.~"),
            _canonical_query(url.query),
            "".join(f"{name}:{' '.join((handler.headers.get(name) or '').split())}\n" for name in signed),
            match["signed"],
            handler.headers.get("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        ]
    )
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            handler.headers.get("x-amz-date", ""),
            scope,
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    key = f"AWS4{secret_key}".encode()
    for part in parts:
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, match["signature"])


def _canonical_query(query: str) -> str:
    pairs = []
    for part in query.split("&") if query else []:
        name, _, value = part.partition("=")
        pairs.append((quote(unquote(name), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def handler_class(access_key: str, secret_key: str) -> type[localbucket.S3Handler]:
    class SignedOnly(localbucket.S3Handler):  # type: ignore[misc]
        def _dispatch(self, action: Any) -> None:
            if signature_matches(self, access_key, secret_key):
                super()._dispatch(action)
                return
            log.warning(
                "refused %s %s from %s: not signed with this store's key",
                self.command,
                self.path,
                self.client_address[0],
            )
            self._send_error(
                localbucket.S3Error(
                    HTTPStatus.FORBIDDEN, "SignatureDoesNotMatch", "request not signed with this store's key"
                )
            )

        def log_message(self, format: str, *args: Any) -> None:
            return  # one line per request would be most of the broker's disk writes

    return SignedOnly


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m vigil.s3store", description=__doc__.splitlines()[0])
    parser.add_argument("data_root", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--credentials", type=Path, required=True, help="JSON {access_key, secret_key}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    credentials = json.loads(args.credentials.read_text())
    localbucket.S3Handler.data_root = args.data_root.resolve()
    server = ThreadingHTTPServer(
        (args.host, args.port), handler_class(credentials["access_key"], credentials["secret_key"])
    )
    log.info("serving %s on http://%s:%d (signed requests only)", args.data_root, args.host, args.port)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
