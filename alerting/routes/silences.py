"""``/api/v1/silences``: list (expired ones kept, for audit), create from Alertmanager-style matchers,
expire early (recorded with who did). The next batch and every flush honour a change at once."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator
from vigil.alerting.matchers import Matcher, parse_matchers
from vigil.alerting.model import Silence
from vigil.alerting.routes.context import ApiDeps, Operator, Viewer, not_found, refuse, silence_json
from vigil.alerting.silences import SilenceError

from vigil.config import PositiveDuration

SILENCES_PATH = "/api/v1/silences"
SilenceState = Literal["pending", "active", "expired"]


class SilenceBody(BaseModel):
    """A new silence: ``matchers`` as Alertmanager writes them (``'host=~"node-0[1-4]"'``), from
    ``starts_at`` (default now) until ``ends_at`` or for ``duration`` (``"2h"``; one of the two)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    matchers: Annotated[list[Annotated[str, Field(max_length=2000)]], Field(min_length=1, max_length=50)]
    comment: Annotated[str, Field(min_length=1, max_length=2000, pattern=r"\S")]
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    duration: PositiveDuration | None = None

    @field_validator("matchers")
    @classmethod
    def _parse(cls, value: list[str]) -> list[str]:
        parse_matchers(value)  # a ValueError here is a 422 naming ``matchers``
        return value

    @model_validator(mode="after")
    def _one_end(self) -> SilenceBody:
        if (self.ends_at is None) == (self.duration is None):
            raise ValueError("give either ends_at or duration")
        return self

    def parsed(self) -> tuple[Matcher, ...]:
        return parse_matchers(self.matchers)

    def window(self, now: float) -> tuple[float, float]:
        starts = self.starts_at.timestamp() if self.starts_at is not None else now
        ends = self.ends_at.timestamp() if self.ends_at is not None else starts + float(self.duration or 0.0)
        return starts, ends


def create_silence(deps: ApiDeps, body: SilenceBody, actor: str) -> Silence:
    starts, ends = body.window(deps.engine.clock.now())
    try:
        return deps.engine.silence(body.parsed(), starts, ends, actor, body.comment.strip())
    except SilenceError as exc:
        refuse(str(exc), 422)


def expire_silence(deps: ApiDeps, silence_id: str, actor: str) -> Silence:
    if deps.reader.silence(silence_id) is None:
        not_found(f"silence {silence_id}")
    if not deps.engine.expire_silence(silence_id, actor):
        refuse(f"silence {silence_id} has already ended")
    found = deps.reader.silence(silence_id)
    if found is None:
        not_found(f"silence {silence_id}")
    return found


def add_silence_routes(app: FastAPI, deps: ApiDeps) -> None:
    """On the app itself, not an APIRouter: the role check reads the app's own routes."""
    reader, clock = deps.reader, deps.engine.clock

    @app.get(SILENCES_PATH, tags=["silences"])
    def list_silences(
        _: Viewer, state: Annotated[list[SilenceState] | None, Query(description="repeat for several")] = None
    ) -> dict[str, Any]:
        """Every silence, newest first (expired ones too, with ``expired_by`` when ended early)."""
        now = clock.now()
        found = [s for s in reader.silences() if not state or s.state(now) in state]
        return {"silences": [silence_json(s, now) for s in found]}

    @app.get(SILENCES_PATH + "/{silence_id}", tags=["silences"])
    def get_silence(_: Viewer, silence_id: str) -> dict[str, Any]:
        found = reader.silence(silence_id)
        if found is None:
            not_found(f"silence {silence_id}")
        return {"silence": silence_json(found, clock.now())}

    @app.post(SILENCES_PATH, status_code=201, tags=["silences"])
    def create(who: Operator, body: SilenceBody) -> dict[str, Any]:
        """Mute the alerts the matchers select; at least one matcher must not match an empty label."""
        return {"silence": silence_json(create_silence(deps, body, who.name), clock.now())}

    @app.post(SILENCES_PATH + "/{silence_id}/expire", tags=["silences"])
    def expire(who: Operator, silence_id: str) -> dict[str, Any]:
        """End a silence now; it is kept, marked with who ended it."""
        return {"silence": silence_json(expire_silence(deps, silence_id, who.name), clock.now())}
