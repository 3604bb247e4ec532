"""Loads the Avro schemas in ``schemas/`` once and looks them up by CloudEvents type.

A schema file is named after the CloudEvents type of the records it describes,
``<family>.v<version>.avsc`` (``saga.command.start.v1.avsc``). Every published
version stays in the folder forever: records are written with the newest version of
their family and read with it too, resolving from whichever version wrote them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from orchestrator.serde.errors import DecodeFailure, RecordDecodeError, SchemaError

SCHEMA_DIR_ENV = "SAGA_SCHEMA_DIR"
"""Environment variable that overrides where schemas are loaded from."""

_CE_TYPE = re.compile(
    r"^(?P<family>[a-z][a-z0-9-]*(?:\.[a-z][a-z0-9-]*)+)\.v(?P<version>[1-9][0-9]{0,5})$"
)


def parse_ce_type(ce_type: str) -> tuple[str, int] | None:
    """Split ``saga.command.start.v1`` into ``("saga.command.start", 1)``; None if malformed."""
    match = _CE_TYPE.match(ce_type)
    if match is None:
        return None
    return match["family"], int(match["version"])


def default_schema_dir() -> Path:
    """``$SAGA_SCHEMA_DIR`` if set, else the schemas shipped with the package.

    ``orchestrator/serde/schemas`` is a symlink to the repository's ``schemas/`` (so an
    editable install reads them in place) and is copied into wheels as package data.
    """
    override = os.environ.get(SCHEMA_DIR_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parent / "schemas"


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One parsed schema file: the exact writer schema of one CloudEvents type."""

    ce_type: str
    family: str
    version: int
    name: str
    parsed: Any
    fingerprint: str
    path: Path


def _load(path: Path) -> SchemaVersion:
    parts = parse_ce_type(path.name.removesuffix(".avsc"))
    if parts is None:
        raise SchemaError(f"{path.name}: file name is not '<family>.v<version>.avsc'")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        # A fresh name table per file: every file is self-contained by rule.
        parsed: Any = fastavro.parse_schema(raw, named_schemas={})
    except (OSError, ValueError, fastavro.schema.SchemaParseException) as exc:
        raise SchemaError(f"{path.name}: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("type") != "record":
        raise SchemaError(f"{path.name}: top-level schema must be a record")
    canonical = to_parsing_canonical_form(parsed)
    return SchemaVersion(
        ce_type=path.name.removesuffix(".avsc"),
        family=parts[0],
        version=parts[1],
        name=str(parsed["name"]),
        parsed=parsed,
        fingerprint=str(fingerprint(canonical, "CRC-64-AVRO")),
        path=path,
    )


class SchemaRegistry:
    """All schema versions of a folder, indexed by CloudEvents type and family.

    ``write_versions`` pins the version written for a family (for example while a
    rolling upgrade still runs readers that only know the older one); by default the
    newest is written. Immutable after construction and safe to share across threads.
    """

    def __init__(
        self, directory: Path | None = None, write_versions: Mapping[str, int] | None = None
    ) -> None:
        self.directory = directory if directory is not None else default_schema_dir()
        if not self.directory.is_dir():
            raise SchemaError(
                f"schema folder {self.directory} not found; set ${SCHEMA_DIR_ENV} to the "
                "repository's schemas/ folder"
            )
        self._by_type: dict[str, SchemaVersion] = {}
        families: dict[str, dict[int, SchemaVersion]] = {}
        for path in sorted(self.directory.glob("*.avsc")):
            schema = _load(path)
            self._by_type[schema.ce_type] = schema
            families.setdefault(schema.family, {})[schema.version] = schema
        self._families = {family: dict(sorted(v.items())) for family, v in families.items()}
        for family, versions in self._families.items():
            names = {s.name for s in versions.values()}
            if len(names) != 1:
                raise SchemaError(f"{family}: record renamed across versions {sorted(names)}")
        self._writers: dict[str, SchemaVersion] = {}
        pins = dict(write_versions or {})
        for family, versions in self._families.items():
            version = pins.pop(family, max(versions))
            if version not in versions:
                raise SchemaError(f"{family}: cannot pin unknown version {version}")
            self._writers[family] = versions[version]
        if pins:
            raise SchemaError(f"cannot pin unknown schema families {sorted(pins)}")

    def __iter__(self) -> Iterator[SchemaVersion]:
        return iter(self._by_type.values())

    def families(self) -> list[str]:
        """Every schema family, sorted."""
        return sorted(self._families)

    def versions(self, family: str) -> list[SchemaVersion]:
        """Every version of ``family``, oldest first."""
        return list(self._family(family).values())

    def writer(self, family: str) -> SchemaVersion:
        """The version new records of ``family`` are written with."""
        self._family(family)
        return self._writers[family]

    def reader(self, family: str) -> SchemaVersion:
        """The newest version of ``family``: every record is resolved to it."""
        versions = self._family(family)
        return versions[next(reversed(versions))]

    def lookup(self, ce_type: str) -> SchemaVersion:
        """The writer schema named by a record's ``ce_type``; :class:`RecordDecodeError` if none."""
        schema = self._by_type.get(ce_type)
        if schema is not None:
            return schema
        parts = parse_ce_type(ce_type)
        if parts is not None and parts[0] in self._families:
            known = ", ".join(f"v{v}" for v in self._families[parts[0]])
            raise RecordDecodeError(
                DecodeFailure.UNSUPPORTED_VERSION,
                f"schema version v{parts[1]} of {parts[0]} is not known here (known: {known}); "
                "upgrade this reader",
                ce_type,
            )
        raise RecordDecodeError(
            DecodeFailure.UNKNOWN_TYPE, f"no schema for ce_type {ce_type!r}", ce_type
        )

    def _family(self, family: str) -> dict[int, SchemaVersion]:
        try:
            return self._families[family]
        except KeyError:
            raise SchemaError(f"no schema family {family!r} in {self.directory}") from None
