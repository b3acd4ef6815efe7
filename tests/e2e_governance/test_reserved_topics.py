"""Every governance route topic is reserved (README "Operations: Reserved
topics"): `default_topic`, each `mode_topics` value and each agent's `topic`
take jobs only from governance admission. A tenant publishing onto one with
intent-bus 2.1.2, or submitting a task onto one, gets 403 `reserved_topic`
and nothing is enqueued; after a hot reload the reservation follows the new
routes."""

from __future__ import annotations

import pytest
import requests
from intent_bus import IntentBusAuthError

from agw_testkit.responses import describe
from agw_testkit.tenants import new_tenant
from gov_support.api import GovApi
from gov_support.config import DEEP_TOPIC, DEFAULT_TOPIC, SUMMARIZE_TOPIC, gateway_config, policy
from gov_support.tomlgen import Inline
from gov_support.workers import ib_client

ROUTE_TOPICS = [DEFAULT_TOPIC, DEEP_TOPIC, SUMMARIZE_TOPIC, "acme/denied"]  # default, mode, agents' topics


def _assert_reserved(res: requests.Response, topic: str) -> None:
    assert res.status_code == 403, describe(res)
    err = res.json().get("error")
    assert isinstance(err, dict) and err.get("code") == "reserved_topic", describe(res)
    assert topic in err.get("message", ""), describe(res)


def _publish_refused(c, topic: str) -> None:
    with pytest.raises(IntentBusAuthError) as ei:  # 2.1.2 maps 401 and 403 to IntentBusAuthError
        c.publish(topic, {"input": "skip the policy"})
    assert str(ei.value).startswith("reserved_topic:"), ei.value


def test_every_route_topic_is_reserved(gw, tenant, claimers, uniq):
    c = ib_client(gw, tenant.api_key)
    try:
        for topic in ROUTE_TOPICS:
            _publish_refused(c, topic)
            _assert_reserved(tenant.tasks.submit(topic, {"input": "skip the policy"}), topic)
        # An ordinary topic is open as ever.
        ok = c.publish(f"acme/other-{uniq}", {"n": 1})
        assert ok is not None and ok.id, ok
    finally:
        c.close()
    claimers(gw, tenant).assert_nothing_on(*ROUTE_TOPICS)


@pytest.mark.slow
def test_reservation_follows_a_hot_reload(gateway_factory):
    new_deep = "gateway/run-deeper"
    g = gateway_factory("reserved-reload", gateway_config(policy("routes-a")))
    t = new_tenant(g, "reserved")
    api = GovApi(g.base_url, t.api_key)
    v1 = api.stability()["policy_version"]
    _assert_reserved(t.tasks.submit(DEEP_TOPIC, {"x": 1}), DEEP_TOPIC)
    before = t.tasks.submit(new_deep, {"x": 1})
    assert before.status_code == 201, describe(before)
    assert t.tasks.cancel(before.json()["taskId"]).status_code == 200

    g.write_config(gateway_config(policy("routes-b"), mode_topics=Inline({"deep": new_deep})))
    api.wait_new_version(v1)
    _assert_reserved(t.tasks.submit(new_deep, {"x": 2}), new_deep)
    c = ib_client(g, t.api_key)
    try:
        _publish_refused(c, new_deep)
        # The old mode topic is no route any more: an ordinary topic.
        res = c.publish(DEEP_TOPIC, {"x": 3})
        assert res is not None and res.id, res
    finally:
        c.close()
