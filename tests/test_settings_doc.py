"""The settings reference: one table per group, each setting with its variables and default as typed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings

from pipeline import settings_doc
from pipeline.docblocks import wrap
from pipeline.settings import Settings
from pipeline.settings_sources import Formerly, leaves


class _Geo(BaseModel):
    database: Path | None = Field(None, description="The .mmdb | file.")
    cache: Annotated[int, Formerly("ip_cache_size")] = Field(50, description="Entries.")


class _Enrich(BaseModel):
    geo: _Geo = Field(default_factory=lambda: _Geo.model_validate({}), description="Geo lookups.")


class _Kafka(BaseModel):
    flag: Annotated[bool, Formerly("flag")] = Field(True, description="A flag.")
    origins: tuple[str, ...] = Field(("a", "b"), description="Origins.")
    secret: SecretStr | None = Field(None, description="Never shown.")


class _Model(BaseSettings):
    kafka: _Kafka = Field(default_factory=lambda: _Kafka.model_validate({}), description="The brokers.")
    enrich: _Enrich = Field(default_factory=lambda: _Enrich.model_validate({}))


def test_one_table_per_group_with_nested_and_old_names() -> None:
    assert settings_doc.settings_table(_Model).splitlines() == [
        "#### `kafka`",
        "",
        "The brokers.",
        "",
        "| setting | environment variable | old name | default | meaning |",
        "|---|---|---|---|---|",
        "| `kafka.flag` | `RUM_KAFKA__FLAG` | `RUM_FLAG` | `true` | A flag. |",
        "| `kafka.origins` | `RUM_KAFKA__ORIGINS` |  | `a,b` | Origins. |",
        "| `kafka.secret` | `RUM_KAFKA__SECRET` |  |  | Never shown. |",
        "",
        "#### `enrich.geo`",
        "",
        "Geo lookups.",
        "",
        "| setting | environment variable | old name | default | meaning |",
        "|---|---|---|---|---|",
        "| `enrich.geo.database` | `RUM_ENRICH__GEO__DATABASE` |  |  | The .mmdb \\| file. |",
        "| `enrich.geo.cache` | `RUM_ENRICH__GEO__CACHE` | `RUM_IP_CACHE_SIZE` | `50` | Entries. |",
    ]


def test_every_setting_of_the_model_has_a_row() -> None:
    table = settings_doc.settings_table()
    for path, info in leaves(Settings):
        env = "RUM_" + "__".join(path).upper()
        assert f"| `{'.'.join(path)}` | `{env}` |" in table
        assert info.description
    for group in ("kafka", "worker", "rollups", "intake", "monitors", "log", "enrich.geo", "enrich.browser"):
        assert f"#### `{group}`" in table


def test_a_page_with_another_table_disagrees() -> None:
    good = "x\n" + wrap("settings", "table", settings_doc.settings_table()) + "\n"
    assert settings_doc.disagrees(good) is None
    row = "| `kafka.partitions` | `RUM_KAFKA__PARTITIONS` | `RUM_PARTITIONS` | `12` |"
    assert row in good
    stale = good.replace(row, row.replace("`12`", "`10`"))
    assert settings_doc.disagrees(stale) is not None
    assert settings_doc.disagrees("no block here") is not None


def test_main_rewrites_the_page(tmp_path: Path) -> None:
    page = tmp_path / "configuration.md"
    page.write_text("# Settings\n\n" + wrap("settings", "table", "| stale |") + "\n")
    assert settings_doc.main([str(page), "--check"]) == 1
    assert settings_doc.main([str(page)]) == 0
    assert settings_doc.main([str(page), "--check"]) == 0
    assert page.read_text().startswith("# Settings\n\n<!-- settings:table -->\n#### `kafka`")
