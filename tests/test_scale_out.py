"""Scale out: two separate ``gunicorn app:app`` instances sharing one real ``redis-server``.

The promises of one instance hold across many: a message delivered to both is answered once, one customer's
messages are answered in order whichever instance received them, a ``kill -9`` mid-job is answered exactly once by
the other instance, and a Redis outage is a 503 (Meta redelivers) that heals by itself.
"""

from __future__ import annotations

import concurrent.futures
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from tests.redis_server import RedisServer
from whatsapp.store.redis import RedisStore
from whatsapp.testing import webhooks as wh
from whatsapp.testing.service import Service, base_environment

CUSTOMER = wh.DEFAULT_SENDER
OTHER_CUSTOMER = "447700900123"
LEASE = "3"  # seconds: short, so that a dead instance's claim comes back quickly in the tests


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def instance(tmp_path, fakes, redis_server) -> Iterator[Callable[..., Service]]:
    """``instance(name, hostname=None, **environment)`` starts one more gunicorn on the shared Redis."""
    graph, model = fakes
    started: list[Service] = []

    def start(name: str, hostname: str | None = None, **environment: str) -> Service:
        workdir = tmp_path / name
        workdir.mkdir()
        env = base_environment(graph.url, model.url + "/v1", workdir / "unused.db")
        env.update({"AK_STORE__URL": redis_server.url, "AK_WORKER__LEASE_SECONDS": LEASE, **environment})
        service = Service(workdir, env, workers=2, threads=4, hostname=hostname)
        started.append(service)
        return service.start()

    yield start
    for service in started:
        service.stop()


def can_take_another_hostname() -> bool:
    try:
        return subprocess.run(["unshare", "--uts", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_eight_deliveries_of_one_message_over_two_instances_are_answered_once(instance, fakes):
    graph, model = fakes
    a, b = instance("a"), instance("b")
    payload = wh.webhook(wh.text_message("answer me once"))
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda n: (a, b)[n % 2].post(payload).status_code, range(8)))
    assert statuses == [200] * 8
    [reply] = graph.wait_for_texts(1)
    assert reply["body"] == "You said: answer me once"
    # The shared store holds one message, finished, and nothing open: no instance has anything left to answer.
    counts = a.wait_until_idle()["store"]["messages"]
    assert counts == b.health()["store"]["messages"] == {**dict.fromkeys(counts, 0), "done": 1}
    assert len(graph.sent_texts()) == 1
    assert len(model.chat_requests()) == 1


def test_one_customers_messages_sent_alternately_to_two_instances_are_answered_in_order(instance, fakes):
    graph, model = fakes
    a, b = instance("a"), instance("b")
    model.hold_first()  # the first answer is slow: the others must wait for it, on either instance
    messages = [wh.text_message(f"question {n}", timestamp=str(wh.RECENT + n)) for n in range(3)]
    for service, message in zip((a, b, a), messages, strict=True):
        assert service.post(wh.webhook(message)).status_code == 200
    model.wait_for_requests(1)
    # Once another customer's newer message is answered, the shared store has handed out a claim since questions 1
    # and 2 were recorded, and it was not one of them.
    assert b.post(wh.webhook(wh.text_message("quick one", sender=OTHER_CUSTOMER))).status_code == 200
    graph.wait_for_texts(1, to=OTHER_CUSTOMER)
    assert len(model.chat_requests()) == 2 and graph.sent_texts(to=CUSTOMER) == []
    model.release()
    replies = graph.wait_for_texts(3, to=CUSTOMER)
    assert [r["body"] for r in replies] == ["You said: question 0", "You said: question 1", "You said: question 2"]
    assert [r["reply_to"] for r in replies] == [m["id"] for m in messages]


@pytest.mark.parametrize("where", ["same host", "another host"])
def test_kill_9_of_an_instance_mid_job_is_answered_once_by_the_other(instance, fakes, redis_server, where):
    """Same host: the other instance sees the dead pid. Another host: only the lease's expiry brings it back."""
    graph, model = fakes
    if where == "another host" and not can_take_another_hostname():
        pytest.skip("unshare --uts is not permitted here (needs root)")
    hostnames = ("host-a", "host-b") if where == "another host" else (None, None)
    a = instance("a", hostname=hostnames[0])
    model.hold()
    message = wh.text_message("do not lose me")
    assert a.post(wh.webhook(message)).status_code == 200
    model.wait_for_requests(1)  # instance a holds the message and waits for the model
    b = instance("b", hostname=hostnames[1])
    a.kill()
    killed_at = time.monotonic()
    model.release()  # a's request is answered to a dead socket; b's is not held
    [reply] = graph.wait_for_texts(1, timeout=20)
    answered_in = time.monotonic() - killed_at
    assert reply["body"] == "You said: do not lose me" and reply["reply_to"] == message["id"]
    b.wait_until_idle()  # the message is finished and nothing is open: nothing more can be sent
    assert len(graph.sent_texts()) == 1
    store = RedisStore(redis_server.url)
    stored = store.get(message["id"])
    store.close()
    assert (stored.state, stored.attempts) == ("done", 2)
    assert [r.wamid is not None for r in stored.replies] == [True]
    assert answered_in < float(LEASE) + 6, f"answered {answered_in:.1f}s after the kill"
    print(f"{where}: answered {answered_in:.1f}s after kill -9 (lease {LEASE}s)")


def test_a_redis_outage_is_a_503_and_the_service_resumes_by_itself(instance, fakes, redis_server):
    graph, model = fakes
    a = instance("a")
    assert a.post(wh.webhook(wh.text_message("before the outage"))).status_code == 200
    graph.wait_for_texts(1)
    a.wait_until_idle()

    redis_server.stop()
    during = wh.webhook(wh.text_message("during the outage"))
    assert a.post(during).status_code == 503  # never a 200 for a message that was not recorded: Meta redelivers
    health = a.health_response()
    assert health.status_code == 503
    assert health.json()["store"]["reachable"] is False

    redis_server.start()  # same port, same append-only file; the instance is not restarted
    deadline = time.monotonic() + 15
    while (health := a.health_response()).status_code != 200:
        assert time.monotonic() < deadline, health.text
        time.sleep(0.2)
    assert health.json()["store"]["reachable"] is True
    assert health.json()["store"]["messages"]["done"] == 1  # what was recorded before the outage is still there
    assert a.post(during).status_code == 200  # Meta's redelivery
    replies = graph.wait_for_texts(2, timeout=20)
    assert [r["body"] for r in replies] == ["You said: before the outage", "You said: during the outage"]
    a.wait_until_idle()
    assert len(graph.sent_texts()) == 2
