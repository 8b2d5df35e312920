"""Deterministic, realistic shop traffic: raw RUM custom actions as Kafka messages.

Used by ``rum-pipeline produce --generate``, by the demo, by benchmarks and by
crash tests that compute their ground truth from what was generated. For a
given ``seed`` and ``start_ms`` the output is byte-for-byte reproducible.

Realism that matters for the pipeline:

* Zipf-like repetition of sessions, users, user agents, IPs, items and search
  queries, so caches, hot keys and partition skew behave as in production;
* a session keeps its user, user agent and client IP, and its views follow
  each other (referrer = previous page), with UTM parameters and hashes on some;
* IPs geolocate across many countries (checked against GeoLite2 City 2018),
  with a little IPv6 and a few private addresses that give no geo;
* optional malformed messages of each fault kind the validator reports.
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import quote_plus

import orjson

from pipeline.clock import now_ms
from pipeline.shopdata import (
    ACTIONS,
    BOT_MARKERS,
    CATALOG,
    CATEGORIES,
    EXTERNAL_REFERRERS,
    FALLBACK_USER_AGENTS,
    IPV4_RANGES,
    IPV6_RANGES,
    IPV6_SHARE,
    PRIVATE_RANGES,
    PRIVATE_SHARE,
    QUERIES,
    UTM,
)

MalformedKind = Literal["parse", "schema", "size"]
#: The fault kinds, in the order malformed messages cycle through them.
MALFORMED_KINDS: Final[tuple[MalformedKind, ...]] = ("parse", "schema", "size")
#: The validator's limits that "size" messages exceed.
MAX_CONTEXT_DEPTH: Final = 20
MAX_CONTEXT_ATTRIBUTES: Final = 1000
#: Kafka's default maximum message size; only the ``allow_huge`` variant exceeds it.
ONE_MIB: Final = 1_048_576


@dataclass(frozen=True, slots=True)
class GeneratedMessage:
    """One message to produce to the raw topic."""

    key: bytes | None  #: session id bytes; None for a small share (keyless producers exist)
    value: bytes  #: the exact bytes to produce
    malformed: MalformedKind | None  #: None for a good action, else the expected fault kind


BASE_URL: Final = "https://shop.example"
_APPLICATION: Final = {"id": "shop"}
N_USERS: Final = 5_000
N_SESSIONS: Final = 20_000
N_IPV4: Final = 4_000
N_IPV6: Final = 200


class ZipfSampler:
    """Draw indexes 0..n-1 with weight 1/(rank+1)**s: a few very frequent, a long tail.

    This is what ``random.choices(range(n), cum_weights=...)`` does, without its
    per-call overhead (list building, argument checks), which matters at ~10
    draws per message.
    """

    __slots__ = ("_cum", "_hi", "_total")

    def __init__(self, n: int, s: float = 1.0, weights: Sequence[float] | None = None) -> None:
        w = weights if weights is not None else [1.0 / (k + 1) ** s for k in range(n)]
        self._cum = list(itertools.accumulate(w))
        self._total = self._cum[-1]
        self._hi = len(self._cum) - 1

    def pick(self, rnd: Callable[[], float]) -> int:
        """Return an index, using ``rnd`` (a ``Random.random`` bound method) for randomness."""
        # min() guards the float edge case where rnd() * total rounds up to total.
        return min(bisect.bisect_right(self._cum, rnd() * self._total), self._hi)


def _uuid4_hex(rng: random.Random) -> str:
    """A version-4 UUID as 32 hex digits, from the seeded RNG (``uuid.uuid4()`` is not reproducible)."""
    x = (rng.getrandbits(128) & ~(0xF000 << 64) & ~(0xC000 << 48)) | (0x4000 << 64) | (0x8000 << 48)
    return f"{x:032x}"


def _uuid4(rng: random.Random) -> str:
    """A version-4 UUID in its usual dashed form, as RUM SDKs write session and view ids."""
    h = _uuid4_hex(rng)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _default_user_agents() -> list[str]:
    """The full corpus when available; a small built-in list keeps this module usable on its own."""
    try:
        from pipeline.enrich.browser import load_user_agents

        agents = list(load_user_agents())
    except (ImportError, AttributeError, OSError):
        return list(FALLBACK_USER_AGENTS)
    return agents or list(FALLBACK_USER_AGENTS)


def _order_user_agents(agents: Sequence[str]) -> list[str]:
    """Deduplicate, keeping order, and move bots and the empty UA to the rare tail."""
    unique = list(dict.fromkeys(agents))
    rare = [ua for ua in unique if not ua or any(m in ua.lower() for m in BOT_MARKERS)]
    return [ua for ua in unique if ua not in rare] + rare


def _ip_pool(rng: random.Random) -> tuple[list[str], list[str], list[str]]:
    """Build the IPv4, IPv6 and private address pools; pool order is random so hot IPs vary by country."""
    countries = list(IPV4_RANGES)
    cweights = [IPV4_RANGES[c][0] for c in countries]
    nets = {c: [ipaddress.IPv4Network(cidr) for cidr in IPV4_RANGES[c][1]] for c in countries}
    v4: list[str] = []
    for country in rng.choices(countries, weights=cweights, k=N_IPV4):
        net = rng.choice(nets[country])
        # Host part 1..254 of a /24 within the range: no .0 or .255 addresses.
        base = int(net.network_address) + (rng.randrange(max(net.num_addresses >> 8, 1)) << 8)
        x = base + rng.randint(1, 254)
        v4.append(f"{x >> 24}.{(x >> 16) & 255}.{(x >> 8) & 255}.{x & 255}")
    v6_nets = [ipaddress.IPv6Network(c) for nets6 in IPV6_RANGES.values() for c in nets6]
    v6 = []
    for _ in range(N_IPV6):
        net6 = rng.choice(v6_nets)
        v6.append(str(net6.network_address + rng.randrange(1, net6.num_addresses)))
    private = []
    for cidr in PRIVATE_RANGES:
        net = ipaddress.IPv4Network(cidr)
        private += [str(net.network_address + rng.randint(1, 65_000)) for _ in range(20)]
    return v4, v6, private


@dataclass(slots=True)
class _Session:
    id: str
    key: bytes
    user: str | None
    ua: str
    ip: str
    global_context: dict[str, str] | None
    utm: str | None
    # Per-stream state: the current view as (path, view id, url, referrer).
    view: tuple[str, str, str, str] | None = None
    # The parts of every event that never change within a session, built once
    # and shared by its events (they are serialized at once and never mutated).
    parts: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.parts = {
            "session": {"id": self.id},
            "usr": None if self.user is None else {"id": self.user},
            "network": {"client": {"ip": self.ip}},
            "http": {"useragent": self.ua},
        }


class TrafficGenerator:
    """Deterministic generator of shop traffic as raw-topic messages.

    ``seed`` fixes every byte given ``start_ms``; the default ``start_ms`` is
    "now minus ``span_ms``", so dates are recent (and then not reproducible).
    ``malformed_share`` mixes in bad messages of the three fault kinds in turn.
    Each call to :meth:`messages` starts the same stream afresh.
    """

    def __init__(
        self,
        seed: int = 0,
        malformed_share: float = 0.0,
        start_ms: int | None = None,
        span_ms: int = 3_600_000,
        user_agents: list[str] | None = None,
        *,
        jitter_ms: int = 2_000,
        null_key_share: float = 0.01,
        allow_huge: bool = False,
    ) -> None:
        if not 0.0 <= malformed_share <= 1.0:
            raise ValueError(f"malformed_share must be within [0, 1], got {malformed_share}")
        if span_ms < 0:
            raise ValueError(f"span_ms must be >= 0, got {span_ms}")
        self.seed = seed
        self.malformed_share = malformed_share
        self.span_ms = span_ms
        self.start_ms = now_ms() - span_ms if start_ms is None else start_ms
        self.jitter_ms = max(0, min(jitter_ms, span_ms // 2))
        self.null_key_share = null_key_share
        self.allow_huge = allow_huge
        rng = random.Random(f"pools:{seed}")
        self.user_agents = _order_user_agents(_default_user_agents() if user_agents is None else user_agents)
        if not self.user_agents:
            raise ValueError("user_agents must not be empty")
        self._v4, self._v6, self._private = _ip_pool(rng)
        self._z_users = ZipfSampler(N_USERS, 0.8)
        self._z_sessions = ZipfSampler(N_SESSIONS, 0.9)
        self._z_ua = ZipfSampler(len(self.user_agents), 1.0)
        self._z_v4 = ZipfSampler(len(self._v4), 1.0)
        self._z_v6 = ZipfSampler(len(self._v6), 1.0)
        self._z_items = ZipfSampler(len(CATALOG), 0.8)
        self._z_queries = ZipfSampler(len(QUERIES), 1.0)
        self._z_actions = ZipfSampler(len(ACTIONS), weights=[w for _, w in ACTIONS])
        self._user_ids = [f"u-{rng.getrandbits(40):010x}" for _ in range(N_USERS)]

    # -- pools ---------------------------------------------------------------

    def _pick_ip(self, rng: random.Random) -> str:
        """A client IP: mostly public IPv4, some IPv6, a few private (which must give no geo)."""
        r = rng.random()
        if r < PRIVATE_SHARE:
            return rng.choice(self._private)
        if r < PRIVATE_SHARE + IPV6_SHARE:
            return self._v6[self._z_v6.pick(rng.random)]
        return self._v4[self._z_v4.pick(rng.random)]

    def _user_home(self, user: int) -> tuple[str, str]:
        """A user's usual user agent and IP, the same in every stream of this seed."""
        rng = random.Random(f"user:{self.seed}:{user}")
        return self.user_agents[self._z_ua.pick(rng.random)], self._pick_ip(rng)

    def _new_session(self, idx: int) -> _Session:
        """Session ``idx``'s fixed attributes, derived from the seed and idx only (not from order)."""
        rng = random.Random(f"session:{self.seed}:{idx}")
        sid = _uuid4(rng)
        user = None if rng.random() < 0.15 else self._z_users.pick(rng.random)
        ua, ip = self._user_home(user) if user is not None else ("", "")
        # Users mostly come back from their usual device and network, not always.
        if user is None or rng.random() < 0.2:
            ua = self.user_agents[self._z_ua.pick(rng.random)]
        if user is None or rng.random() < 0.2:
            ip = self._pick_ip(rng)
        gctx = None
        if rng.random() < 0.7:  # the SDK's global context, merged into every action's context
            gctx = {"plan": "pro" if rng.random() < 0.2 else "free"}
            if rng.random() < 0.6:
                gctx["ab_test"] = "checkout_v2" if rng.random() < 0.5 else "control"
        utm = rng.choice(UTM) if rng.random() < 0.25 else None
        return _Session(sid, sid.encode(), None if user is None else self._user_ids[user], ua, ip, gctx, utm)

    # -- good actions --------------------------------------------------------

    def _action(self, rng: random.Random, name: str) -> tuple[str, dict[str, Any], str | None]:
        """Return (page path with query, action context, url hash) for an action."""
        rnd = rng.random
        if name == "search":
            q = QUERIES[self._z_queries.pick(rnd)]
            results = 0 if rnd() < 0.08 else int(math.exp(rng.uniform(0.0, 5.0)))
            return f"/search?q={quote_plus(q)}", {"query": q, "results": results}, None
        if name == "checkout":
            value = min(500.0, max(5.0, rng.lognormvariate(3.8, 0.8)))
            k = 1 + min(5, int(rng.expovariate(0.6)))
            items: list[str] = []
            while len(items) < k:  # distinct items, popular ones first
                item = CATALOG[self._z_items.pick(rnd)][0]
                if item not in items:
                    items.append(item)
            ctx = {"value": round(value, 2), "currency": "EUR", "items": items}
            return "/checkout", ctx, None
        if name in ("coupon_applied", "login", "newsletter_signup", "filter_applied"):
            if name == "coupon_applied":
                return "/cart", {"coupon": rng.choice(("WELCOME10", "SPRING5", "FREESHIP"))}, None
            if name == "login":
                return "/account/login", {"method": rng.choice(("password", "google", "apple"))}, None
            cat = CATEGORIES[rng.randrange(len(CATEGORIES))]
            if name == "filter_applied":
                return f"/category/{cat}", {"filter": rng.choice(("price", "organic", "brand"))}, None
            return (f"/category/{cat}" if rnd() < 0.5 else "/"), {"source": "footer"}, None
        # Product page actions: add_to_cart, wishlist_add, share_product.
        idx = self._z_items.pick(rnd)
        item, price, _ = CATALOG[idx]
        path = f"/product/{10_000 + 37 * idx}"
        url_hash = "reviews" if rnd() < 0.1 else None
        if name == "add_to_cart":
            qty = 1 + min(4, int(rng.expovariate(1.2)))
            return path, {"item": item, "price": price, "quantity": qty}, url_hash
        if name == "share_product":
            return path, {"item": item, "channel": rng.choice(("whatsapp", "email", "copy_link"))}, url_hash
        return path, {"item": item}, url_hash

    def _good(
        self, rng: random.Random, sessions: dict[int, _Session], date: int, progress: float
    ) -> tuple[bytes | None, dict[str, Any]]:
        """One good action (key, event) of a Zipf-drawn session, continuing that session's pages."""
        sidx = self._z_sessions.pick(rng.random)
        session = sessions.get(sidx)
        if session is None:
            session = sessions[sidx] = self._new_session(sidx)
        name = ACTIONS[self._z_actions.pick(rng.random)][0]
        path, ctx, url_hash = self._action(rng, name)
        previous = session.view
        if previous is not None and previous[0] == path:
            _, view_id, url, referrer = previous
        else:
            if previous is None:  # the session's entry page: campaign tags and external referrer
                referrer = rng.choice(EXTERNAL_REFERRERS)
                tag = session.utm
            else:
                referrer = previous[2]
                tag = rng.choice(UTM) if rng.random() < 0.03 else None
            url = BASE_URL + path
            if tag:
                url += ("&" if "?" in path else "?") + tag
            if url_hash:
                url += "#" + url_hash
            view_id = _uuid4(rng)
            session.view = (path, view_id, url, referrer)
        if session.global_context:
            ctx = {**session.global_context, **ctx}  # the action's own context wins
        parts = session.parts
        event: dict[str, Any] = {
            "type": "action",
            "date": date,
            "application": _APPLICATION,
            "service": "shop-web",
            "env": "prod",
            # A rolling deploy in the last third of the span: two versions coexist.
            "version": "1.5.0" if progress > 0.66 and sidx % 2 == 0 else "1.4.2",
            "session": parts["session"],
        }
        if session.user is not None:
            event["usr"] = parts["usr"]
        event["view"] = {"id": view_id, "url": url, "referrer": referrer, "name": path.split("?", 1)[0]}
        event["action"] = {"id": _uuid4_hex(rng), "type": "custom", "target": {"name": name}}
        event["context"] = ctx
        event["network"] = parts["network"]
        event["http"] = parts["http"]
        key = None if rng.random() < self.null_key_share else session.key
        return key, event

    # -- stream --------------------------------------------------------------

    def messages(self, n: int) -> Iterator[GeneratedMessage]:
        """Yield ``n`` messages; dates spread over the span, roughly increasing with jitter."""
        return self._stream(n, None)

    def _stream(self, n: int, bad_at: dict[int, MalformedKind] | None) -> Iterator[GeneratedMessage]:
        """The stream; ``bad_at`` fixes which positions are malformed, else ``malformed_share`` decides."""
        rng = random.Random(f"stream:{self.seed}")
        sessions: dict[int, _Session] = {}
        step = self.span_ms / max(n, 1)
        lo, hi, jitter = self.start_ms, self.start_ms + self.span_ms, self.jitter_ms
        dumps = orjson.dumps
        bad_count = 0
        for i in range(n):
            date = int(lo + step * (i + 0.5)) + (rng.randint(-jitter, jitter) if jitter else 0)
            date = hi if date > hi else lo if date < lo else date
            key, event = self._good(rng, sessions, date, (i + 0.5) / n)
            if bad_at is None:
                kind = MALFORMED_KINDS[bad_count % 3] if rng.random() < self.malformed_share else None
            else:
                kind = bad_at.get(i)
            if kind is None:
                yield GeneratedMessage(key, dumps(event), None)
            else:
                bad_count += 1
                yield GeneratedMessage(key, _corrupt(rng, event, kind, self.allow_huge), kind)


# -- malformed messages ------------------------------------------------------
# Each variant starts from a realistic action so that only the fault differs.


def _nested(depth: int) -> dict[str, Any]:
    """An object ``depth`` levels deep (itself included)."""
    node: dict[str, Any] = {"leaf": True}
    for _ in range(depth - 1):
        node = {"child": node}
    return node


def _corrupt(rng: random.Random, event: dict[str, Any], kind: MalformedKind, allow_huge: bool) -> bytes:
    """Return the bytes of ``event`` broken in one way of the given fault kind."""
    good = orjson.dumps(event)
    if kind == "parse":
        variant = rng.randrange(5)
        if variant == 0:  # truncated: any strict prefix of a JSON object is invalid
            return good[: rng.randrange(1, len(good) - 1)]
        if variant == 1:  # a UTF-16 byte-order mark: invalid UTF-8 from the first byte
            return b"\xff\xfe" + good
        if variant == 2:  # invalid UTF-8 inside a string value, the JSON otherwise fine
            return good.replace(b'"shop-web"', b'"shop-\xc3web"', 1)
        if variant == 3:  # NaN is not JSON
            return good.replace(b'"type":"action"', b'"type":"action","ratio":NaN', 1)
        return rng.choice(
            (
                b"checkout value=42.12 items=tomato,strawberries",
                b"<html><body><h1>502 Bad Gateway</h1></body></html>",
                b"{'type': 'action', 'date': 1764340000000}",
                b"",
            )
        )
    if kind == "schema":
        # Valid JSON that the raw-action schema rejects; the validator accepts
        # only type "action" with action.type "custom" (custom actions only).
        variant = rng.randrange(6)
        if variant == 0:
            del event["action"]["target"]["name"]
        elif variant == 1:
            event["type"] = "view"
        elif variant == 2:
            event["date"] = str(event["date"])
        elif variant == 3:
            event["context"] = rng.choice((list(event["context"]), "value=42.12", 42))
        elif variant == 4:
            event["action"]["type"] = "click"
        else:
            return orjson.dumps([event])  # an array, not an object
        return orjson.dumps(event)
    variant = rng.randrange(3 if allow_huge else 2)
    if variant == 0:  # nesting deeper than the limit, inside context
        event["context"]["details"] = _nested(MAX_CONTEXT_DEPTH + rng.randint(5, 30))
    elif variant == 1:  # more attributes than the limit, still far below 1 MiB
        width = MAX_CONTEXT_ATTRIBUTES + rng.randint(50, 1000)
        event["context"] = {f"attr_{i:04d}": i for i in range(width)}
    else:  # just over 1 MiB: also over Kafka's default message size
        event["context"]["blob"] = "x" * (ONE_MIB + 1024)
    return orjson.dumps(event)


def exact_malformed(n: int, malformed: int, seed: int = 0, **kw: Any) -> list[GeneratedMessage]:
    """``n`` messages with exactly ``malformed`` bad ones, kinds in turn, positions spread over the stream.

    Extra keyword arguments go to :class:`TrafficGenerator` (``malformed_share`` is ignored).
    """
    if not 0 <= malformed <= n:
        raise ValueError(f"malformed must be within [0, {n}], got {malformed}")
    kw.pop("malformed_share", None)
    gen = TrafficGenerator(seed=seed, **kw)
    rng = random.Random(f"positions:{seed}")
    # One bad message in each of ``malformed`` equal strides, at a random offset within it.
    bad_at: dict[int, MalformedKind] = {}
    for j in range(malformed):
        lo, hi = j * n // malformed, (j + 1) * n // malformed
        bad_at[rng.randrange(lo, hi)] = MALFORMED_KINDS[j % 3]
    return list(gen._stream(n, bad_at))
