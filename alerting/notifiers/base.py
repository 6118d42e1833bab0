"""What every notifier promises: one ``send`` that says whether the failure, if any, is worth retrying."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

Outcome = Literal["delivered", "retryable", "permanent"]


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    outcome: Outcome
    reason: str = ""
    retry_after: float | None = None  # seconds the receiver asked us to wait (HTTP Retry-After)

    @classmethod
    def delivered(cls) -> DeliveryResult:
        return cls("delivered")

    @classmethod
    def retryable(cls, reason: str, retry_after: float | None = None) -> DeliveryResult:
        return cls("retryable", reason, retry_after)

    @classmethod
    def permanent(cls, reason: str) -> DeliveryResult:
        return cls("permanent", reason)


class Notifier(Protocol):
    """Sends one notification. Never raises for a delivery failure: it returns a result instead,
    because only the retry stage decides what happens next."""

    def send(self, payload: dict[str, Any]) -> DeliveryResult: ...

    def close(self) -> None: ...
