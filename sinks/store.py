"""Writes line protocol to InfluxDB or VictoriaMetrics through influxdb-client, one confirmed request at a time.

``api: v2`` posts to ``/api/v2/write`` with the library's ``WriteService``; ``api: v1`` posts the same
body to InfluxDB 1.x's ``/write?db=&rp=`` through the same client (same connection pool, auth header,
timeouts and retries). Each request gets a fresh ``WritesRetry`` (the library's exponential backoff
with jitter): one built once would carry its ``max_retry_time`` deadline from the moment it was made,
and stop retrying for good once the process had lived that long.

Outcomes: a 2xx is a confirmed write; 400, 413 and 422 are the data's fault (``StoreRejected``: the
caller finds the records at fault and dead-letters them); anything else after the retries, 401, 403
and 404 included (a token, bucket or database an operator must fix), is ``StoreUnavailable``: nothing
is dropped, the caller backs off and tries again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import urllib3
from influxdb_client import InfluxDBClient, WritePrecision, WriteService
from influxdb_client.client.write.retry import WritesRetry
from influxdb_client.rest import ApiException
from vigil.sinks.config import InfluxConfig

from vigil.errors import PermanentError, RetryableError
from vigil.secret import redact_url

log = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; charset=utf-8"
DATA_ERRORS = frozenset({400, 413, 422})


class StoreUnavailable(RetryableError):
    """The store did not confirm a write (down, overloaded, or refusing our credentials): try again."""


class StoreRejected(PermanentError):
    """The store refused the data itself (malformed line, field type conflict, too large)."""


class InfluxStore:
    def __init__(self, config: InfluxConfig, on_retry: Callable[[], None] = lambda: None) -> None:
        if config.url is None:
            raise ValueError("sink.influx.url is not set")
        self.config = config
        self.where = redact_url(config.url)
        self._on_retry = on_retry
        token, basic = None, False
        if config.username:
            token, basic = f"{config.username}:{config.password.reveal() if config.password else ''}", True
        elif config.token is not None:
            token = config.token.reveal()
        self._client = InfluxDBClient(
            url=config.url, token=token, auth_basic=basic, org=config.org, timeout=int(config.timeout * 1000)
        )
        self._writes = WriteService(self._client.api_client)

    def write(self, body: bytes, retry: bool = True) -> None:
        """Return once the store has confirmed every line of ``body``; raise StoreRejected or StoreUnavailable.

        ``retry=False``: one attempt (a service on its way out)."""
        started = time.monotonic()
        try:
            self._post(body, {"retries": self._retry() if retry else False})
        except ApiException as exc:
            status = int(exc.status or 0)
            message = _message(exc)
            if status in DATA_ERRORS:
                raise StoreRejected(f"{self.where} refused the data ({status}): {message}") from exc
            raise StoreUnavailable(f"{self.where} answered {status}: {message}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StoreUnavailable(f"{self.where} did not confirm the write: {exc}") from exc
        log.debug("wrote %d bytes to %s in %.3fs", len(body), self.where, time.monotonic() - started)

    def _post(self, body: bytes, urlopen_kw: dict[str, object]) -> None:
        cfg = self.config
        if cfg.api == "v2":
            self._writes.post_write(
                org=cfg.org,
                bucket=cfg.bucket,
                body=body,
                precision=WritePrecision.NS,
                content_type=CONTENT_TYPE,
                urlopen_kw=urlopen_kw,
            )
            return
        query = [("db", cfg.database), ("precision", "ns")]
        if cfg.retention_policy:
            query.append(("rp", cfg.retention_policy))
        self._client.api_client.call_api(
            "/write",
            "POST",
            {},
            query,
            {"Content-Type": CONTENT_TYPE},
            body=body,
            post_params=[],
            files={},
            response_type=None,
            auth_settings=[],
            async_req=False,
            _return_http_data_only=True,
            _preload_content=True,
            collection_formats={},
            urlopen_kw=urlopen_kw,
        )

    def _retry(self) -> WritesRetry:
        r = self.config.retry
        return WritesRetry(
            total=r.max_retries,
            retry_interval=r.initial,
            max_retry_delay=r.max_delay,
            exponential_base=r.exponential_base,
            max_retry_time=r.max_time,
            retry_callback=self._retried,
            allowed_methods=["POST"],
        )

    def _retried(self, exc: Exception) -> None:
        self._on_retry()

    def close(self) -> None:
        self._client.close()


def _message(exc: ApiException) -> str:
    body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else str(exc.body or exc.reason)
    return body.strip()[:500]
