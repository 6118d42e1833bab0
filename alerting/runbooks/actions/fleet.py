"""Actions carried out by an executor outside the alerting process: the simulated fleet (``vigil up
--remediate``), or a node agent. Each is an ``ActionRequest`` on the actions topic (key: the host),
answered by an ``ActionReport`` on the action-reports topic; the request id is the step's idempotency
key, so the executor acts once however often a resumed run asks.

``fleet.drain``, ``fleet.resume``, ``fleet.requeue``, ``fleet.restart``, ``fleet.reset``,
``fleet.reboot``: bind the aliases to them (``node.drain: fleet.drain``). ``check`` asks the channel
whether a report for the key has arrived already; ``execute`` sends the request (again, when resumed)
and waits up to the step's timeout for its report.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from vigil.alerting.runbooks.actions.base import JOB, NODE, REASON, ActionResult, Params, params_schema, string

from vigil.events import ActionReport, ActionRequest

_SCHEMAS: dict[str, dict[str, Any]] = {
    "drain": params_schema({"node": NODE, "reason": REASON}, {"job": JOB}),
    "resume": params_schema({"node": NODE}, {"reason": REASON}),
    "requeue": params_schema({"node": NODE, "job": JOB}),
    "restart": params_schema({"node": NODE, "job": JOB}),
    "reset": params_schema({"node": NODE, "gpu_index": string("GPU index", pattern="^[0-9]+$")}),
    "reboot": params_schema({"node": NODE}, {"reason": REASON}),
}
_UNDO = {"drain": "fleet.resume"}


class Channel(Protocol):
    """Where requests go and reports come back (``bus_channel.BusChannel`` over the topics)."""

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
        self.target: str | None = "node"
        self.undo: str | None = _UNDO.get(verb)
        self._channel, self._clock, self.timeout = channel, clock, timeout

    def check(self, params: Params, idempotency_key: str) -> bool:
        report = self._channel.report(idempotency_key, 0.0)
        return report is not None and report.status in ("done", "already_done")

    def execute(self, params: Params, idempotency_key: str) -> ActionResult:
        run_id = idempotency_key.split("/", 1)[0]
        node = params["node"]
        request = ActionRequest(self._clock.now(), idempotency_key, self.name, node, dict(params), run_id)
        self._channel.send(request)
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
    """Requests to the actions topic; reports read from the action-reports topic by :meth:`run`."""

    def __init__(self, producer: Any, requests_topic: str) -> None:
        super().__init__()
        self._producer, self._topic = producer, requests_topic

    def send(self, request: ActionRequest) -> None:
        from vigil.codec import encode

        self._producer.send(self._topic, encode(request), key=request.target.encode())
        self._producer.flush()

    def run(self, bus: Any, reports_topic: str, group: str, stop: threading.Event) -> None:
        from vigil.codec import decode
        from vigil.errors import InvalidEvent

        consumer = bus.consumer([reports_topic], group)
        try:
            while not stop.is_set():
                for record in consumer.poll(0.5, 500):
                    try:
                        event = decode(record.value)
                    except InvalidEvent:
                        continue
                    if isinstance(event, ActionReport):
                        self.deliver(event)
                consumer.commit()
        finally:
            consumer.close()
