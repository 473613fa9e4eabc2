"""The admin console as a person sees it: headless Chromium on a follower's console of a running
three-member cluster. The page must name the leader, list the three members with their roles, put
a key through its form that then reads back, draw charts that move as writes arrive, and move the
leader when its transfer button is clicked and confirmed, add a member and cancel that change
while it is still catching up; with an admin token set, its actions
are refused until the token is typed in. Leaves artifacts/console.png (charts after a transfer)."""
from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from tests import processes, webdriver
from tests.netutil import free_port
from tests.waiting import wait_for

pytestmark = pytest.mark.processes
process_clusters = processes.process_clusters   # the fixture, made visible to this module's tests

SCREENSHOT = Path(__file__).resolve().parent.parent / "artifacts" / "console.png"

#: The console polls every second; a few polls, plus the page's first load in a cold browser.
PAGE_TIMEOUT = 15.0
#: A transfer waits for the target to catch up and win; the route answers once it has.
TRANSFER_TIMEOUT = 20.0

TOKEN = "console-test-token-0123456789"

MEMBER_ROWS = ("return Array.from(document.querySelectorAll('#members tbody tr'))"
               ".map(row => [row.dataset.member, row.dataset.role]);")

#: Every line of a chart: {series name: [number of points, latest value]}.
SERIES = ("return Object.fromEntries(Array.from(document.querySelectorAll(arguments[0] + ' polyline'))"
          ".map(line => [line.dataset.series, [Number(line.dataset.points), Number(line.dataset.latest)]]));")

#: The terms at which the term/leader strip marks an election.
ELECTION_MARKS = ("return Array.from(document.querySelectorAll('#timeline-chart line.election'))"
                  ".map(mark => Number(mark.dataset.term));")

#: How wide the term/leader strip draws a leader's latest band (1 when only one poll has seen it).
BAND_WIDTH = ("const bands = document.querySelectorAll(`#timeline-chart rect.run[data-leader=\"${arguments[0]}\"]`);"
              "return bands.length ? Number(bands[bands.length - 1].getAttribute('width')) : 0;")

@pytest.fixture
def browser(tmp_path):
    if not webdriver.available():
        pytest.skip("needs Debian's chromium and chromium-driver (scripts/test installs them when run as root)")
    browser = webdriver.Browser(tmp_path / "browser")
    yield browser
    browser.close()


def open_console(browser, member, leader) -> None:
    browser.open(member.admin_url + "/")
    wait_for(lambda: browser.text("#leader") == leader.binding, PAGE_TIMEOUT, "the console to name the leader")


def confirm_action(browser, button_css: str, question: str) -> None:
    """Click a cluster action's button, check the page asks ``question``, and confirm."""
    browser.click(button_css)
    assert browser.text("#confirm-question") == question
    browser.click("#confirm-yes")


def action_answer(browser, status: str) -> str:
    """The page's account of its last action, once it shows an answer whose status starts with
    ``status`` ("2": any success; a membership change may answer 202 while it goes on)."""
    return wait_for(lambda: (text := browser.text("#action-result")).startswith(status) and text,
                    TRANSFER_TIMEOUT, f"the page to show an answer {status}..")


def writing(member):
    """``with_writes(condition)``: a condition that first writes one more key through ``member``,
    so that writes keep arriving for as long as a test waits on it."""
    keys = (f"chart-{n}" for n in itertools.count())

    def with_writes(condition):
        def check():
            assert member.client().put(next(keys), "x").status == 200
            return condition()
        return check
    return with_writes


def transfer_button(member) -> str:
    return f'#members tr[data-member="{member.binding}"] button.transfer'


def test_console_shows_the_cluster_charts_its_writes_and_moves_the_leader_from_its_button(process_clusters, browser):
    cluster = process_clusters(3).start_all()
    leader = cluster.leader()
    follower, other = [m for m in cluster if m is not leader]

    open_console(browser, follower, leader)
    expected = sorted([m.binding, "Leader" if m is leader else "Follower"] for m in cluster)
    wait_for(lambda: sorted(browser.script(MEMBER_ROWS)) == expected, PAGE_TIMEOUT,
             f"the members table to show {expected}")
    uptime = wait_for(lambda: (text := browser.text("#leader-uptime")) and "Reads: ReadIndex" in text and text,
                      PAGE_TIMEOUT, "the console to say how the leader confirms reads")
    assert re.search(r"has led for \d+(\.\d)? (ms|s|min)\b", uptime), uptime   # people's units, not CKite's
    assert "milliseconds" not in browser.text("#members")

    browser.type("#kv-key", "greeting")
    browser.type("#kv-value", "hello from the console")
    browser.click("#kv-put")
    wait_for(lambda: browser.text("#kv-result").startswith("200"), PAGE_TIMEOUT, "the put to be answered")
    browser.click("#kv-get")
    wait_for(lambda: browser.text("#kv-result") == "200 OK\nhello from the console", PAGE_TIMEOUT,
             "the form to read the key back")
    answer = leader.client().get("greeting")   # the page's write went through Raft, not just the page
    assert (answer.status, answer.json()["value"]) == (200, "hello from the console")

    points_before = wait_for(lambda: browser.script(SERIES, "#commits-chart").get("commits"), PAGE_TIMEOUT,
                             "the commits chart to draw its first point")[0]
    writes = writing(follower)

    def commits_charted() -> bool:
        points, latest = browser.script(SERIES, "#commits-chart")["commits"]
        return points > points_before and latest > 0
    wait_for(writes(commits_charted), PAGE_TIMEOUT, "the commits chart to move with the writes")
    followers = {follower.binding, other.binding}
    wait_for(lambda: set(browser.script(SERIES, "#lag-chart")) == followers, PAGE_TIMEOUT,
             f"a lag line for each follower {sorted(followers)}")

    newcomer = f"127.0.0.1:{free_port()}"   # never started: its addition waits, catching up, until cancelled
    browser.type("#add-member", newcomer)
    confirm_action(browser, "#add-member-button", f"Add {newcomer} to the cluster? It catches up as a learner "
                                                  "(start it before or after), then votes.")
    assert '"state": "catching-up"' in action_answer(browser, "202")
    wait_for(lambda: browser.text("#membership-change-text")
             == f"Change in progress: adding {newcomer} (catching up)", PAGE_TIMEOUT,
             "the console to show the change in progress")
    confirm_action(browser, "#cancel-change", f"Cancel adding {newcomer}?")
    assert f'"cancelled": [\n    "{newcomer}"' in action_answer(browser, "200")
    wait_for(lambda: browser.script("return document.getElementById('membership-change').hidden;"), PAGE_TIMEOUT,
             "the change in progress to go from the page")
    assert newcomer not in cluster.status(leader)["cluster"]["members"]

    confirm_action(browser, transfer_button(other), f"Transfer leadership to {other.binding}?")
    assert f'"leader": "{other.binding}"' in action_answer(browser, "200")
    wait_for(lambda: cluster.leader() is other, TRANSFER_TIMEOUT, f"{other.name} to lead")
    wait_for(lambda: browser.text("#leader") == other.binding, PAGE_TIMEOUT, "the console to name the new leader")
    wait_for(lambda: browser.script(ELECTION_MARKS), PAGE_TIMEOUT, "the timeline to mark the election")
    wait_for(writes(lambda: browser.script(BAND_WIDTH, other.binding) > 1), PAGE_TIMEOUT,
             "the timeline to show the new leader's term over two polls")
    browser.script("window.scrollTo(0, 0);")   # the clicks scrolled down to the buttons; the charts are on top
    browser.screenshot(SCREENSHOT)


def test_console_actions_need_the_admin_token_when_the_cluster_has_one(process_clusters, browser):
    cluster = process_clusters(3, ["--admin-token", TOKEN]).start_all()
    leader = cluster.leader()
    follower, other = [m for m in cluster if m is not leader]
    open_console(browser, follower, leader)
    assert browser.script("return !document.getElementById('token-field').hidden;")

    question = f"Transfer leadership to {other.binding}?"
    confirm_action(browser, transfer_button(other), question)
    assert "This cluster needs the admin token" in action_answer(browser, "401")
    assert cluster.leader() is leader

    browser.type("#admin-token", TOKEN)
    confirm_action(browser, transfer_button(other), question)
    action_answer(browser, "200")
    wait_for(lambda: cluster.leader() is other, TRANSFER_TIMEOUT, f"{other.name} to lead")

    browser.type("#kv-key", "guarded")   # the key-value form's put carries the token too
    browser.type("#kv-value", "with the token")
    browser.click("#kv-put")
    wait_for(lambda: browser.text("#kv-result").startswith("200"), PAGE_TIMEOUT, "the put to be accepted")

    confirm_action(browser, f'#members tr[data-member="{leader.binding}"] button.remove',
                   f"Remove {leader.binding} from the cluster?")
    action_answer(browser, "2")
    left = sorted([follower.binding, other.binding])
    wait_for(lambda: sorted(row[0] for row in browser.script(MEMBER_ROWS)) == left, PAGE_TIMEOUT,
             f"the members table to show the two members left, {left}")
