"""API tokens and roles: what a caller may do, and how a token is made, stored and checked.

A token is ``vgl_`` + 8 hex characters (its *prefix*: public, stored in clear, how a token is found,
listed and revoked) + ``_`` + 43 characters of ``secrets.token_urlsafe(32)`` (256 random bits). It is
shown once, when it is made; the store keeps only its SHA-256. A plain hash rather than a slow KDF
(bcrypt, scrypt) or an HMAC with a server key: a KDF slows the guessing of *low-entropy* secrets such
as passwords, and 256 random bits cannot be guessed however fast the hash, while a KDF would cost
every API request tens of milliseconds. An HMAC key would only matter if an attacker could read the
table but not the key, and it would be one more secret every replica and ``vigil tokens create``
must share. Digests are compared with ``hmac.compare_digest`` (constant time).

Roles, each allowed what the one before it is:

- ``viewer``: read incidents, alerts, silences, receivers and approvals;
- ``operator``: acknowledge, assign, note, resolve and reopen incidents, create and expire silences,
  approve or deny remediation steps, and post to the Alertmanager intake;
- ``admin``: read the effective config, create, list and revoke tokens.

``intake`` stands apart: a machine token that may only post to the Alertmanager intake (give one to
Alertmanager, not an operator's).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Literal, get_args

Role = Literal["intake", "viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
# What a route may require, and the roles that satisfy it.
Need = Literal["viewer", "operator", "admin", "intake"]
GRANTS: dict[Need, frozenset[Role]] = {
    "viewer": frozenset({"viewer", "operator", "admin"}),
    "operator": frozenset({"operator", "admin"}),
    "admin": frozenset({"admin"}),
    "intake": frozenset({"intake", "operator", "admin"}),
}
PREFIX_LENGTH = 12  # "vgl_" + 8 hex characters
_TOKEN = re.compile(r"^vgl_[0-9a-f]{8}_[A-Za-z0-9_-]{43}$")
CONFIG_ADMIN = "admin"  # the actor of the token in alerting.api.admin_token


def new_token() -> tuple[str, str]:
    """A fresh token and its prefix."""
    prefix = "vgl_" + secrets.token_hex(4)
    return f"{prefix}_{secrets.token_urlsafe(32)}", prefix


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def prefix_of(token: str) -> str | None:
    """The prefix of a well-formed token, None for anything else (never looked up)."""
    return token[:PREFIX_LENGTH] if _TOKEN.match(token) else None


def same_digest(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def allows(role: Role, need: Need) -> bool:
    return role in GRANTS[need]


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A stored token: everything but the token itself."""

    prefix: str
    name: str
    role: Role
    digest: str
    created_at: float
    created_by: str
    revoked_at: float | None = None
    revoked_by: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_json(self) -> dict[str, object]:
        return {
            "prefix": self.prefix,
            "name": self.name,
            "role": self.role,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "revoked_at": self.revoked_at,
            "revoked_by": self.revoked_by,
        }


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's name (the actor every write is recorded under) and role."""

    name: str
    role: Role
    prefix: str  # "config" for alerting.api.admin_token
