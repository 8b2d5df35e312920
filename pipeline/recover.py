"""Recovery of bad rows: select, repair, re-check, and re-publish each at most once.

The pure parts (selection of bad rows, JSON Patch repair, the re-check with
the worker's own validator, the ledger records) need no Kafka and are tested
without a broker; :mod:`pipeline.recover_run` is the Kafka loop around them.

Identity: a bad row is recovered once per *rejected input*, named by its
source topic/partition/offset. The bad topic itself is at least once (a
worker that crashes may write the same bad row twice), so two bad rows with
one source are one input, recovered once.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import jsonpatch
import jsonschema_rs
import orjson

from pipeline.badrows import original_key, original_payload
from pipeline.errors import PipelineError
from pipeline.process import Processor
from pipeline.produce import session_key
from pipeline.rollups.windows import DAY_S, UNITS
from pipeline.schemas import BAD_ROW, SCHEMAS_DIR, json_path, json_type, registry, validate_record
from pipeline.settings import Settings
from pipeline.validate import Failure, RawValidator

#: Header of a re-published raw record: the bad row it came from (bad topic/partition/offset).
HEADER_BAD_ROW = "rum-recovered-from"
#: Header of a re-published raw record: the rejected input it replaces (source topic/partition/offset).
HEADER_SOURCE = "rum-recovered-source"
#: Ledger key of the marker the current (or last) recovery run writes before publishing.
RUN_KEY = b"run"
LEDGER_SCHEMA = SCHEMAS_DIR / "recovery-ledger.v1.json"

Outcome = Literal["ready", "already recovered", "duplicate", "patch failed", "still invalid", "unreadable"]
_UNITS = {**UNITS, "w": 7 * DAY_S}
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_PATCH_OPS = frozenset({"add", "remove", "replace", "move", "copy", "test"})


def parse_time(text: str, now_ms: int) -> int:
    """Epoch milliseconds of ``text``: ISO 8601 (UTC when no offset is given) or relative (``2h`` ago).

    Relative units: s, m, h, d, w.
    """
    match = _RELATIVE.match(text)
    if match:
        return now_ms - int(float(match[1]) * _UNITS[match[2]] * 1000)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise PipelineError(
            f"cannot read the time {text!r}: give an ISO time (2026-11-28T10:00:00Z) or an age (30m, 2h, 7d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def source_id(row: dict[str, Any]) -> str:
    """The identity of the input a bad row rejected: ``topic/partition/offset``."""
    source = row["source"]
    return f"{source['topic']}/{source['partition']}/{source['offset']}"


@dataclass(frozen=True)
class Selection:
    """Which bad rows to recover; an empty criterion matches everything."""

    kinds: frozenset[str] = frozenset()
    since_ms: int | None = None
    until_ms: int | None = None
    error: re.Pattern[str] | None = None
    source_partitions: frozenset[int] = frozenset()

    def matches(self, row: dict[str, Any]) -> bool:
        """True when the bad row passes every criterion.

        ``since`` is inclusive and ``until`` exclusive, on ``failed_at``; the
        error pattern is searched in each ``"<path>: <message>"``.
        """
        if "intake" in row["source"]:
            # Refused by the HTTP intake: no Kafka source to name the input by, and
            # the bytes lack the intake's stamps; they are replayed by posting them again.
            return False
        if self.kinds and row["kind"] not in self.kinds:
            return False
        failed_at = row["failed_at"]
        if self.since_ms is not None and failed_at < self.since_ms:
            return False
        if self.until_ms is not None and failed_at >= self.until_ms:
            return False
        if self.source_partitions and row["source"]["partition"] not in self.source_partitions:
            return False
        if self.error is not None:
            pattern = self.error
            return any(pattern.search(f"{e['path']}: {e['message']}") for e in row["errors"])
        return True


def compile_error_pattern(text: str) -> re.Pattern[str]:
    """The ``--error`` pattern: a regular expression (a plain substring is one too)."""
    try:
        return re.compile(text)
    except re.error as exc:
        raise PipelineError(f"--error {text!r} is not a valid regular expression: {exc}") from None


def load_patch(path: Path) -> jsonpatch.JsonPatch:
    """Read and check an RFC 6902 JSON Patch file (a JSON array of operations)."""
    try:
        ops = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise PipelineError(f"cannot read the patch {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise PipelineError(f"the patch {path} is not JSON: {exc}") from None
    if not isinstance(ops, list) or not ops:
        raise PipelineError(f"the patch {path} must be a non-empty JSON array of operations (RFC 6902)")
    for index, op in enumerate(ops):
        if not isinstance(op, dict) or op.get("op") not in _PATCH_OPS or not isinstance(op.get("path"), str):
            raise PipelineError(
                f"the patch {path}: operation {index} needs an op ({', '.join(sorted(_PATCH_OPS))}) "
                "and a path (a JSON Pointer such as /action/type)"
            )
        needs = {"add": "value", "replace": "value", "test": "value", "move": "from", "copy": "from"}
        if op["op"] in needs and needs[op["op"]] not in op:
            raise PipelineError(f"the patch {path}: operation {index} ({op['op']}) needs {needs[op['op']]!r}")
    return jsonpatch.JsonPatch(ops)


def apply_patch(patch: jsonpatch.JsonPatch, payload: bytes) -> bytes | str:
    """The patched payload, or why the patch does not apply (a test failed, a path is missing...)."""
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return f"the payload is not JSON ({exc.msg}); a JSON Patch needs a JSON document"
    try:
        patched = patch.apply(document)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        return short(f"{type(exc).__name__}: {exc}")
    return orjson.dumps(patched)


def short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Checker:
    """The worker's own verdict on a payload: no errors means a worker will enrich it.

    It runs the worker's :class:`Processor` (size limits, parsing, schema, the
    date limit, every enrichment). With ``schema``, that JSON Schema replaces
    the bundled ``raw-action.v1.json`` for the schema step: use it when the
    running workers validate with a newer schema than this installation has.
    """

    def __init__(self, settings: Settings, schema: Path | None = None) -> None:
        self.processor = Processor(settings)
        self.schema: jsonschema_rs.Validator | None = None
        if schema is not None:
            self.schema = load_schema_validator(schema)
            self.processor.validator = _SchemaValidator(self.schema, self.processor.validator)

    def errors(self, payload: bytes) -> list[tuple[str, str]]:
        """Every reason a worker would reject ``payload`` as (JSON path, message); empty when accepted."""
        out = self.processor.process(payload)
        if out.bad_kind is None:
            return []
        return [(e["path"], e["message"]) for e in orjson.loads(out.value)["errors"]]


class _SchemaValidator(RawValidator):
    """A RawValidator with the limits of ``base`` that checks a given schema instead of the bundled one."""

    def __init__(self, schema: jsonschema_rs.Validator, base: RawValidator) -> None:
        super().__init__(base.max_bytes, base.max_depth, base.max_attributes)
        self._validator = schema

    def check(self, payload: bytes) -> dict[str, Any] | Failure:
        """As :meth:`RawValidator.check`, with the errors of the given schema."""
        result = super().check(payload)
        if isinstance(result, Failure) and result.kind == "schema":
            obj = orjson.loads(payload)  # a schema failure means it parsed
            if type(obj) is dict:
                return Failure("schema", _errors_of(self._validator, obj) or result.errors)
        return result


def load_schema_validator(path: Path) -> jsonschema_rs.Validator:
    """Compile a raw-action JSON Schema file; references to the bundled schemas resolve locally."""
    try:
        schema = orjson.loads(path.read_bytes())
        return jsonschema_rs.validator_for(schema, registry=registry(), mask="value", offline=True)
    except OSError as exc:
        raise PipelineError(f"cannot read the schema {path}: {exc.strerror}") from None
    except (orjson.JSONDecodeError, ValueError, jsonschema_rs.ValidationError) as exc:
        raise PipelineError(f"the schema {path} is not a valid JSON Schema: {exc}") from None


def _errors_of(schema: jsonschema_rs.Validator, obj: Any) -> list[tuple[str, str]]:
    errors = []
    for err in schema.iter_errors(obj):
        message = err.message
        if err.kind.name == "type":
            message = f"{message} (got {json_type(err.instance)})"
        errors.append((json_path(err.instance_path), message))
    return errors


@dataclass(frozen=True)
class BadRow:
    """A bad row as read from the bad topic, with its own position there."""

    topic: str
    partition: int
    offset: int
    #: The parsed record; anything that is not a valid bad row is "unreadable".
    row: Any

    @property
    def position(self) -> str:
        """``topic/partition/offset`` of the bad row itself."""
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True)
class Decision:
    """What recovery does with one matching bad row, and the record to publish when ``ready``."""

    bad: BadRow
    outcome: Outcome
    value: bytes | None = None
    key: bytes | None = None
    patched: bool = False
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def source(self) -> str:
        """Identity of the rejected input (the ledger key)."""
        return source_id(self.bad.row)


@dataclass
class Summary:
    """Counts of a recovery run (the table printed at the end)."""

    scanned: int = 0
    matched: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    ready_by_kind: Counter[str] = field(default_factory=Counter)
    fixed: int = 0
    published: int = 0
    examples: dict[str, list[Decision]] = field(default_factory=dict)

    def add(self, decision: Decision, keep: int = 3) -> None:
        """Count a decision and keep the first few of each outcome as examples."""
        self.outcomes[decision.outcome] += 1
        if decision.outcome == "ready":
            self.ready_by_kind[decision.bad.row["kind"]] += 1
            self.fixed += decision.patched
        examples = self.examples.setdefault(decision.outcome, [])
        if len(examples) < keep:
            examples.append(decision)


class Planner:
    """Decides, bad row by bad row, what to recover; remembers what this run has taken."""

    def __init__(
        self,
        selection: Selection,
        checker: Checker,
        recovered: set[str],
        patch: jsonpatch.JsonPatch | None = None,
        limit: int | None = None,
    ) -> None:
        self.selection = selection
        self.checker = checker
        self.recovered = recovered
        self.patch = patch
        self.limit = limit
        self.summary = Summary()
        self._taken: set[str] = set()

    @property
    def full(self) -> bool:
        """True once ``limit`` rows were taken (ready, failed to patch or still invalid)."""
        return self.limit is not None and len(self._taken) >= self.limit

    def decide(self, bad: BadRow) -> Decision | None:
        """The decision for one bad row, or None when it does not match (or the limit is reached)."""
        self.summary.scanned += 1
        row = bad.row
        if self.full:
            return None
        problems = validate_record(BAD_ROW, row)
        if problems:
            # Not a bad row this version understands: counted and shown, never guessed at.
            decision = Decision(bad, "unreadable", errors=[("$", problems[0])])
            self.summary.add(decision)
            return decision
        if not self.selection.matches(row):
            return None
        self.summary.matched += 1
        source = source_id(row)
        if source in self.recovered:
            decision = Decision(bad, "already recovered")
        elif source in self._taken:
            decision = Decision(bad, "duplicate")
        else:
            self._taken.add(source)
            decision = self._repair(bad)
        self.summary.add(decision)
        return decision

    def _repair(self, bad: BadRow) -> Decision:
        try:
            payload = original_payload(bad.row)
        except PipelineError as exc:
            return Decision(bad, "unreadable", errors=[("$.payload", str(exc))])
        value = payload
        if self.patch is not None:
            patched = apply_patch(self.patch, payload)
            if isinstance(patched, str):
                return Decision(bad, "patch failed", errors=[("$", patched)])
            value = patched
        errors = self.checker.errors(value)
        if errors:
            return Decision(bad, "still invalid", value=value, patched=self.patch is not None, errors=errors)
        key = original_key(bad.row)
        return Decision(
            bad,
            "ready",
            value=value,
            key=key if key is not None else session_key(value),
            patched=value != payload,
        )


def raw_headers(decision: Decision) -> list[tuple[str, bytes]]:
    """Headers of a re-published raw record: where it comes from."""
    return [(HEADER_BAD_ROW, decision.bad.position.encode()), (HEADER_SOURCE, decision.source.encode())]


def ledger_entry(decision: Decision, raw: tuple[str, int, int] | None, now_ms: int) -> dict[str, Any]:
    """The ledger value saying the input of ``decision`` was recovered (``raw``: where it went)."""
    source = decision.bad.row["source"]
    return {
        "schema_version": "1",
        "record": "recovered",
        "source": {"topic": source["topic"], "partition": source["partition"], "offset": source["offset"]},
        "bad_row": {
            "topic": decision.bad.topic,
            "partition": decision.bad.partition,
            "offset": decision.bad.offset,
        },
        "raw": None if raw is None else {"topic": raw[0], "partition": raw[1], "offset": raw[2]},
        "patched": decision.patched,
        "recovered_at": now_ms,
        "delivery": "committed",
    }


def run_marker(raw_topic: str, raw_ends: dict[int, int], now_ms: int, finished: bool) -> dict[str, Any]:
    """Ledger value under :data:`RUN_KEY`: where the raw topic ended when a run began, and if it ended."""
    return {
        "schema_version": "1",
        "record": "run",
        "raw_topic": raw_topic,
        "raw_end_offsets": {str(p): o for p, o in sorted(raw_ends.items())},
        "started_at": now_ms,
        "finished": finished,
    }


def _position(text: str) -> dict[str, Any]:
    topic, partition, offset = text.rsplit("/", 2)
    return {"topic": topic, "partition": int(partition), "offset": int(offset)}


@functools.cache
def _ledger_validator() -> jsonschema_rs.Validator:
    return jsonschema_rs.validator_for(orjson.loads(LEDGER_SCHEMA.read_bytes()))


def ledger_errors(value: dict[str, Any]) -> list[str]:
    """Every error of a ledger value against ``recovery-ledger.v1.json``; empty when valid."""
    return [f"{json_path(e.instance_path)}: {e.message}" for e in _ledger_validator().iter_errors(value)]
