"""Prometheus metrics shared by every service (HTTP, consumers, outbox, timers)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "regulars_http_requests_total", "HTTP requests answered", ["service", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "regulars_http_request_seconds",
    "HTTP request latency",
    ["service", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
EVENTS_CONSUMED = Counter(
    "regulars_events_consumed_total", "Events handled by a consumer", ["service", "type", "result"]
)
DEAD_LETTERS = Counter(
    "regulars_dead_letters_total", "Events parked on the dead-letter topic", ["service", "topic"]
)
CONSUMER_LAG = Gauge(
    "regulars_consumer_lag", "Records behind the partition's high watermark", ["service", "topic"]
)
OUTBOX_BACKLOG = Gauge("regulars_outbox_backlog", "Outbox rows not yet published", ["service"])
OUTBOX_PUBLISHED = Counter(
    "regulars_outbox_published_total", "Outbox rows published to Kafka", ["service"]
)
BROKER_CHANGES = Counter(
    "regulars_broker_changes_total",
    "Times the relay saw a new Kafka cluster and re-published its retained outbox",
    ["service"],
)
TIMER_LAG = Histogram(
    "regulars_timer_lag_seconds",
    "How late a durable timer fired after its moment",
    ["service"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 30),
)
RATE_LIMITED = Counter(
    "regulars_rate_limited_total",
    "Requests refused with 429 by a rate limit, by the limit's name",
    ["service", "limit"],
)
API_KEY_LOOKUPS = Counter(
    "regulars_api_key_lookups_total",
    "API keys looked up in the database (a cached answer, good or bad, is not counted)",
    ["service", "result"],
)
