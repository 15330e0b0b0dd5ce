"""GET /metrics in one process: every figure is there and moves with what happens."""

from __future__ import annotations

from collections.abc import Callable

from metrics_scrape import DEPLOY, Samples, dashboard_queries, moved, parse, value
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from sessioncookie import as_session
from starlette.testclient import TestClient

from helpers import ADMIN_KEY, PASSWORD, device, login, service_settings, wait_for
from redis_server import RedisServer
from sessionhub.service.app import create_app
from sessionhub.service.metrics import REGISTRY, Observations

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
FAST = {"REFRESH_INTERVAL": 0.1}

EXPECTED = {
    "sessionhub_sessions_active",
    "sessionhub_sessions_created",
    "sessionhub_sessions_destroyed",
    "sessionhub_session_duration_seconds",
    "sessionhub_redis_up",
    "sessionhub_degraded",
    "sessionhub_degraded_transitions",
    "sessionhub_redis_command_duration_seconds",
    "sessionhub_memory_store_sessions",
    "sessionhub_memory_store_evictions",
    "sessionhub_online_users",
    "sessionhub_messages_sent",
    "sessionhub_messages_delivered",
    "sessionhub_logins",
    "sessionhub_http_requests",
    "sessionhub_http_request_duration_seconds",
}


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def test_every_metric_is_exported(client: TestClient) -> None:
    """Each metric of the issue is in the exposition, under its Prometheus family name."""
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name for f in text_string_to_metric_families(client.get("/metrics").text)}
    assert families >= EXPECTED


def test_session_and_login_counters_move(
    make_client: Callable[..., TestClient], redis_url: str
) -> None:
    """Logins by result, sessions created and destroyed by reason, and their durations."""
    client = make_client(
        redis_url, session={"MAX_PER_USER": 2}, auth={"MAX_ATTEMPTS": 1}, metrics=FAST
    )
    before = scrape(client)
    device(client, "alice", "one")
    two = device(client, "alice", "two")
    device(client, "alice", "three")  # over MAX_PER_USER: the oldest goes ("limit")
    assert client.post("/api/auth/logout", headers=as_session(two)).json()["data"]["logged_out"]
    device(client, "bob", "one")
    device(client, "bob", "two")
    oldest = client.get("/api/users/bob/sessions", headers=ADMIN).json()["data"]["sessions"][0]
    assert (
        client.delete(f"/api/users/bob/sessions/{oldest['id']}", headers=ADMIN).status_code == 200
    )
    four = device(client, "alice", "four")
    revoked = client.post("/api/me/sessions/revoke-others", headers=as_session(four))
    assert revoked.json()["data"]["revoked"] == 1
    client.post("/api/auth/login", json={"username": "carol", "password": "wrong"})
    throttled = client.post("/api/auth/login", json={"username": "carol", "password": "wrong"})
    assert throttled.status_code == 429
    after = scrape(client)
    delta = moved(before, after)
    assert delta("sessionhub_logins_total", result="ok") == 6
    assert delta("sessionhub_logins_total", result="invalid") == 1
    assert delta("sessionhub_logins_total", result="throttled") == 1
    assert delta("sessionhub_sessions_created_total") == 6
    for reason in ("limit", "logout", "admin", "revoked"):
        assert delta("sessionhub_sessions_destroyed_total", reason=reason) == 1, reason
    assert delta("sessionhub_session_duration_seconds_count") == 4
    wait_for(lambda: value(scrape(client), "sessionhub_sessions_active", store="redis") == 2)
    assert value(after, "sessionhub_redis_up") == 1
    assert value(after, "sessionhub_degraded") == 0


def test_http_requests_are_labelled_by_route_template(client: TestClient) -> None:
    """The route label is the template, never the path; an unknown path is ``unmatched``."""
    before = scrape(client)
    client.get("/api/users/someone/sessions", headers=ADMIN)
    client.get("/api/users/other/sessions", headers=ADMIN)
    client.get("/no/such/path")
    after = scrape(client)
    delta = moved(before, after)
    route = "/api/users/{user_id}/sessions"
    assert delta("sessionhub_http_requests_total", route=route, method="GET", status="200") == 2
    assert delta("sessionhub_http_requests_total", route="unmatched", method="GET", status="404")
    assert delta("sessionhub_http_request_duration_seconds_count", route=route, method="GET") == 2
    assert not [key for key in after if ("route", "/api/users/someone/sessions") in key[1]]


def test_messages_sent_and_delivered(client: TestClient) -> None:
    """Messages stored (direct, admin, broadcast) and pushed on the live stream are counted."""
    before = scrape(client)
    bob = device(client, "bob")
    for body in ("one", "two"):
        sent = client.post("/api/users/bob/messages", json={"body": body}, headers=ADMIN)
        assert sent.status_code == 201
    broadcast = client.post("/api/messages/broadcast", json={"body": "all"}, headers=ADMIN)
    recipients = broadcast.json()["data"]["recipients"]
    with client.stream("GET", "/api/me/messages/stream", headers=as_session(bob)) as stream:
        events = 0
        for line in stream.iter_lines():
            events += line.startswith("data: ")
            if events == 3:
                break
    after = scrape(client)
    delta = moved(before, after)
    assert delta("sessionhub_messages_sent_total") == 2 + recipients
    assert delta("sessionhub_messages_delivered_total") == 3
    assert value(after, "sessionhub_online_users") >= 0
    wait_for(lambda: value(scrape(client), "sessionhub_online_users") == 1)


def test_redis_calls_are_timed_by_script_or_command(
    make_client: Callable[..., TestClient], redis_url: str
) -> None:
    """Each Redis round trip lands in the histogram under its script or command name."""
    # Every read goes to Redis (no answers from the local cache), so the read is a round trip.
    client = make_client(redis_url, session={"REFRESH_THRESHOLD": 0})
    before = scrape(client)
    cookie = login(client)
    client.get("/api/auth/me", headers=as_session(cookie))
    delta = moved(before, scrape(client))
    name = "sessionhub_redis_command_duration_seconds_count"
    assert delta(name, operation="load") >= 1
    assert delta(name, operation="put+user_add") == 1


def test_sessions_that_idle_out_count_as_expired(
    make_client: Callable[..., TestClient], redis_url: str
) -> None:
    """A session left to idle out in Redis is counted once, with reason ``expired``."""
    client = make_client(redis_url, session={"EXPIRES": 1, "ABSOLUTE_LIFETIME": 60}, metrics=FAST)
    before = scrape(client)
    device(client, "alice")
    wait_for(
        lambda: (
            moved(before, scrape(client))("sessionhub_sessions_destroyed_total", reason="expired")
            == 1
        )
    )
    assert value(scrape(client), "sessionhub_sessions_active", store="redis") == 0


def test_memory_store_evictions(make_client: Callable[..., TestClient], redis_url: str) -> None:
    """A mirror over MEMORY_MAX_SESSIONS evicts, and the evictions are counted."""
    client = make_client(redis_url, session={"MEMORY_MAX_SESSIONS": 1})
    before = scrape(client)
    device(client, "alice")
    device(client, "bob")
    after = scrape(client)
    assert moved(before, after)("sessionhub_memory_store_evictions_total") == 1
    assert value(after, "sessionhub_memory_store_sessions") == 1


def test_degraded_mode_is_visible(
    make_client: Callable[..., TestClient], fresh_redis_server: RedisServer
) -> None:
    """Redis killed: redis_up 0, degraded 1, a transition in; back: the reverse, and sessions
    created meanwhile are counted as held in memory only until recovery copies them."""
    client = make_client(fresh_redis_server.url, metrics=FAST)
    before = scrape(client)
    fresh_redis_server.kill()
    device(client, "alice")
    during = scrape(client)
    assert value(during, "sessionhub_redis_up") == 0
    assert value(during, "sessionhub_degraded") == 1
    assert value(during, "sessionhub_sessions_active", store="memory") == 1
    assert moved(before, during)("sessionhub_degraded_transitions_total", direction="entered") == 1
    fresh_redis_server.start()
    wait_for(lambda: value(scrape(client), "sessionhub_degraded") == 0)
    after = scrape(client)
    assert value(after, "sessionhub_redis_up") == 1
    assert moved(before, after)("sessionhub_degraded_transitions_total", direction="left") == 1
    assert value(after, "sessionhub_sessions_active", store="memory") == 0


def test_metrics_behind_the_admin_key(
    make_client: Callable[..., TestClient], redis_url: str
) -> None:
    """With METRICS.REQUIRE_AUTH the endpoint wants the admin key like the admin API."""
    client = make_client(redis_url, metrics={"REQUIRE_AUTH": True})
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.get("/metrics", headers=ADMIN).status_code == 200


def test_metrics_can_be_switched_off(
    make_client: Callable[..., TestClient], redis_url: str
) -> None:
    """Without METRICS.ENABLED there is no /metrics, and logins still work."""
    client = make_client(redis_url, metrics={"ENABLED": False})
    assert client.get("/metrics").status_code == 404
    response = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 200


def test_redis_figures_in_stats_and_health(client: TestClient) -> None:
    """Stats and health show Redis's own figures, as the background read found them."""
    for path in ("/api/session/stats", "/api/health/redis"):
        info = client.get(path).json()["data"]["redis_info"]
        assert info["role"] == "master"
        assert info["used_memory"] > 0
        assert info["connected_clients"] >= 1
        assert info["maxmemory"] == 0
        assert info["evicted_keys"] == 0


def test_the_grafana_dashboard_shows_every_metric() -> None:
    """The provisioned dashboard queries every metric, and Prometheus scrapes /metrics."""
    import yaml

    queries = " ".join(expr for _, expr in dashboard_queries())
    for family in EXPECTED:
        assert family in queries, family
    scrape = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())["scrape_configs"][0]
    assert scrape["metrics_path"] == "/metrics"


def test_observations_flushed_in_bulk_equal_one_by_one() -> None:
    """Observations gathered on the request path and flushed expose exactly the samples that
    Histogram.observe and Counter.inc called for each would, bucket bounds included."""

    def metrics(registry: CollectorRegistry) -> tuple[Histogram, Counter]:
        histogram = Histogram("t", "t", ["route", "method"], buckets=(0.001, 0.01, 1.0),
                              registry=registry)  # fmt: skip
        return histogram, Counter("c", "c", ["route", "method", "status"], registry=registry)

    bulk, single = CollectorRegistry(), CollectorRegistry()
    histogram, counter = metrics(bulk)
    one_by_one, each = metrics(single)
    observations = Observations(histogram, counter)
    made = [
        (("/a", "GET", 200), 0.0),
        (("/a", "GET", 200), 0.001),  # on a bound: that bucket (le is inclusive)
        (("/a", "GET", 200), 0.0011),
        (("/a", "GET", 404), 0.5),
        (("/b", "POST", 200), 7.0),  # beyond the last bound: +Inf only
    ]
    for round_ in range(2):  # a second flush adds to the first
        for key, seconds in made[round_:]:
            observations.observe(key, seconds)
            one_by_one.labels(key[0], key[1]).observe(seconds)
            each.labels(*map(str, key)).inc()
        if round_ == 0:
            assert generate_latest(bulk) != generate_latest(single)  # nothing flushed yet
        observations.flush()
        assert generate_latest(bulk) == generate_latest(single)


def test_an_app_that_stops_writes_what_it_still_held(redis_url: str) -> None:
    """Requests answered and never scraped are in the process's metrics once the app stops
    (with several workers, what a stopping worker writes to its file)."""

    def served() -> float:
        samples = parse(generate_latest(REGISTRY).decode())
        return value(samples, "sessionhub_http_requests_total", route="/healthz", method="GET",
                     status="200")  # fmt: skip

    before = served()
    with TestClient(create_app(service_settings(redis_url))) as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
        assert served() == before  # held by the app until a scrape or its end
    assert served() == before + 3
