"""Where a use case's training rows come from: files, their format, and how several join."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeyTransform(_Strict):
    """How a key column's values are rewritten before keys are matched."""

    strip_prefix: str | None = None
    """Remove this text at the start of each key (``E_`` in ``E_12``)."""
    strip_suffix: str | None = None
    strip_leading_zeros: bool = False
    """``000012`` is the key ``12``."""
    lowercase: bool = False


class JoinedFile(_Strict):
    """A file joined to the main rows on a key."""

    file: str
    """The CSV file (optionally .gz), relative to the data folder."""
    key: str
    """Its key column, matched with ``data.key`` of the main files."""
    transform: KeyTransform = KeyTransform()
    """Rewrites this file's keys before matching."""
    main_transform: KeyTransform = KeyTransform()
    """Rewrites the main files' keys before matching this file."""
    separator: str | None = None
    """Its separator (default: ``data.separator``)."""
    required: bool = True
    """True: rows without a match in this file are left out (inner join), and counted.
    False: they are kept with this file's columns empty (left join)."""


class DataSource(_Strict):
    """Where the seed data comes from."""

    files: list[str] = Field(min_length=1)
    """CSV files (optionally .gz), relative to ``dir``; several are concatenated."""
    dir: str | None = None
    """Folder of the files (default: the use case's folder);
    ``TABOPS_DATA_DIRS__<NAME>`` overrides it."""
    separator: str = ","
    encoding: str = "utf-8"
    """Text encoding of the files (``utf-8`` also reads a byte-order mark)."""
    decimal: Literal[".", ","] = "."
    """Decimal mark of numbers (``1,5`` with ``,``)."""
    missing_values: list[str] = []
    """Cell values read as missing, beyond the empty cell and pandas' usual markers
    (``NA``, ``N/A``, ``null``, ...): for example ``?`` or ``-``."""
    key: str | None = None
    """The column of ``files`` that ``join`` tables are matched on."""
    join: list[JoinedFile] = []
    """Further files whose columns are added to each row by key (one row per key)."""
    download: str | None = None
    """Where a user gets the files when they are not shipped."""
    provenance: str = ""

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        import codecs

        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(
                f"unknown encoding '{v}' (for example utf-8, latin-1, cp1252)"
            ) from None
        return v

    @model_validator(mode="after")
    def _join_has_key(self) -> DataSource:
        if self.join and self.key is None:
            raise ValueError("'join' needs 'key', the column of the main files to match on")
        return self
