"""Metrics: plain counters the core bumps, turned into Prometheus families at scrape time.

The hot paths only add to ints and dicts (no library call, no lock); ``collect`` reads
them, and the hub's own tables, when ``/metrics`` is scraped. Every label has a bounded
set of values: close codes, command names, route templates, configured namespaces,
failure reasons. Never a user id, a channel name or a client-chosen message type.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Final, Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

if TYPE_CHECKING:
    from .broker import Broker
    from .channels import Access
    from .hub import Hub

LATENCY_BUCKETS: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


class Histogram:
    """Fixed buckets, cumulative at scrape time; ``observe`` is a bisect and two adds."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def family(self, name: str, doc: str) -> HistogramMetricFamily:
        buckets = []
        running = 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            buckets.append((bound, running))
        return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=self.total)


class Metrics:
    """What one node counts. Attributes are bumped directly by the modules that know."""

    def __init__(self) -> None:
        self.connects = 0
        self.disconnects: Counter[str] = Counter()  # by close code
        self.rejections: Counter[str] = Counter()  # closed before open, by close code
        self.auth_failures: Counter[str] = Counter()  # by reason
        # Handshakes refused before the upgrade by admission control, by reason.
        self.admission_refusals: Counter[str] = Counter()
        self.pending_connections = 0  # WebSockets open without a token, not yet authenticated
        self.rate_limited = 0  # client messages refused with RATE_LIMIT
        self.messages_in: Counter[str] = Counter()  # by command name, or "invalid"
        # Messages queued to connections by kind: channel, user, role, broadcast,
        # notification, inbox_event, reply (the server's own answers and welcomes).
        self.sent: Counter[str] = Counter()
        self.api_requests: Counter[tuple[str, str, str]] = Counter()  # method, route, status
        # Email, push and SMS deliveries by (channel, outcome): sent, failed, retried,
        # skipped, deferred, cancelled (the escalation worker counts them).
        self.deliveries: Counter[tuple[str, str]] = Counter()
        self.publish_seconds = Histogram()
        self.store_create_seconds = Histogram()
        self.store_errors = 0
        self.recovered = 0  # subscriptions that recovered missed publications
        # Live notifications not acked / not delivered, counted at most every 15 s.
        self.backlog: tuple[int, int] | None = None
        self.backlog_at: float | None = None
        self.broker_publish_seconds = Histogram()


class Source(Protocol):
    """What the collector reads: a node's counters and tables (``node.Node`` is one)."""

    @property
    def metrics(self) -> Metrics: ...
    @property
    def hub(self) -> Hub: ...
    @property
    def access(self) -> Access: ...
    @property
    def broker(self) -> Broker: ...
    @property
    def broker_errors(self) -> int: ...


class Collector:
    """A prometheus_client collector for one node (register it in a private registry)."""

    def __init__(self, node: Source) -> None:
        self.node = node

    def describe(self) -> list[Metric]:
        return []  # only collected on demand, in a registry of its own

    def collect(self) -> Iterator[Metric]:
        node = self.node
        m = node.metrics
        hub = node.hub
        yield GaugeMetricFamily(
            "tidings_connections",
            "Open, authenticated WebSocket connections",
            value=hub.connection_count(),
        )
        yield GaugeMetricFamily(
            "tidings_users", "Users with at least one connection", value=hub.user_count()
        )
        subs = GaugeMetricFamily(
            "tidings_subscriptions",
            "Subscriptions by namespace (unconfigured namespaces count as '*')",
            labels=["namespace"],
        )
        by_ns: Counter[str] = Counter()
        for channel, count in hub.channel_counts().items():
            ns = channel.partition(":")[0]
            by_ns[ns if ns in node.access.namespaces else "*"] += count
        for ns, count in sorted(by_ns.items()):
            subs.add_metric([ns], count)
        yield subs
        yield CounterMetricFamily(
            "tidings_connects", "Connections opened (authenticated)", value=m.connects
        )
        closes = CounterMetricFamily(
            "tidings_disconnects", "Connections closed, by close code", labels=["code"]
        )
        for code, count in sorted(m.disconnects.items()):
            closes.add_metric([code], count)
        yield closes
        rejected = CounterMetricFamily(
            "tidings_rejections",
            "Connections closed before they were open (token, origin, caps), by close code",
            labels=["code"],
        )
        for code, count in sorted(m.rejections.items()):
            rejected.add_metric([code], count)
        yield rejected
        admission = CounterMetricFamily(
            "tidings_admission_refusals",
            "Handshakes refused before the upgrade (connection_rate, auth_failures, "
            "pending_per_address, pending, origin, version)",
            labels=["reason"],
        )
        for reason, count in sorted(m.admission_refusals.items()):
            admission.add_metric([reason], count)
        yield admission
        yield GaugeMetricFamily(
            "tidings_pending_connections",
            "WebSockets opened without a token and not yet authenticated",
            value=m.pending_connections,
        )
        failures = CounterMetricFamily(
            "tidings_auth_failures", "Refused authentications, by reason", labels=["reason"]
        )
        for reason, count in sorted(m.auth_failures.items()):
            failures.add_metric([reason], count)
        yield failures
        yield CounterMetricFamily(
            "tidings_rate_limited",
            "Client messages refused by the rate limit",
            value=m.rate_limited,
        )
        yield CounterMetricFamily(
            "tidings_slow_consumer_closes",
            "Connections closed for not reading (4008)",
            value=m.disconnects.get("4008", 0),
        )
        yield CounterMetricFamily(
            "tidings_dropped_messages",
            "Messages not queued because their connection was closing",
            value=hub.dropped,
        )
        received = CounterMetricFamily(
            "tidings_messages_in", "Client messages, by type", labels=["type"]
        )
        for kind, count in sorted(m.messages_in.items()):
            received.add_metric([kind], count)
        yield received
        yield CounterMetricFamily(
            "tidings_messages_out", "Messages queued to connections", value=hub.messages_out
        )
        sent = CounterMetricFamily(
            "tidings_messages_sent",
            "Messages queued to connections, by kind (channel, user, role, broadcast, "
            "notification, inbox_event, reply)",
            labels=["kind"],
        )
        for kind, count in sorted(m.sent.items()):
            sent.add_metric([kind], count)
        yield sent
        yield m.publish_seconds.family(
            "tidings_publish_seconds",
            "From a publication's arrival to the last recipient's "
            "queue (serialize, filter, fan out)",
        )
        api = CounterMetricFamily(
            "tidings_api_requests",
            "HTTP API requests by route and status",
            labels=["method", "route", "status"],
        )
        for (method, route, status), count in sorted(m.api_requests.items()):
            api.add_metric([method, route, status], count)
        yield api
        yield m.store_create_seconds.family(
            "tidings_store_create_seconds",
            "Store create calls, arrival to commit (group commit included)",
        )
        yield CounterMetricFamily(
            "tidings_store_errors", "Store operations that failed", value=m.store_errors
        )
        deliveries = CounterMetricFamily(
            "tidings_deliveries",
            "Email, push and SMS delivery outcomes by channel (sent, failed, retried, "
            "skipped, deferred, cancelled)",
            labels=["channel", "outcome"],
        )
        for (channel, outcome), count in sorted(m.deliveries.items()):
            deliveries.add_metric([channel, outcome], count)
        yield deliveries
        if m.backlog is not None:
            backlog = GaugeMetricFamily(
                "tidings_inbox_backlog",
                "Live stored notifications not yet acknowledged / never delivered "
                "(over every user; refreshed at most every 15 s)",
                labels=["state"],
            )
            backlog.add_metric(["unacked"], m.backlog[0])
            backlog.add_metric(["undelivered"], m.backlog[1])
            yield backlog
        yield CounterMetricFamily(
            "tidings_recoveries",
            "Subscriptions that recovered missed channel publications",
            value=m.recovered,
        )
        yield GaugeMetricFamily(
            "tidings_broker_up",
            "1 while the broker link is up (always 1 on a single instance)",
            value=1 if node.broker.healthy else 0,
        )
        yield m.broker_publish_seconds.family(
            "tidings_broker_publish_seconds", "Broker publish calls, from call to accepted"
        )
        yield CounterMetricFamily(
            "tidings_broker_errors",
            "Publications the broker could not take (answered 503 / UNAVAILABLE)",
            value=node.broker_errors,
        )
