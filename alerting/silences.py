"""Silences: create, expire, list (expired ones are kept for audit), and the muter they form.

A silence mutes the alerts its matchers select from ``starts_at`` until ``ends_at``. As in
Alertmanager it needs at least one matcher that an empty label does not satisfy, so no silence can
mute every alert by accident. Expiring one ends it now and records who did.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from vigil.alerting.matchers import Matcher, matches_all
from vigil.alerting.model import Silence
from vigil.alerting.pipeline.base import Mute
from vigil.alerting.store import AlertStore

from vigil.errors import VigilError


class SilenceError(VigilError, ValueError):
    """A silence that cannot be made; the message says which field is wrong."""


def new_silence(
    matchers: Sequence[Matcher], starts_at: float, ends_at: float, created_by: str, comment: str, now: float
) -> Silence:
    if not matchers:
        raise SilenceError("matchers: a silence needs at least one matcher")
    if all(m.matches({}) for m in matchers):
        raise SilenceError("matchers: at least one matcher must not match an empty label (it would mute everything)")
    if ends_at <= starts_at:
        raise SilenceError("ends_at: must be after starts_at")
    if ends_at <= now:
        raise SilenceError("ends_at: must be in the future")
    if not created_by.strip():
        raise SilenceError("created_by: who silences must be named")
    return Silence(uuid.uuid4().hex, tuple(matchers), max(starts_at, 0.0), ends_at, created_by, comment, now, now)


def create_silence(store: AlertStore, silence: Silence) -> Silence:
    store.save_silence(silence)
    return silence


class Silencer:
    """The silences running at the batch's time, as a :class:`~vigil.alerting.pipeline.base.Muter`."""

    def __init__(self, silences: Sequence[Silence]) -> None:
        self._silences = list(silences)

    def mutes(self, fingerprint: str, labels: Mapping[str, str], now: float) -> Mute | None:
        for silence in self._silences:
            if silence.state(now) == "active" and matches_all(silence.matchers, labels):
                return Mute("silence", silence.id, silence.comment or f"silenced by {silence.created_by}")
        return None
