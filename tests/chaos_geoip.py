"""Scenario (d): the GeoIP database file is replaced while the workers run.

Split from :mod:`tests.chaos_scenarios` (which holds the shared machinery and
the other scenarios); used by ``bench/chaos.py`` and ``tests/integration/test_chaos.py``.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from pipeline.process import Processor
from pipeline.shopdata import IPV4_RANGES, IPV6_RANGES
from pipeline.topics import BAD, ENRICHED, RAW
from tests.chaos_helpers import (
    background_publish,
    end_offsets,
    enriched_by_source,
    generated,
    merge_truths,
    read_all,
    truth_of,
)
from tests.chaos_scenarios import Context, Outcome, Workers, finish, join, scenario
from tests.kafka_helpers import settings_from
from tests.mmdb_fixture import build_test_mmdb


def geo_database(path: Path, shift: int, label: str) -> Path:
    """A GeoIP2-City database over the generator's address ranges, country ``shift`` places on.

    ``shift`` 0 puts every range in its own country; 1 moves each range to the
    next country of the list, so a swap changes the geo of almost every action.
    """
    v4 = list(IPV4_RANGES)
    networks = []
    for i, country in enumerate(v4):
        to = v4[(i + shift) % len(v4)]
        for cidr in IPV4_RANGES[country][1]:
            networks.append({"network": cidr, "record": _geo_record(to, label)})
    for country, cidrs in IPV6_RANGES.items():
        to = v4[(v4.index(country) + shift) % len(v4)] if country in v4 else country
        for cidr in cidrs:
            networks.append({"network": cidr, "record": _geo_record(to, label)})
    return build_test_mmdb(path, networks)


def _geo_record(iso: str, label: str) -> dict[str, Any]:
    return {
        "country": {"iso_code": iso, "names": {"en": f"Country {iso}"}},
        "continent": {"code": "EU", "names": {"en": "Europe"}},
        "city": {"names": {"en": f"{label} city of {iso}"}},
    }


def _drained(env: dict[str, str], workers: Workers, timeout: float = 300) -> None:
    """Wait until every raw record so far has its enriched action or bad row."""
    settings = settings_from(env)
    raw = sum(end_offsets(settings, settings.topic(RAW)).values())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = sum(end_offsets(settings, settings.topic(ENRICHED)).values()) + sum(
            end_offsets(settings, settings.topic(BAD)).values()
        )
        if done >= raw:
            return
        dead = workers.dead()
        if dead:
            raise AssertionError("\n".join(dead))
        time.sleep(0.5)
    raise AssertionError(f"the workers did not catch up with {raw} raw records in {timeout} s")


def geoip_swap(ctx: Context, actions: int, swaps: int = 1, workers_n: int = 1, rate: float = 1500) -> Outcome:
    """The GeoIP file is replaced (renamed over, like geoipupdate) while the workers run, ``swaps`` times.

    Traffic comes in ``swaps + 1`` phases; between two, once the workers have
    caught up, the database alternates between two versions that place every
    address range in a different country. Every enriched action of a phase must
    carry the geo of that phase's database, and the rollups must equal ground
    truth enriched phase by phase.
    """
    folder = ctx.tmp / "geoip"
    folder.mkdir(parents=True, exist_ok=True)
    versions = [geo_database(folder / "a.mmdb", 0, "A"), geo_database(folder / "b.mmdb", 1, "B")]
    live = folder / "live.mmdb"
    shutil.copyfile(versions[0], live)
    check_interval = 1.0
    extra = {"RUM_GEOIP_DATABASE": str(live), "RUM_GEOIP_CHECK_INTERVAL": str(check_interval)}
    phases: list[dict[int, int]] = []  # raw end offsets after each phase
    with scenario(ctx, "geoip", "GeoIP database swap", **extra) as (outcome, env, workers):
        settings = settings_from(env)
        for slot in range(workers_n):
            workers.start(slot)
        # One stream cut in phases: event time keeps moving forward (a second stream
        # dated over the same hour again would be late, by design, not counted).
        stream = generated(actions, seed=66)
        per_phase = -(-actions // (swaps + 1))
        for phase in range(swaps + 1):
            if phase:
                _drained(env, workers)
                # A complete file renamed over the live one, as geoipupdate does; the workers
                # notice at their first action after the check interval, which the quiet ensures.
                staged = folder / "live.mmdb.new"
                shutil.copyfile(versions[phase % 2], staged)
                os.replace(staged, live)
                ctx.note(f"GeoIP database swapped ({phase}/{swaps})")
                outcome.disruptions.append(f"GeoIP file replaced by version {'AB'[phase % 2]}")
                time.sleep(2 * check_interval)
            part = stream[phase * per_phase : (phase + 1) * per_phase]
            thread, produced = background_publish(env, part, rate=rate)
            if phase == 0:
                workers.wait(0)
            join(thread, produced, outcome)
            phases.append(end_offsets(settings, settings.topic(RAW)))
        _drained(env, workers)
        truth, problems = _geo_phases(env, phases, versions)
        outcome.problems += problems
        finish(ctx, outcome, env, workers, truth)
    return outcome


def _geo_phases(
    env: dict[str, str], phases: list[dict[int, int]], versions: list[Path]
) -> tuple[Any, list[str]]:
    """Ground truth phase by phase, and the enriched actions whose geo is not their phase's."""
    settings = settings_from(env)
    raw = read_all(settings, settings.topic(RAW))
    enriched = enriched_by_source(settings)

    def phase_of(partition: int, offset: int) -> int:
        return next(i for i, ends in enumerate(phases) if offset < ends.get(partition, 0))

    processors = [Processor(settings_from({**env, "RUM_GEOIP_DATABASE": str(v)})) for v in versions]
    payloads: list[list[bytes]] = [[] for _ in phases]
    problems: list[str] = []
    changed = 0
    for record in raw:
        phase = phase_of(record.partition, record.offset)
        payloads[phase].append(record.value)
        got = enriched.get((record.partition, record.offset))
        if got is None:
            continue  # a bad row; coverage checks it is there
        expected = processors[phase % 2].process(record.value).event
        other = processors[(phase + 1) % 2].process(record.value).event
        assert expected is not None and other is not None
        if got.get("geo") != expected.get("geo"):
            problems.append(
                f"raw {record.partition}/{record.offset} (phase {phase}): geo {got.get('geo')} "
                f"!= {expected.get('geo')}"
            )
        elif phase and expected.get("geo") != other.get("geo"):
            changed += 1
    if len(phases) > 1 and not changed:
        problems.append("no enriched action after a swap differs between the two databases")
    truths = [
        truth_of(settings_from({**env, "RUM_GEOIP_DATABASE": str(versions[i % 2])}), part)
        for i, part in enumerate(payloads)
    ]
    return merge_truths(truths), problems[:20]
