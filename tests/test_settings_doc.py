"""The settings reference table: one row per setting, nested models flattened, defaults as typed."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline import settings_doc
from pipeline.docblocks import wrap
from pipeline.settings import Settings


class _Geo(BaseModel):
    database: Path | None = Field(None, description="The .mmdb | file.")
    cache: int = Field(
        50, validation_alias=AliasChoices("x_geo_cache", "x_ip_cache_size"), description="Entries."
    )


class _Enrich(BaseModel):
    geo: _Geo = Field(default_factory=_Geo)


class _Model(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="X_", env_nested_delimiter="__")

    flag: bool = Field(True, description="A flag.")
    origins: tuple[str, ...] = Field(("a", "b"), description="Origins.")
    secret: SecretStr | None = Field(None, description="Never shown.")
    enrich: _Enrich = Field(default_factory=_Enrich)


def test_nested_fields_flattened_with_defaults() -> None:
    rows = settings_doc.settings_table(_Model).splitlines()[2:]
    assert rows == [
        "| `X_FLAG` | `flag` | `true` | A flag. |",
        "| `X_ORIGINS` | `origins` | `a,b` | Origins. |",
        "| `X_SECRET` | `secret` |  | Never shown. |",
        "| `X_ENRICH__GEO__DATABASE` | `enrich.geo.database` |  | The .mmdb \\| file. |",
        "| `X_GEO_CACHE`, `X_IP_CACHE_SIZE` | `enrich.geo.cache` | `50` | Entries. |",
    ]


def test_every_field_of_the_model_has_a_row() -> None:
    table = settings_doc.settings_table()
    for name in Settings.model_fields:
        assert f"| `RUM_{name.upper()}` | `{name}` |" in table


def test_a_page_with_another_table_disagrees() -> None:
    good = "x\n" + wrap("settings", "table", settings_doc.settings_table()) + "\n"
    assert settings_doc.disagrees(good) is None
    row = "| `RUM_PARTITIONS` | `partitions` | `12` |"
    stale = good.replace(row, row.replace("`12`", "`10`"))
    assert stale != good
    assert settings_doc.disagrees(stale) is not None
    assert settings_doc.disagrees("no block here") is not None


def test_main_rewrites_the_page(tmp_path: Path) -> None:
    page = tmp_path / "configuration.md"
    page.write_text("# Settings\n\n" + wrap("settings", "table", "| stale |") + "\n")
    assert settings_doc.main([str(page), "--check"]) == 1
    assert settings_doc.main([str(page)]) == 0
    assert settings_doc.main([str(page), "--check"]) == 0
    assert page.read_text().startswith("# Settings\n\n<!-- settings:table -->\n| environment variable |")
