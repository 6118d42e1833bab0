"""API tokens: their shape, what the store keeps of them, and the in-memory book the API checks them in
(on a real SQLite store, with a fake clock for the reload rules)."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from vigil.alerting.auth import TokenBook, credentials, same_origin
from vigil.alerting.store import AlertStore
from vigil.alerting.tokens import GRANTS, ROLES, allows, digest, new_token, prefix_of

from vigil.secret import Secret


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AlertStore]:
    opened = AlertStore(tmp_path / "alerts.db")
    yield opened
    opened.close()


def test_a_token_is_random_prefixed_and_only_its_digest_is_stored(store: AlertStore, tmp_path: Path) -> None:
    token, row = store.create_token("alice", "operator", "test", 1.0)
    assert re.fullmatch(r"vgl_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", token)
    assert prefix_of(token) == row.prefix == token[:12]
    assert row.digest == hashlib.sha256(token.encode()).hexdigest()
    other, _ = store.create_token("alice", "operator", "test", 1.0)
    assert other != token and other[:12] != token[:12]
    raw = sqlite3.connect(tmp_path / "alerts.db").execute("SELECT * FROM api_tokens").fetchall()
    assert not any(token in str(value) or token[13:] in str(value) for row_ in raw for value in row_)


@pytest.mark.parametrize("bad", ["", "vgl_", "vgl_0123abcd", "vgl_0123ABCD_" + "a" * 43, "xyz_0123abcd_" + "a" * 43])
def test_malformed_tokens_have_no_prefix(bad: str) -> None:
    assert prefix_of(bad) is None


def test_roles_grant_what_the_issue_says() -> None:
    assert [r for r in ROLES if allows(r, "viewer")] == ["viewer", "operator", "admin"]
    assert [r for r in ROLES if allows(r, "operator")] == ["operator", "admin"]
    assert [r for r in ROLES if allows(r, "admin")] == ["admin"]
    assert [r for r in ROLES if allows(r, "intake")] == ["intake", "operator", "admin"]
    assert set(GRANTS) == {"viewer", "operator", "admin", "intake"}


def test_the_book_knows_active_tokens_and_refuses_a_wrong_secret(store: AlertStore) -> None:
    token, row = store.create_token("alice", "viewer", "test", 1.0)
    book = TokenBook(store.tokens)
    who = book.principal(token)
    assert who is not None and (who.name, who.role, who.prefix) == ("alice", "viewer", row.prefix)
    assert book.principal(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert book.principal("not a token") is None


def test_a_token_made_elsewhere_is_found_within_a_second_and_a_revoked_one_dropped_within_the_refresh(
    store: AlertStore,
) -> None:
    ticks = Ticks()
    book = TokenBook(store.tokens, refresh_s=5.0, clock=ticks)
    assert book.principal(new_token()[0]) is None  # loads once (empty)
    token, row = store.create_token("bob", "operator", "vigil tokens", 1.0)  # another process
    assert book.principal(token) is None  # unknown prefixes reload at most once a second
    ticks.now = 1.5
    assert book.principal(token) is not None
    store.revoke_token(row.prefix, "carol", 2.0)
    ticks.now = 6.0
    assert book.principal(token) is not None  # still in memory: another process revoked it
    ticks.now = 7.0
    assert book.principal(token) is None  # the refresh saw the revocation


def test_made_and_revoked_through_the_book_count_at_once(store: AlertStore) -> None:
    ticks = Ticks()
    book = TokenBook(store.tokens, AlertStore(store.db), clock=ticks)
    assert book.principal(new_token()[0]) is None
    token, row = book.create("dana", "admin", "alice", 1.0)
    assert book.principal(token) is not None
    assert book.revoke(row.prefix, "alice", 2.0)
    assert book.principal(token) is None
    assert not book.revoke(row.prefix, "alice", 3.0)  # already revoked
    stored = store.token(row.prefix)
    assert stored is not None and (stored.revoked_by, stored.revoked_at) == ("alice", 2.0)
    book.close()


def test_the_config_admin_token_needs_no_store(store: AlertStore) -> None:
    book = TokenBook(store.tokens, admin_token=Secret("s" * 32))
    who = book.principal("s" * 32)
    assert who is not None and (who.name, who.role, who.prefix) == ("admin", "admin", "config")
    assert book.principal("s" * 31) is None


def test_the_store_refuses_a_nameless_token_or_an_unknown_role(store: AlertStore) -> None:
    with pytest.raises(ValueError, match=r"^name: "):
        store.create_token("  ", "viewer", "test", 1.0)
    with pytest.raises(ValueError, match=r"^role: "):
        store.create_token("x", "root", "test", 1.0)  # type: ignore[arg-type]


def test_digest_is_sha256_hex() -> None:
    assert digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def scope(*headers: tuple[str, str], scheme: str = "http") -> dict[str, object]:
    return {"scheme": scheme, "headers": [(k.encode(), v.encode()) for k, v in headers]}


def test_the_bearer_header_wins_over_the_cookie() -> None:
    both = scope(("cookie", "a=1; vigil_token=fromcookie"), ("authorization", "Bearer fromheader"))
    assert credentials(both) == ("fromheader", False)
    assert credentials(scope(("cookie", "vigil_token=fromcookie; b=2"))) == ("fromcookie", True)
    assert credentials(scope(("authorization", "Basic dXNlcjpwdw=="))) == (None, False)


def test_same_origin_compares_scheme_and_host() -> None:
    host = ("host", "vigil.example:8080")
    assert same_origin(scope(host, ("origin", "http://vigil.example:8080")))
    assert not same_origin(scope(host, ("origin", "http://vigil.example:8080.evil")))
    assert not same_origin(scope(host, ("origin", "https://vigil.example:8080")))  # another scheme is another site
    assert same_origin(scope(host, ("referer", "http://vigil.example:8080/incidents/3")))
    assert not same_origin(scope(host, ("referer", "http://vigil.example:8080.evil/x")))
    assert not same_origin(scope(host))
