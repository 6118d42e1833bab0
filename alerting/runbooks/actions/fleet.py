"""Actions carried out by an executor outside the alerting process: the simulated fleet (``vigil up
--remediate``), or a node agent. Each is an ``ActionRequest`` on the actions topic (key: the host),
answered by an ``ActionReport`` on the action-reports topic; the request id is the step's idempotency
key, so the executor acts once however often a resumed run asks.

``fleet.drain``, ``fleet.resume``, ``fleet.requeue``, ``fleet.restart``, ``fleet.checkpoint``,
``fleet.reset``, ``fleet.reboot``: bind the aliases to them (``node.drain: fleet.drain``); what the
simulated fleet does for each is in ``vigil.collectors.sim.control``. ``check`` asks the channel
whether a report for the key has arrived already; ``execute`` sends the request (again, when resumed)
and waits up to the step's timeout for its report.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from vigil.alerting.runbooks.actions.base import JOB, NODE, REASON, ActionResult, Params, params_schema, string

from vigil.bus.base import Bus, DeadLetters, Producer, Record
from vigil.codec import decode, encode
from vigil.errors import InvalidEvent, RetryableError, UnexpectedEvent, VigilError
from vigil.events import ActionReport, ActionRequest

log = logging.getLogger(__name__)
RETRY_S = 1.0  # the report reader's wait after the broker failed it

_SCHEMAS: dict[str, dict[str, Any]] = {
    "drain": params_schema({"node": NODE, "reason": REASON}, {"job": JOB}),
    "resume": params_schema({"node": NODE}, {"reason": REASON}),
    # what runs on the node (as slurm.requeue); ``job`` narrows it to one job
    "requeue": params_schema({"node": NODE}, {"job": JOB}),
    "restart": params_schema({"node": NODE, "job": JOB}),
    "checkpoint": params_schema({"job": JOB}, {"node": NODE}),
    "reset": params_schema({"node": NODE, "gpu_index": string("GPU index", pattern="^[0-9]+$")}),
    "reboot": params_schema({"node": NODE}, {"reason": REASON}),
}
_UNDO = {"drain": "fleet.resume"}


class Channel(Protocol):
    """Where requests go and reports come back (:class:`BusChannel` over the topics)."""

    def send(self, request: ActionRequest) -> None: ...

    def report(self, request_id: str, timeout: float) -> ActionReport | None:
        """The report for ``request_id``, waiting up to ``timeout`` seconds (0: only if already here)."""
        ...


class FleetAction:
    def __init__(self, verb: str, channel: Channel, clock: Any, timeout: float = 60.0) -> None:
        self.verb = verb
        self.name = f"fleet.{verb}"
        self.schema = _SCHEMAS[verb]
        self.destructive = verb == "reboot"
        self.target: str | None = None if verb == "checkpoint" else "node"  # a checkpoint changes no node
        self.undo: str | None = _UNDO.get(verb)
        self._channel, self._clock, self.timeout = channel, clock, timeout

    def check(self, params: Params, idempotency_key: str) -> bool:
        report = self._channel.report(idempotency_key, 0.0)
        return report is not None and report.status in ("done", "already_done")

    def execute(self, params: Params, idempotency_key: str) -> ActionResult:
        run_id = idempotency_key.split("/", 1)[0]
        target = str(params.get("node") or params.get("job"))
        request = ActionRequest(self._clock.now(), idempotency_key, self.name, target, dict(params), run_id)
        try:
            self._channel.send(request)
        except VigilError as exc:  # the broker away: the executor retries with backoff
            return ActionResult.failed(f"request not sent: {exc}", retryable=True)
        report = self._channel.report(idempotency_key, self.timeout)
        if report is None:
            return ActionResult.failed(f"no report from the fleet within {self.timeout:g}s", retryable=True)
        if report.status in ("done", "already_done"):
            return ActionResult.done(report.detail or report.status, **dict(report.state))
        return ActionResult.failed(report.detail or report.status, retryable=report.status == "failed")

    def verify(self, params: Params) -> ActionResult:
        return ActionResult.done("reported")


class MemoryChannel:
    """Reports kept in memory, filled by whoever reads the action-reports topic (or a test)."""

    def __init__(self) -> None:
        self.sent: list[ActionRequest] = []
        self._reports: dict[str, ActionReport] = {}
        self._arrived = threading.Condition()

    def send(self, request: ActionRequest) -> None:
        self.sent.append(request)

    def deliver(self, report: ActionReport) -> None:
        with self._arrived:
            self._reports.setdefault(report.request_id, report)
            self._arrived.notify_all()

    def report(self, request_id: str, timeout: float) -> ActionReport | None:
        with self._arrived:
            self._arrived.wait_for(lambda: request_id in self._reports, timeout=timeout)
            return self._reports.get(request_id)


def fleet_actions(channel: Channel, clock: Any, timeout: float) -> list[FleetAction]:
    return [FleetAction(verb, channel, clock, timeout) for verb in _SCHEMAS]


class BusChannel(MemoryChannel):
    """Requests to the actions topic; reports read from the action-reports topic by :meth:`run`.

    ``producer`` is called for each send, so a producer that the alerting service renewed after a
    broker outage is the one used. A report record that is not a valid ``ActionReport`` is
    dead-lettered with its reason; one that arrives twice keeps its first outcome."""

    def __init__(self, producer: Callable[[], Producer], requests_topic: str) -> None:
        super().__init__()
        self._producer, self._topic = producer, requests_topic
        self.rejected = 0

    def send(self, request: ActionRequest) -> None:
        producer = self._producer()
        producer.send(self._topic, encode(request), key=request.target.encode())
        producer.flush()
        self.sent.append(request)

    def run(self, bus: Bus, reports_topic: str, group: str, stop: threading.Event) -> None:
        """Read reports until ``stop``; a broker failure is logged, waited out and the consumer rebuilt."""
        while not stop.is_set():
            try:
                consumer = bus.consumer([reports_topic], group)
            except VigilError as exc:
                log.warning("remediation: cannot read %s yet: %s", reports_topic, exc)
                stop.wait(RETRY_S)
                continue
            try:
                self._read(consumer, stop)
            except RetryableError as exc:
                log.warning("remediation: reading %s failed, retrying: %s", reports_topic, exc)
                stop.wait(RETRY_S)
            finally:
                consumer.close()

    def _read(self, consumer: Any, stop: threading.Event) -> None:
        while not stop.is_set():
            records = consumer.poll(0.5, 500)
            if not records:
                continue
            if not all([self._take(record) for record in records]):
                self._producer().flush()  # the dead letters are on the broker before their offsets commit
            consumer.commit()

    def _take(self, record: Record) -> bool:
        """Deliver one report; False when the record was dead-lettered instead."""
        try:
            event = decode(record.value)
            if not isinstance(event, ActionReport):
                raise UnexpectedEvent(f"{type(event).__name__} on the action-reports topic")
        except InvalidEvent as exc:
            self.rejected += 1
            log.warning("remediation: dead-lettering a bad action report (%d so far): %s", self.rejected, exc)
            DeadLetters(self._producer()).send(record, exc.reason, str(exc))
            return False
        self.deliver(event)
        return True
