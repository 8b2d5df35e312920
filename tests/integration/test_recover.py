"""rum-pipeline recover on the real broker: fixed actions come back enriched, each exactly once."""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaError

from pipeline.generate import TrafficGenerator
from pipeline.produce import Message, publish
from pipeline.recover import (
    HEADER_BAD_ROW,
    HEADER_SOURCE,
    RUN_KEY,
    BadRow,
    Checker,
    Planner,
    Selection,
    ledger_entry,
    ledger_errors,
    load_patch,
    raw_headers,
    run_marker,
)
from pipeline.recover_run import Publisher, raw_end_offsets, read_ledger
from pipeline.rollups.config import default_config_path, load_rollup_config
from pipeline.schemas import ENRICHED_ACTION, validate_record
from pipeline.settings import Settings
from pipeline.topics import BAD, ENRICHED, FACETS, RAW, RECOVERED, ROLLUPS
from tests import rollup_truth as rt
from tests.kafka_helpers import CLI, consume, isolated_env, run_worker, settings_from

pytestmark = pytest.mark.kafka

PATCH = Path(__file__).parents[1] / "fixtures" / "recover" / "add-type.json"
GOOD, FIXABLE, UNFIXABLE, GARBAGE = 400, 60, 10, 5


def _inputs(seed: int, fixable: int = FIXABLE) -> tuple[list[Message], dict[str, bytes], list[bytes]]:
    """Good actions, actions without ``type`` (the patch fixes them), others it does not, and non-JSON.

    Returns the messages in a shuffled order, the fixed form of each fixable
    action by action id, and the good payloads. Every action is dated within
    the same 20 s, so no rollup window closes before recovery (nothing is late).
    """
    start = int(time.time() * 1000) - 30_000
    generated = list(
        TrafficGenerator(seed=seed, start_ms=start, span_ms=20_000).messages(GOOD + fixable + UNFIXABLE)
    )
    messages, fixed, good = [], {}, []
    for index, m in enumerate(generated):
        event = orjson.loads(m.value)
        if index < GOOD:
            good.append(m.value)
            messages.append(Message(m.key, m.value))
            continue
        del event["type"]
        if index >= GOOD + fixable:
            event["action"]["type"] = "click"  # still invalid once the patch added the type
        else:
            fixed[event["action"]["id"]] = orjson.dumps({"type": "action", **event})
        messages.append(Message(m.key, orjson.dumps(event), "schema"))
    messages += [Message(None, b"checkout value=%d" % i, "parse") for i in range(GARBAGE)]
    random.Random(seed).shuffle(messages)
    return messages, fixed, good


def _recover(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [CLI, "recover", "--no-progress", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _row(output: str, name: str) -> int:
    """The count of one row of the summary table."""
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if cells and cells[0] == name:
            return int(cells[-1].replace(",", ""))
    raise AssertionError(f"no row {name!r} in:\n{output}")


def _enriched_ids(records: list[Any]) -> Counter[str]:
    ids: Counter[str] = Counter()
    for record in records:
        event = orjson.loads(record.value)
        assert validate_record(ENRICHED_ACTION, event) == []
        ids[event["action"]["id"]] += 1
    return ids


def _check_rollups(settings: Settings, payloads: list[bytes]) -> None:
    """Rollups and facets equal the ground truth of ``payloads`` (each counted once)."""
    truth = rt.ground_truth(load_rollup_config(default_config_path()), settings, payloads)

    def problems() -> list[str]:
        table = rt.rollup_table(rt.latest_records(settings, settings.topic(ROLLUPS)))
        facets = rt.latest_records(settings, settings.topic(FACETS))
        return rt.mismatches(truth, table) + rt.facet_mismatches(truth, facets)

    found = rt.wait_for(problems, 90)
    assert not found, "\n".join(found[:20])


def test_recover_publishes_each_fixed_action_once(tmp_path: Path, test_mmdb: Path) -> None:
    env = isolated_env(tmp_path, RUM_GEOIP_DATABASE=str(test_mmdb))
    settings = settings_from(env)
    subprocess.run([CLI, "topics", "create"], env=env, check=True, capture_output=True)
    messages, fixed, good = _inputs(seed=5)
    summary = asyncio.run(publish(settings, settings.topic(RAW), messages))
    assert summary.sent == len(messages) and summary.failed == 0
    raw_topic = settings.topic(RAW)

    with run_worker(env, tmp_path / "worker.log") as worker:
        try:
            bad = consume(settings, settings.topic(BAD), FIXABLE + UNFIXABLE + GARBAGE)
            assert len(bad) == FIXABLE + UNFIXABLE + GARBAGE
            assert len(consume(settings, settings.topic(ENRICHED), GOOD)) == GOOD
            ends = asyncio.run(raw_end_offsets(settings, raw_topic))

            # A dry run publishes nothing and says what it would do.
            out = _recover(env, "--patch", str(PATCH))
            assert _row(out, "would be published") == FIXABLE
            assert _row(out, "still invalid") == UNFIXABLE
            assert _row(out, "patch did not apply") == GARBAGE
            assert "dry run" in out and 'changes: [{"op": "add", "path": "/type", "value": "action"}]' in out
            assert asyncio.run(raw_end_offsets(settings, raw_topic)) == ends
            assert not asyncio.run(read_ledger(settings, settings.topic(RECOVERED))).recovered

            out = _recover(env, "--kind", "schema", "--patch", str(PATCH), "--apply")
            assert _row(out, "published") == FIXABLE and _row(out, "fixed by the patch") == FIXABLE
            assert _row(out, "still invalid") == UNFIXABLE
            after = asyncio.run(raw_end_offsets(settings, raw_topic))
            assert sum(after.values()) - sum(ends.values()) >= FIXABLE  # plus transaction markers

            enriched = consume(settings, settings.topic(ENRICHED), GOOD + FIXABLE)
            ids = _enriched_ids(enriched)
            assert len(enriched) == GOOD + FIXABLE
            assert {i: ids[i] for i in fixed} == dict.fromkeys(fixed, 1)

            # Each re-published record names its bad row and input, and the ledger has each input once.
            recovered = [r for r in consume(settings, raw_topic, len(messages) + FIXABLE) if r.headers]
            assert len(recovered) == FIXABLE
            assert {orjson.loads(r.value)["action"]["id"] for r in recovered} == set(fixed)
            ledger = asyncio.run(read_ledger(settings, settings.topic(RECOVERED)))
            assert len(ledger.recovered) == FIXABLE
            assert (
                ledger.marker is not None and ledger.marker["finished"] and ledger_errors(ledger.marker) == []
            )
            for record in recovered:
                headers = dict(record.headers)
                entry = ledger.recovered[headers[HEADER_SOURCE].decode()]
                assert ledger_errors(entry) == [] and entry["delivery"] == "committed"
                assert (entry["raw"]["partition"], entry["raw"]["offset"]) == (
                    record.partition,
                    record.offset,
                )
                bad_row = entry["bad_row"]
                assert (
                    headers[HEADER_BAD_ROW].decode()
                    == f"{bad_row['topic']}/{bad_row['partition']}/{bad_row['offset']}"
                )

            # Again, with other filters: nothing more is published.
            out = _recover(env, "--patch", str(PATCH), "--apply")
            assert _row(out, "already recovered") == FIXABLE and _row(out, "published") == 0
            assert asyncio.run(raw_end_offsets(settings, raw_topic)) == after
            assert not [r for r in consume(settings, raw_topic, len(messages) + FIXABLE) if r.headers][
                FIXABLE:
            ]

            # Rollups and facets count each fixed action once.
            _check_rollups(settings, good + list(fixed.values()))
            assert (
                len(consume(settings, settings.topic(ENRICHED), GOOD + FIXABLE, timeout=5)) == GOOD + FIXABLE
            )
        finally:
            assert worker.process.poll() is None, worker.tail()


async def _interrupted_run(settings: Settings, bad_records: list[Any], count: int) -> Publisher:
    """Do what a recover run does up to the middle of a transaction, and stop there (as if it crashed)."""
    planner = Planner(Selection(), Checker(settings), set(), load_patch(PATCH))
    decisions = [
        d
        for r in bad_records
        if (d := planner.decide(BadRow(r.topic, r.partition, r.offset, orjson.loads(r.value))))
        and d.outcome == "ready"
    ][:count]
    raw, ledger = settings.topic(RAW), settings.topic(RECOVERED)
    publisher = Publisher(settings, raw, ledger)
    await publisher.start()
    marker = run_marker(raw, await raw_end_offsets(settings, raw), 0, finished=False)
    await publisher.commit([], {RUN_KEY: marker})
    producer = publisher.producer
    await producer.begin_transaction()
    for d in decisions:
        meta = await (await producer.send(raw, d.value, key=d.key, headers=raw_headers(d)))
        entry = ledger_entry(d, (meta.topic, meta.partition, meta.offset), 0)
        await producer.send_and_wait(ledger, orjson.dumps(entry), key=d.source.encode())
    return publisher


def test_a_run_interrupted_mid_transaction_is_published_again(tmp_path: Path, test_mmdb: Path) -> None:
    """Workers read the raw topic read_committed: records of an aborted run never reach them, and go again."""
    env = isolated_env(tmp_path, RUM_GEOIP_DATABASE=str(test_mmdb), RUM_ROLLUPS="false")
    settings = settings_from(env)
    subprocess.run([CLI, "topics", "create"], env=env, check=True, capture_output=True)
    messages, fixed, _good = _inputs(seed=8)
    asyncio.run(publish(settings, settings.topic(RAW), messages))
    interrupted = 7

    with run_worker(env, tmp_path / "worker.log") as worker:
        try:
            bad = consume(settings, settings.topic(BAD), FIXABLE + UNFIXABLE + GARBAGE)
            loop = asyncio.new_event_loop()
            zombie = loop.run_until_complete(_interrupted_run(settings, bad, interrupted))
            # The open transaction's records do not reach the worker: it reads the raw topic read_committed.
            enriched = consume(settings, settings.topic(ENRICHED), GOOD + interrupted, timeout=10)
            assert len(enriched) == GOOD

            out = _recover(env, "--patch", str(PATCH), "--apply")  # fences the zombie, aborts its transaction
            assert _row(out, "already recovered") == 0
            assert _row(out, "published") == FIXABLE
            with pytest.raises(KafkaError):
                loop.run_until_complete(zombie.producer.commit_transaction())
            loop.run_until_complete(zombie.stop())
            loop.close()

            enriched = consume(settings, settings.topic(ENRICHED), GOOD + FIXABLE)
            ids = _enriched_ids(enriched)
            assert len(enriched) == GOOD + FIXABLE
            assert {i: ids[i] for i in fixed} == dict.fromkeys(fixed, 1)
            ledger = asyncio.run(read_ledger(settings, settings.topic(RECOVERED)))
            deliveries = Counter(e["delivery"] for e in ledger.recovered.values())
            assert deliveries == {"committed": FIXABLE}
            assert all(ledger_errors(e) == [] for e in ledger.recovered.values())

            out = _recover(env, "--patch", str(PATCH), "--apply")
            assert _row(out, "already recovered") == FIXABLE and _row(out, "published") == 0
        finally:
            assert worker.process.poll() is None, worker.tail()


def test_concurrent_runs_publish_each_input_once(tmp_path: Path, test_mmdb: Path) -> None:
    """Two runs at once: the later fences the earlier, whatever the interleaving; nothing is doubled."""
    env = isolated_env(tmp_path, RUM_GEOIP_DATABASE=str(test_mmdb), RUM_ROLLUPS="false")
    settings = settings_from(env)
    subprocess.run([CLI, "topics", "create"], env=env, check=True, capture_output=True)
    fixable = 800
    messages, fixed, _good = _inputs(seed=13, fixable=fixable)
    asyncio.run(publish(settings, settings.topic(RAW), messages))

    with run_worker(env, tmp_path / "worker.log") as worker:
        try:
            assert (
                len(consume(settings, settings.topic(BAD), fixable + UNFIXABLE + GARBAGE))
                == len(messages) - GOOD
            )
            command = [CLI, "recover", "--no-progress", "--kind", "schema", "--patch", str(PATCH), "--apply"]
            runs = [
                subprocess.Popen(
                    command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                )
            ]
            time.sleep(0.5)
            runs.append(
                subprocess.Popen(
                    command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                )
            )
            outputs = [(run.wait(timeout=300), run.stdout.read()) for run in runs if run.stdout]
            assert any(code == 0 for code, _ in outputs), outputs
            for code, out in outputs:
                assert code == 0 or "took over" in out or "run recover again" in out, out
            out = _recover(env, "--kind", "schema", "--patch", str(PATCH), "--apply")
            assert _row(out, "already recovered") + _row(out, "published") == fixable

            enriched = consume(settings, settings.topic(ENRICHED), GOOD + fixable)
            ids = _enriched_ids(enriched)
            assert len(enriched) == GOOD + fixable
            assert {i: ids[i] for i in fixed} == dict.fromkeys(fixed, 1)
            ledger = asyncio.run(read_ledger(settings, settings.topic(RECOVERED)))
            assert len(ledger.recovered) == fixable and ledger.marker and ledger.marker["finished"]
        finally:
            assert worker.process.poll() is None, worker.tail()
