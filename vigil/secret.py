"""Secrets in config: given inline, from a file or from the environment; never written or logged in clear.

```yaml
secret: "s3cret"                          # inline (fine for a demo)
secret: {file: /run/secrets/hook}         # the file's content, a trailing newline removed
secret: {env: VIGIL_HOOK_SECRET}          # an environment variable
```

A :class:`Secret` holds the value in a pydantic ``SecretStr`` and remembers where it came from.
``str``/``repr`` show ``**********``, so a config model in a log line or an error never shows one.
Dumped to JSON (a config file written to disk) a secret is written as its reference
(``{file: ...}``, ``{env: ...}``); an inline one is written as ``**********`` unless the dump is
given a folder (:data:`SECRETS_DIR` in the serialization context), in which case it goes into its
own 0600 file there and the config refers to that file. Loading ``**********`` back is an error,
never a signing key. Dumped in Python mode a model keeps the :class:`Secret` objects as they are.
"""

from __future__ import annotations

import os
import secrets as token
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler, SecretStr
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from vigil.files import write_private

REDACTED = "**********"
SECRETS_DIR = "secrets_dir"  # serialization context key: where inline secrets are written
_FORMS = "a string, {file: PATH} or {env: NAME}"


class Secret:
    """A secret config value: ``reveal()`` gives it; everything else shows ``**********``."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str = "inline") -> None:
        self._value = SecretStr(value)
        self.source = source  # "inline", "file:<absolute path>" or "env:<NAME>"

    def reveal(self) -> str:
        return self._value.get_secret_value()

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r}, source={self.source!r})"

    def __str__(self) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and (self.source, self.reveal()) == (other.source, other.reveal())

    def __hash__(self) -> int:
        return hash((self.source, self.reveal()))

    @classmethod
    def parse(cls, value: Any) -> Secret:
        """The secret a config value names; ValueError (pydantic adds the key path) if it cannot."""
        if isinstance(value, Secret):
            return value
        if isinstance(value, str):
            if value == REDACTED:
                raise ValueError(f"this secret was redacted when the config was written; give it as {_FORMS}")
            return cls(_non_empty(value, "the secret"), "inline")
        if isinstance(value, dict) and len(value) == 1:
            ((kind, ref),) = value.items()
            if kind == "file" and isinstance(ref, str) and ref:
                return _from_file(Path(ref).expanduser().absolute())
            if kind == "env" and isinstance(ref, str) and ref:
                found = os.environ.get(ref)
                if found is None:
                    raise ValueError(f"environment variable {ref} is not set")
                return cls(_non_empty(found, f"environment variable {ref}"), f"env:{ref}")
        raise ValueError(f"a secret is {_FORMS}")

    def dump(self, secrets_dir: Path | None) -> Any:
        """What a config file holds for this secret: a reference, never the value in clear."""
        kind, _, ref = self.source.partition(":")
        if kind in ("file", "env"):
            return {kind: ref}
        if secrets_dir is None:
            return REDACTED
        path = write_private(secrets_dir / token.token_hex(8), self.reveal())
        return {"file": str(path.absolute())}

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls.parse,
            serialization=core_schema.plain_serializer_function_ser_schema(_serialize, info_arg=True, when_used="json"),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        ref = {"type": "string", "minLength": 1}
        return {
            "anyOf": [
                ref,
                {"type": "object", "properties": {"file": ref}, "required": ["file"], "additionalProperties": False},
                {"type": "object", "properties": {"env": ref}, "required": ["env"], "additionalProperties": False},
            ]
        }


def redact_url(url: str) -> str:
    """``https://hooks.example.com/…``: scheme and host only. A webhook URL often carries its token
    in the path (Slack) or the query string, so neither is ever logged or stored."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable URL>"
    rest = "/…" if (parts.path not in ("", "/") or parts.query or parts.fragment) else ""
    return f"{parts.scheme}://{host}{port}{rest}"


def _serialize(value: Secret, info: core_schema.SerializationInfo) -> Any:
    context = info.context if isinstance(info.context, dict) else {}
    folder = context.get(SECRETS_DIR)
    return value.dump(Path(folder) if folder is not None else None)


def _from_file(path: Path) -> Secret:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from exc
    return Secret(_non_empty(text.rstrip("\r\n"), f"secret file {path}"), f"file:{path}")


def _non_empty(value: str, what: str) -> str:
    if not value:
        raise ValueError(f"{what} is empty")
    return value
