"""The faust app: built from settings, and the lazy module-level `app` the faust CLI needs."""

from __future__ import annotations

import subprocess
import sys

from pipeline.app import create_app
from pipeline.settings import load_settings


def test_create_app_follows_settings() -> None:
    settings = load_settings({"RUM_TOPIC_PREFIX": "stg.", "RUM_APP_ID": "shop-rum", "RUM_WEB_PORT": "0"})
    app = create_app(settings)
    assert app.conf.id == "shop-rum"
    agents = {name.rsplit(".", 1)[-1]: agent for name, agent in app.agents.items()}
    assert "enrich" in agents
    assert list(agents["enrich"].channel.topics) == ["stg.rum.actions.raw"]


def test_no_faust_web_server_nor_table_store_by_default() -> None:
    app = create_app(load_settings({}))
    assert app.conf.web_enabled is False  # metrics and health have their own server
    assert app.conf.store.scheme == "memory"  # the pipeline declares no faust table
    web = create_app(load_settings({"RUM_WEB_PORT": "6070"}))
    assert (web.conf.web_enabled, web.conf.web_port) == (True, 6070)


def test_module_level_app_is_created_on_first_access_only() -> None:
    code = (
        "import os, pipeline.app as m\n"
        "assert m._app is None\n"
        "os.environ['RUM_APP_ID'] = 'from-env'\n"
        "print(m.app.conf.id)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "RUM_WEB_PORT": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "from-env"
