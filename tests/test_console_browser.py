"""The admin console as a person sees it: headless Chromium on a follower's console of a running
three-member cluster. The page must name the leader, list the three members with their
roles, and put a key through its form that then reads back. Leaves artifacts/console.png."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests import processes, webdriver
from tests.waiting import wait_for

pytestmark = pytest.mark.processes
process_clusters = processes.process_clusters   # the fixture, made visible to this module's tests

SCREENSHOT = Path(__file__).resolve().parent.parent / "artifacts" / "console.png"

#: The console polls every second; a few polls, plus the page's first load in a cold browser.
PAGE_TIMEOUT = 15.0

MEMBER_ROWS = ("return Array.from(document.querySelectorAll('#members tbody tr'))"
               ".map(row => [row.dataset.member, row.dataset.role]);")


@pytest.fixture
def browser(tmp_path):
    if not webdriver.available():
        pytest.skip("needs Debian's chromium and chromium-driver (scripts/test installs them when run as root)")
    browser = webdriver.Browser(tmp_path / "browser")
    yield browser
    browser.close()


def test_console_shows_the_leader_and_three_members_and_puts_a_key_through_its_form(process_clusters, browser):
    cluster = process_clusters(3).start_all()
    leader = cluster.leader()
    follower = next(m for m in cluster if m is not leader)

    browser.open(follower.admin_url + "/")
    wait_for(lambda: browser.text("#leader") == leader.binding, PAGE_TIMEOUT, "the console to name the leader")
    expected = sorted([m.binding, "Leader" if m is leader else "Follower"] for m in cluster)
    wait_for(lambda: sorted(browser.script(MEMBER_ROWS)) == expected, PAGE_TIMEOUT,
             f"the members table to show {expected}")
    wait_for(lambda: "Reads: ReadIndex" in browser.text("#leader-uptime"), PAGE_TIMEOUT,
             "the console to say how the leader confirms reads")

    browser.type("#kv-key", "greeting")
    browser.type("#kv-value", "hello from the console")
    browser.click("#kv-put")
    wait_for(lambda: browser.text("#kv-result").startswith("200"), PAGE_TIMEOUT, "the put to be answered")
    browser.click("#kv-get")
    wait_for(lambda: browser.text("#kv-result") == "200 OK\nhello from the console", PAGE_TIMEOUT,
             "the form to read the key back")

    answer = leader.client().get("greeting")   # the page's write went through Raft, not just the page
    assert (answer.status, answer.json()["value"]) == (200, "hello from the console")
    browser.screenshot(SCREENSHOT)
