"""Topology files of ``siaga rehearse``: every mistake names the file, the line and the key (exit 78)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devkit.rehearse.topology import (
    TopologyError,
    bundled_names,
    load,
    parse,
    resolve,
)
from tests.conftest import REPO

GOOD = """\
name = "kecil"
seed = 5

[[post]]
id = "ujung"
uplink = false
lat = -9.30
lon = 124.40

[[relay]]
id = "bukit-01"

[[post]]
id = "kota"
uplink = true

[[link]]
a = "ujung"
b = "bukit-01"
loss = 0.1

[[link]]
a = "bukit-01"
b = "kota"
loss = 0
snr = 6.5

[[handset]]
id = "!a1b2c3d4"
near = "ujung"

[[event]]
at = 5
handset = "!a1b2c3d4"
text = "KEBAKARAN rumah warga dusun 3"

[[event]]
at = 20
cut = ["ujung", "bukit-01"]
for = 30

[[event]]
at = 25
kill = "bukit-01"
restart = 2

[[event]]
at = 1
uplink_down = "kota"
for = 10
"""


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """The 1-based line of the ``occurrence``-th line containing ``needle``."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    return hits[occurrence - 1]


def error(text: str) -> TopologyError:
    with pytest.raises(TopologyError) as info:
        parse(text, file="t.toml")
    return info.value


def test_a_good_file_parses_into_its_parts() -> None:
    topo = parse(GOOD, file="t.toml")
    assert topo.name == "kecil" and topo.seed == 5 and topo.regency == "ttu"
    assert topo.nodes == ("ujung", "kota", "bukit-01")
    assert [p.uplink for p in topo.posts] == [False, True]
    assert topo.links[1].snr == 6.5 and topo.links[0].snr is None
    assert topo.handsets[0].near == ("ujung",) and topo.handsets[0].registered
    # sorted by time, each with the line of its [[event]] header
    assert [(e.at, e.kind) for e in topo.events] == [(1, "uplink_down"), (5, "text"), (20, "cut"), (25, "kill")]
    assert topo.events[0].line == line_of(GOOD, "[[event]]", 4)
    assert topo.events[2].link == ("ujung", "bukit-01") and topo.events[2].for_s == 30
    assert topo.events[3].node == "bukit-01" and topo.events[3].restart_s == 2
    assert topo.last_event_s == 50
    assert [e.text for e in topo.reports] == ["KEBAKARAN rumah warga dusun 3"]


@pytest.mark.parametrize("name", ["ttu.toml", "chain3.toml", "diamond.toml"])
def test_the_bundled_topologies_are_valid(name: str) -> None:
    assert name in bundled_names()
    topo = load(resolve(name.removesuffix(".toml")))
    assert topo.reports and any(p.uplink for p in topo.posts)


def test_ttu_has_a_post_without_uplink_behind_a_hilltop_relay() -> None:
    topo = load(resolve("ttu"))
    [behind] = [p for p in topo.posts if not p.uplink]
    relays = {r.id for r in topo.relays}
    neighbours = {link.b if link.a == behind.id else link.a for link in topo.links if behind.id in (link.a, link.b)}
    assert neighbours and neighbours <= relays
    assert {e.kind for e in topo.events} >= {"text", "cut", "kill", "uplink_down"}


# -- every error names the line and the key ------------------------------------------------------------
def test_unknown_key_in_a_table() -> None:
    text = GOOD.replace('id = "bukit-01"\n', 'id = "bukit-01"\nheight_m = 1200\n', 1)
    exc = error(text)
    assert (exc.line, exc.field) == (line_of(text, "height_m"), "relay[1].height_m")
    assert "is not a key of [[relay]]" in str(exc) and str(exc).startswith(f"t.toml:{exc.line}: relay[1].height_m")


def test_unknown_top_level_key_and_table() -> None:
    exc = error("nmae = 'x'\n" + GOOD)
    assert (exc.line, exc.field) == (1, "nmae")
    text = GOOD + "\n[[posts]]\nid = 'x'\n"
    exc = error(text)
    assert (exc.line, exc.field) == (line_of(text, "[[posts]]"), "posts")


def test_unknown_ids_in_link_handset_and_event() -> None:
    text = GOOD.replace('b = "kota"', 'b = "kot"')
    exc = error(text)
    assert (exc.line, exc.field) == (line_of(text, 'b = "kot"'), "link[2].b")
    assert "is not a post or relay" in exc.reason

    text = GOOD.replace('near = "ujung"', 'near = "ujung2"')
    exc = error(text)
    assert (exc.line, exc.field) == (line_of(text, "near ="), "handset[1].near")

    text = GOOD.replace('kill = "bukit-01"', 'kill = "bukit-02"')
    exc = error(text)
    assert (exc.line, exc.field) == (line_of(text, "kill ="), "event[3].kill")

    text = GOOD.replace('handset = "!a1b2c3d4"', 'handset = "!a1b2c3d9"')
    exc = error(text)
    assert (exc.line, exc.field) == (line_of(text, 'handset = "!a1b2c3d9"'), "event[1].handset")


def test_cut_must_name_an_existing_link_and_uplink_down_a_post_with_uplink() -> None:
    text = GOOD.replace('cut = ["ujung", "bukit-01"]', 'cut = ["ujung", "kota"]')
    exc = error(text)
    assert (exc.line, exc.field) == (line_of(text, "cut ="), "event[2].cut")
    assert "is not a [[link]]" in exc.reason
    text = GOOD.replace('uplink_down = "kota"', 'uplink_down = "ujung"')
    exc = error(text)
    assert (exc.line, exc.field) == (line_of(text, "uplink_down ="), "event[4].uplink_down")
    assert "without uplink" in exc.reason
    text = GOOD.replace('uplink_down = "kota"', 'uplink_down = "bukit-01"')
    assert "is a relay" in error(text).reason


def test_link_to_itself() -> None:
    text = GOOD.replace('a = "bukit-01"\nb = "kota"', 'a = "kota"\nb = "kota"')
    exc = error(text)
    assert (exc.line, exc.field) == (line_of(text, 'b = "kota"'), "link[2].b")
    assert "itself" in exc.reason


def test_duplicate_link() -> None:
    text = GOOD + '\n[[link]]\na = "bukit-01"\nb = "ujung"\nloss = 0.2\n'
    exc = error(text)
    assert (exc.line, exc.field) == (line_of(text, 'b = "ujung"'), "link[3].b")
    assert "duplicates link[1]" in exc.reason


def test_duplicate_ids() -> None:
    text = GOOD.replace('[[relay]]\nid = "bukit-01"', '[[relay]]\nid = "ujung"')
    exc = error(text)
    assert (exc.line, exc.field) == (line_of(text, 'id = "ujung"', 2), "relay[1].id")
    assert "post[1]" in exc.reason

    text = GOOD + '\n[[handset]]\nid = "!a1b2c3d4"\nnear = "kota"\n'
    exc = error(text)
    assert (exc.line, exc.field) == (line_of(text, 'id = "!a1b2c3d4"', 2), "handset[2].id")


def test_loss_out_of_range() -> None:
    for bad in ("1.5", "-0.1"):
        text = GOOD.replace("loss = 0.1", f"loss = {bad}")
        exc = error(text)
        assert (exc.line, exc.field) == (line_of(text, f"loss = {bad}"), "link[1].loss")
        assert "0..1" in exc.reason
    text = GOOD.replace("loss = 0.1", 'loss = "10%"')
    assert "must be a number" in error(text).reason


def test_event_with_no_action() -> None:
    text = GOOD.replace('at = 25\nkill = "bukit-01"\nrestart = 2', "at = 25")
    exc = error(text)
    assert (exc.line, exc.field) == (line_of(text, "[[event]]", 3), "event[3]")
    assert "has no action" in exc.reason


def test_event_with_two_actions() -> None:
    text = GOOD.replace('kill = "bukit-01"', 'kill = "bukit-01"\nuplink_down = "kota"\nfor = 3')
    exc = error(text)
    assert (exc.line, exc.field) == (line_of(text, 'uplink_down = "kota"'), "event[3].uplink_down")
    assert "second action beside 'kill'" in exc.reason


def test_event_keys_that_do_not_go_together_or_are_missing() -> None:
    text = GOOD.replace("restart = 2", "restart = 2\nfor = 5")
    exc = error(text)
    assert (exc.line, exc.field) == (line_of(text, "for = 5"), "event[3].for")
    text = GOOD.replace("for = 30\n", "")
    exc = error(text)
    assert (exc.line, exc.field) == (line_of(text, "cut ="), "event[2].cut")
    assert "needs 'for'" in exc.reason
    text = GOOD.replace('handset = "!a1b2c3d4"\n', "")
    exc = error(text)
    assert exc.field == "event[1].text" and "needs 'handset'" in exc.reason


def test_negative_times() -> None:
    text = GOOD.replace("at = 20", "at = -1")
    exc = error(text)
    assert (exc.line, exc.field) == (line_of(text, "at = -1"), "event[2].at")
    text = GOOD.replace("restart = 2", "restart = -2")
    exc = error(text)
    assert (exc.line, exc.field) == (line_of(text, "restart = -2"), "event[3].restart")
    text = GOOD.replace("for = 30", "for = 0")
    exc = error(text)
    assert (exc.line, exc.field) == (line_of(text, "for = 0"), "event[2].for")


def test_types_ids_and_required_keys() -> None:
    text = GOOD.replace("uplink = false", 'uplink = "no"')
    exc = error(text)
    assert (exc.line, exc.field) == (line_of(text, 'uplink = "no"'), "post[1].uplink")
    text = GOOD.replace('id = "!a1b2c3d4"', 'id = "a1b2c3d4"')
    assert error(text).field == "handset[1].id"
    text = GOOD.replace('id = "kota"', 'id = "Kota Kefa"')
    assert error(text).field == "post[2].id"
    text = GOOD.replace('[[relay]]\nid = "bukit-01"', '[[relay]]\nname = "Bukit"')
    exc = error(text)
    assert (exc.line, exc.field) == (line_of(text, "[[relay]]"), "relay[1]") and "no 'id'" in exc.reason
    text = GOOD.replace("uplink = true", "uplink = false")
    assert "at least one post needs uplink" in error(text).reason
    text = GOOD.replace("lat = -9.30\n", "")
    assert error(text).field == "post[1].lon"


def test_a_multiline_value_does_not_confuse_the_line_count() -> None:
    text = GOOD.replace(
        'cut = ["ujung", "bukit-01"]', 'cut = [\n  "ujung",\n  "bukit-01",\n]  # the hill link\n'
    ).replace("restart = 2", "restart = -1")
    exc = error(text)
    assert (exc.line, exc.field) == (line_of(text, "restart = -1"), "event[3].restart")


def test_syntax_error_names_its_line() -> None:
    text = GOOD.replace("loss = 0.1", "loss = = 0.1")
    exc = error(text)
    assert exc.line == line_of(text, "loss = = 0.1") and exc.field == "syntax"


def test_the_command_exits_78_naming_the_line_and_key(tmp_path: Path) -> None:
    text = GOOD.replace("loss = 0.1", "loss = 1.5")
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "cli", "rehearse", str(path), "--duration", "5", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 78, result.stderr
    assert f"bad.toml:{line_of(text, 'loss = 1.5')}: link[1].loss: 1.5 must be 0..1" in result.stderr
    assert result.stdout == ""  # nothing was started, no summary
    missing = subprocess.run(
        [sys.executable, "-m", "cli", "rehearse", str(tmp_path / "none.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert missing.returncode == 78 and "none.toml" in missing.stderr
