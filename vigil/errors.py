"""One error hierarchy for the whole platform."""

from __future__ import annotations


class VigilError(Exception):
    """Root of every error Vigil raises on purpose."""


class ConfigError(VigilError):
    """Configuration is invalid; the message names the key path."""


class InvalidEvent(VigilError):
    """Bytes on a topic could not be decoded into an event; the record goes to the dead-letter topic
    with ``reason`` in its headers."""

    reason = "invalid_event"


class UnexpectedEvent(InvalidEvent):
    """A valid event on a topic that does not carry its type."""

    reason = "unexpected_type"


class RetryableError(VigilError):
    """A transient failure (broker away, HTTP 5xx or 429): try again later."""


class PermanentError(VigilError):
    """A failure that retrying cannot fix (HTTP 400, a rejected payload)."""
