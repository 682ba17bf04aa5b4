"""The compact relay codec (sync/compact.py): one report in one LoRa packet, tagged by its origin post.

Round trip (hypothesis): any report field values within their documented limits — unicode and empty text,
every id form, operator origins, the largest values — encode into at most 219 bytes and decode to the same
values (the position to within half a grid step), or, for a text that cannot fit, to a flagged start of it.

Hostile input (real zlib, real HMAC): random bytes, every truncation and every single-bit flip of valid
packets, wrong versions, types, keys, epochs, dictionaries, a carrier that edits the text or re-signs it —
rejected with a ProtocolError whose reason is one of the documented keys, and nothing else ever raised.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import string
import uuid
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from meshtastic.protobuf import mesh_pb2

from siaga import report as report_model
from siaga.errors import ProtocolError
from siaga.report import Casualties, mesh_report_id, new_report_id
from sync import compact as codec
from sync import compact_dict as dictionary
from sync.compact import RelayReport
from tests.conftest import Budget
from tests.reports import make_mesh_report, make_report

SECRET = b"ttu-regency-relay-secret-32bytes"
KEY = codec.derive_post_key(SECRET, "oebubun")
OTHER_KEY = codec.derive_post_key(SECRET, "wini")
WHEN = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
#: Every reason a decoder may give (docs/RELAY.md, "Errors").
DECODE_REASONS = {
    "encoding",
    "short",
    "version",
    "type",
    "too_large",
    "schema",
    "text",
    "dictionary",
    "tag",
    "unknown_key",
}
HALF_LAT = 90.0 / ((1 << 24) - 1) + 1e-9
HALF_LON = 180.0 / ((1 << 24) - 1) + 1e-9


def keys(post_id: str, epoch: int) -> bytes | None:
    return codec.derive_post_key(SECRET, post_id, epoch) if epoch < 4 else None


def sample(**changes: object) -> RelayReport:
    base = RelayReport(
        report_id=mesh_report_id(0x1A2B3C4D, 42, WHEN),
        post_id="oebubun",
        origin="!1a2b3c4d",
        text="rumah warga di dusun 2 terbakar, api menjalar ke kebun, tolong kirim damkar",
        observed_at=WHEN,
        age_s=95,
        category="kebakaran",
        urgency="Immediate",
        severity="Severe",
        certainty="Observed",
        loc_source="gps",
        lat=-9.3853,
        lon=124.3544,
        accuracy_m=8,
        casualties=Casualties(injured=2, affected=12),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def retag(payload: bytes, key: bytes = KEY) -> bytes:
    """A packet edited by someone who holds the key (to reach the parser's checks behind the tag)."""
    body = payload[: -codec.TAG_BYTES]
    signed = body[:2] + body[codec.SIGNED_START :]
    return body + hmac.new(key, signed, hashlib.sha256).digest()[: codec.TAG_BYTES]


def reason_of(fn: Callable[[], object]) -> str | None:
    """None when ``fn`` succeeds; the ProtocolError reason when it refuses.  Anything else propagates."""
    try:
        fn()
    except ProtocolError as exc:
        assert exc.reason in DECODE_REASONS | {"field", "hops", "report"}, exc
        assert str(exc), "a refusal must say why"
        return exc.reason
    return None


def long_text(n_words: int, seed: int = 7) -> str:
    """Indonesian-looking text that deflate cannot fold into itself (no repeated sentences)."""
    rng = random.Random(seed)
    words = [
        "rumah",
        "warga",
        "jalan",
        "sungai",
        "tolong",
        "segera",
        "korban",
        "dusun",
        "api",
        "air",
        "tanah",
        "anak",
        "ibu",
        "bapak",
    ]
    out = []
    for _ in range(n_words):
        w = (
            rng.choice(words)
            if rng.random() < 0.5
            else "".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9)))
        )
        out.append(w + (str(rng.randint(0, 999)) if rng.random() < 0.2 else ""))
    return " ".join(out)


# ---------------------------------------------------------------------------- constants and tables
def test_the_packet_budget_is_what_the_firmware_accepts_for_a_pki_dm_on_our_port() -> None:
    # Router::perhapsEncode: encoded Data + 16-byte header + 12 bytes PKI <= 255 (MAX_LORA_PAYLOAD_LEN)
    def on_air(n: int) -> int:
        data = mesh_pb2.Data(portnum=300, payload=b"\xff" * n, bitfield=1).SerializeToString()
        return len(data) + 16 + 12

    assert on_air(codec.MAX_PACKET_BYTES) == 255
    assert on_air(codec.MAX_PACKET_BYTES + 1) > 255


def test_the_v1_tables_cover_every_value_of_the_report_model() -> None:
    # A value the model gains without a table entry cannot travel: that needs a new table (a new version).
    assert set(report_model.CATEGORIES) <= set(codec.CATEGORY_TABLE_V1)
    assert len(codec.CATEGORY_TABLE_V1) <= 256
    for model, table, bits in (
        (report_model.MODES, codec.MODES_V1, 2),
        (report_model.MSG_TYPES, codec.MSG_TYPES_V1, 2),
        (report_model.SOURCES, codec.SOURCES_V1, 2),
        (report_model.CLOCK_SOURCES, codec.CLOCK_SOURCES_V1, 2),
        (report_model.URGENCIES, codec.URGENCIES_V1, 3),
        (report_model.SEVERITIES, codec.SEVERITIES_V1, 3),
        (report_model.CERTAINTIES, codec.CERTAINTIES_V1, 3),
        (report_model.LOC_SOURCES, codec.LOC_SOURCES_V1, 3),
    ):
        assert set(model) <= set(table) and len(table) <= 1 << bits, (model, table)


def test_dictionary_v1_is_pinned_and_unknown_ones_are_refused() -> None:
    data = dictionary.load(1)
    assert 1000 < len(data) <= 32 * 1024  # deflate's window: a longer dictionary would be half unused
    assert hashlib.sha256(data).hexdigest() == dictionary.DICTIONARIES[1][1]
    data.decode("utf-8")
    with pytest.raises(ProtocolError) as exc:
        dictionary.load(9)
    assert exc.value.reason == "dictionary"


def test_post_keys_differ_per_post_and_epoch_and_need_a_real_secret() -> None:
    a = codec.derive_post_key(SECRET, "oebubun", 0)
    assert len(a) == 32 and a == codec.derive_post_key(SECRET, "oebubun", 0)
    assert len({a, codec.derive_post_key(SECRET, "oebubun", 1), codec.derive_post_key(SECRET, "wini", 0)}) == 3
    assert codec.derive_post_key(b"another-regency-secret-32-bytes!", "oebubun") != a
    with pytest.raises(ValueError):
        codec.derive_post_key(b"short", "oebubun")
    with pytest.raises(ValueError):
        codec.derive_post_key(SECRET, "Not A Slug")


# ---------------------------------------------------------------------------- examples
def test_a_typical_handset_report_round_trips_in_one_small_packet() -> None:
    r = sample()
    payload = codec.encode_report(r, KEY)
    assert len(payload) <= 100
    got = codec.decode_report(payload, keys)
    assert got.verified and not got.truncated and got.hops == 0 and got.transit_s == 0
    assert got.text_coding == codec.TEXT_DICT_V1
    assert replace(got.report, lat=r.lat, lon=r.lon) == r
    assert abs(got.report.lat - r.lat) <= HALF_LAT and abs(got.report.lon - r.lon) <= HALF_LON  # type: ignore[operator]
    # the same report always makes the same bytes, and a decoded one re-encodes to them
    assert codec.encode_report(got.report, KEY) == payload


def test_each_id_form_is_binary_and_exact() -> None:
    sizes = {}
    for rid, origin, kind in (
        (mesh_report_id(0x1A2B3C4D, 7, WHEN), "!1a2b3c4d", codec.ID_MESH),
        (mesh_report_id(0xDEADBEEF, 7, WHEN), "!1a2b3c4d", codec.ID_MESH_NODE),
        (mesh_report_id(0x1A2B3C4D, 7, datetime(1970, 1, 1, tzinfo=UTC)), "!1a2b3c4d", codec.ID_MESH),
        (new_report_id(), "operator:budi", codec.ID_UUID),
        ("m1a2b3c4d-00000007-19691231", "!1a2b3c4d", codec.ID_TEXT),  # before 1970: no day number
        ("m1a2b3c4d-00000007-20261332", "!1a2b3c4d", codec.ID_TEXT),  # not a date
        ("0193A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B", "!1a2b3c4d", codec.ID_TEXT),  # upper case: not canonical
        ("legacy:report.0001", "!1a2b3c4d", codec.ID_TEXT),
    ):
        payload = codec.encode_report(sample(report_id=rid, origin=origin), KEY)
        got = codec.decode_report(payload, keys)
        assert got.report.report_id == rid and got.report.origin == origin
        assert payload[12] >> 4 == kind, rid
        sizes[kind] = len(payload)
    assert sizes[codec.ID_MESH] < sizes[codec.ID_MESH_NODE] < sizes[codec.ID_UUID]


def test_from_and_to_the_report_model() -> None:
    stored = make_mesh_report(
        from_node=0xA1B2C3D4,
        packet_id=0x2A,
        lat=-9.4471,
        lon=124.4792,
        accuracy_m=12.3,
        loc_source="gps",
        casualties=Casualties(dead=1),
        lang="aoz",
        clock_source="ntp",
        mode="exercise",
    )
    stored = stored.with_changes(stored_at=stored.observed_at + timedelta(seconds=4))
    age = codec.observation_age(stored, 60.0)
    assert age == 64.0
    relay_report = codec.from_report(stored, age_s=age)
    got = codec.decode_report(codec.encode_report(relay_report, KEY), keys)
    back = codec.to_report(got)
    for name in ("report_id", "post_id", "origin", "source", "text_raw", "category", "urgency", "severity",
                 "certainty", "lang", "loc_source", "casualties", "clock_source", "mode", "msg_type",
                 "mesh_packet_id", "observed_at"):  # fmt: skip
        assert getattr(back, name) == getattr(stored, name), name
    assert back.mesh_packet_id == 0x2A
    assert back.accuracy_m == 13.0  # rounded up: never claims better than the fix was
    assert abs(back.lat - stored.lat) <= HALF_LAT  # type: ignore[operator]
    assert codec.total_age(got, held_s=30.0) == (94.0, "boot")
    walled = codec.decode_report(codec.encode_report(replace(relay_report, age_wall=True), KEY), keys)
    assert codec.total_age(walled)[1] == "wall"


def test_a_long_operator_name_is_shortened_visibly_and_every_model_report_fits() -> None:
    name = "Yohanes Baptista " * 5
    stored = make_report(origin=f"operator:{name[:64]}")
    relay_report = codec.from_report(stored, age_s=1)
    assert relay_report.origin.endswith("~") and len(relay_report.origin.encode()) <= 9 + codec.MAX_OPERATOR_BYTES
    with pytest.raises(ProtocolError) as exc:
        codec.encode_report(replace(relay_report, origin=stored.origin), KEY)
    assert exc.value.reason == "field"
    # the worst case the model allows: every field at its limit — still one packet, the text flagged as cut
    worst = RelayReport(
        report_id="x" * 64,
        post_id="p" * 32,
        origin="operator:" + "é" * (codec.MAX_OPERATOR_BYTES // 2),
        text="ñ" * 2048,
        observed_at=datetime.fromtimestamp(codec.MAX_OBSERVED, UTC),
        age_s=codec.MAX_AGE_S,
        casualties=Casualties(100_000, 100_000, 100_000, 100_000),
        lat=-90.0,
        lon=180.0,
        accuracy_m=codec.MAX_ACCURACY_M,
        lang="abc-12345678",
    )
    payload = codec.encode_report(worst, codec.derive_post_key(SECRET, worst.post_id))
    got = codec.decode_report(payload, keys)
    assert len(payload) <= codec.MAX_PACKET_BYTES and got.truncated and got.full_text_bytes == 4096
    assert got.report.casualties == worst.casualties and got.report.report_id == worst.report_id


def test_a_text_too_long_for_one_packet_is_cut_with_a_flag_the_center_sees() -> None:
    text = long_text(200)
    assert len(text.encode()) > 1000
    payload = codec.encode_report(sample(text=text, source="manual"), KEY)
    got = codec.decode_report(payload, keys)
    assert len(payload) <= codec.MAX_PACKET_BYTES
    assert len(payload) >= codec.MAX_PACKET_BYTES - 8, "the cut keeps as much text as fits"
    assert got.truncated and text.startswith(got.report.text) and len(got.report.text) > 100
    assert got.full_text_bytes == len(text.encode())
    assert got.full_text_sha256 == hashlib.sha256(text.encode()).digest()[:4]
    shown = codec.to_report(got).text_raw
    assert shown.startswith(got.report.text) and "TERPOTONG" in shown and str(len(text.encode())) in shown
    # a text that just fits is not cut
    fits = codec.decode_report(codec.encode_report(sample(text=long_text(25)), KEY), keys)
    assert not fits.truncated and fits.report.text == long_text(25)


def test_the_text_goes_deflated_only_when_that_is_shorter() -> None:
    rng = random.Random(3)
    noise = "".join(chr(rng.randrange(0x21, 0x2FFF)) for _ in range(40))
    for text in ("Q", "zq9!", noise, "KEBAKARAN", "tolong segera kirim ambulans ke dusun"):
        got = codec.decode_report(codec.encode_report(sample(text=text), KEY), keys)
        packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, dictionary.load(1))
        deflated = len(packer.compress(text.encode()) + packer.flush())
        expect = codec.TEXT_DICT_V1 if deflated < len(text.encode()) else codec.TEXT_UTF8
        assert got.text_coding == expect and got.report.text == text, text
    assert codec.parse_report(codec.encode_report(sample(text="Q"), KEY)).text_coding == codec.TEXT_UTF8
    empty = codec.decode_report(codec.encode_report(sample(text=""), KEY), keys)
    assert empty.report.text == "" and empty.text_coding == codec.TEXT_UTF8
    assert reason_of(lambda: codec.to_report(empty)) == "report"  # the model needs a text


def test_the_encoder_refuses_values_outside_their_limits() -> None:
    for bad in (
        {"post_id": "Oebubun"},
        {"post_id": "p" * 33},
        {"origin": "a1b2c3d4"},
        {"report_id": "short"},
        {"category": "tsunami"},
        {"mode": "drill"},
        {"age_s": -1},
        {"age_s": codec.MAX_AGE_S + 1},
        {"casualties": Casualties(dead=100_001)},
        {"lat": 91.0},
        {"lat": None},
        {"lon": float("nan")},
        {"accuracy_m": -1},
        {"lang": "Indonesian"},
        {"text": "a\x00b"},
        {"text": "\ud800"},
        {"text": "x" * 4097},
        {"observed_at": datetime(1969, 12, 31, tzinfo=UTC)},
        {"observed_at": datetime(2026, 1, 1)},  # naive
    ):
        assert reason_of(lambda bad=bad: codec.encode_report(sample(**bad), KEY)) == "field", bad
    assert reason_of(lambda: codec.encode_report(sample(), KEY, key_epoch=256)) == "field"
    assert reason_of(lambda: codec.encode_report(sample(), KEY, hops=128)) == "field"


# ---------------------------------------------------------------------------- carriers
def test_a_carrier_counts_hops_and_transit_without_touching_the_signed_bytes() -> None:
    payload = codec.encode_report(sample(), KEY)
    once = codec.forward_report(payload, held_s=30.2)
    twice = codec.forward_report(once, held_s=3600, wall=True)
    assert len(once) == len(twice) == len(payload)
    assert once[codec.HEADER_BYTES :] == payload[codec.HEADER_BYTES :]
    got = codec.decode_report(twice, keys)
    assert (got.hops, got.transit_s, got.transit_wall) == (2, 31 + 3600, True)
    assert codec.total_age(got) == (95 + 3631, "wall")
    # transit saturates; the hop count stops at its limit with a reason the router can alarm on
    long_held = codec.forward_report(payload, held_s=10**9)
    assert codec.parse_report(long_held).transit_s == codec.MAX_TRANSIT_S
    at_limit = codec.encode_report(sample(), KEY, hops=codec.MAX_HOPS)
    assert reason_of(lambda: codec.forward_report(at_limit, held_s=1)) == "hops"


def test_a_carrier_cannot_alter_or_forge_another_posts_report() -> None:
    original = codec.encode_report(sample(), KEY)
    parsed = codec.parse_report(original)
    assert not parsed.verified
    # it changes the text (or the casualties, the category) and re-encodes: it has no key of oebubun's
    for change in ({"text": "aman, tidak ada apa-apa"}, {"casualties": Casualties()}, {"category": "aman"}):
        forged_with_own_key = codec.encode_report(replace(parsed.report, **change), OTHER_KEY)
        assert reason_of(lambda f=forged_with_own_key: codec.decode_report(f, keys)) == "tag"
        unkeyed = codec.encode_report(replace(parsed.report, **change), b"")
        assert reason_of(lambda f=unkeyed: codec.decode_report(f, keys)) == "tag"
    # it edits the compressed text's bytes in place
    edited = bytearray(original)
    edited[-codec.TAG_BYTES - 3] ^= 0x20
    assert reason_of(lambda: codec.decode_report(bytes(edited), keys)) in {"tag", "text"}
    # it passes the report off as its own post's: the id is oebubun's handset's, but it is wini's tag now
    claimed = codec.encode_report(replace(parsed.report, post_id="wini"), KEY)
    assert reason_of(lambda: codec.decode_report(claimed, keys)) == "tag"
    # the key of another epoch, or no key at all
    assert reason_of(lambda: codec.verify_report(parsed, OTHER_KEY)) == "tag"
    assert reason_of(lambda: codec.decode_report(codec.encode_report(sample(), KEY, key_epoch=1), keys)) == "tag"
    assert reason_of(lambda: codec.decode_report(codec.encode_report(sample(), KEY, key_epoch=9), keys)) == (
        "unknown_key"
    )
    assert codec.decode_report(original, keys).verified


# ---------------------------------------------------------------------------- versions and the parser
def test_unknown_versions_and_types_are_refused_clearly() -> None:
    payload = codec.encode_report(sample(), KEY)
    with pytest.raises(ProtocolError) as exc:
        codec.parse_report(b"\x02" + payload[1:])
    assert exc.value.reason == "version" and "version 2" in str(exc.value)
    for t in (0, codec.TYPE_CUSTODY_ACK, codec.TYPE_BEACON, codec.TYPE_CENTER_ACK, 255):
        assert reason_of(lambda t=t: codec.parse_report(payload[:1] + bytes([t]) + payload[2:])) == "type"
    assert reason_of(lambda: codec.parse_report(payload + b"\x00" * 200)) == "too_large"
    assert reason_of(lambda: codec.parse_report(b"")) == "short"
    assert reason_of(lambda: codec.parse_report("text")) == "encoding"  # type: ignore[arg-type]


def _edit(payload: bytes, offset: int, value: int) -> bytes:
    out = bytearray(payload)
    out[offset] = value
    return retag(bytes(out))


def test_the_parser_refuses_what_a_key_holder_may_not_write_either() -> None:
    payload = codec.encode_report(sample(), KEY)
    flags_at, kinds_at = 11, 12
    for bad, reason in (
        (_edit(payload, flags_at, payload[flags_at] | 0x80), "schema"),  # unknown flag
        (_edit(payload, kinds_at, 0x51), "schema"),  # unknown id form
        (_edit(payload, kinds_at, payload[kinds_at] & 0xF0 | 0x07), "dictionary"),
        (_edit(payload, kinds_at, payload[kinds_at] & 0xF0), "text"),  # deflate read as UTF-8
    ):
        assert reason_of(lambda bad=bad: codec.decode_report(bad, keys)) == reason
    # a deflate stream with stray bytes after its end
    assert reason_of(lambda: codec.decode_report(retag(payload[:-8] + b"\x00" + payload[-8:]), keys)) == "text"
    # a zlib bomb: 100 kB of zeros deflate into a few hundred bytes; the text stops at 4096
    head = codec.encode_report(sample(text=""), KEY)[: -codec.TAG_BYTES]
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, dictionary.load(1))
    bomb = packer.compress(b"a" * 20_000) + packer.flush()
    body = bytearray(head + bomb)
    body[kinds_at] = body[kinds_at] & 0xF0 | 1
    assert len(body) + 8 <= codec.MAX_PACKET_BYTES
    assert reason_of(lambda: codec.decode_report(retag(bytes(body) + b"\x00" * 8), keys)) == "too_large"
    # an explicit lang "id" (the default is never written), and a non-canonical text id
    explicit = codec.encode_report(sample(lang="xx"), KEY).replace(b"\x02xx", b"\x02id")
    assert reason_of(lambda: codec.decode_report(retag(explicit), keys)) == "schema"


# ---------------------------------------------------------------------------- properties
def _texts() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=300),
        st.sampled_from(["", "KEBAKARAN", "AMAN / SELESAI", "SOS-TN02 detected", long_text(120)]),
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz 0123456789,.", min_size=150, max_size=1500),
    )


@st.composite
def relay_reports(draw: st.DrawFn) -> RelayReport:
    node = draw(st.integers(0, 0xFFFFFFFF))
    origin = draw(
        st.one_of(
            st.just(f"!{node:08x}"),
            st.integers(0, 0xFFFFFFFF).map(lambda n: f"!{n:08x}"),
            st.text(st.characters(min_codepoint=0x20, exclude_categories=("Cs",)), min_size=1, max_size=12).map(
                lambda s: "operator:" + s
            ),
        )
    )
    day = draw(st.dates(min_value=datetime(1970, 1, 1).date(), max_value=datetime(2149, 6, 1).date()))
    report_id = draw(
        st.one_of(
            st.integers(0, 0xFFFFFFFF).map(lambda p: f"m{node:08x}-{p:08x}-{day.strftime('%Y%m%d')}"),
            st.integers(0, 2**128 - 1).map(lambda n: str(uuid.UUID(int=n))),
            st.from_regex(r"\A[A-Za-z0-9._:-]{8,64}\Z"),
        )
    )
    has_pos = draw(st.booleans())
    counts = st.one_of(st.none(), st.integers(0, codec.MAX_CASUALTY))
    return RelayReport(
        report_id=report_id,
        post_id=draw(st.from_regex(r"\A[a-z0-9-]{1,32}\Z")),
        origin=origin,
        text=draw(_texts()),
        observed_at=datetime.fromtimestamp(draw(st.integers(0, codec.MAX_OBSERVED)), UTC),
        age_s=draw(st.integers(0, codec.MAX_AGE_S)),
        age_wall=draw(st.booleans()),
        category=draw(st.sampled_from(codec.CATEGORY_TABLE_V1)),
        mode=draw(st.sampled_from(codec.MODES_V1)),
        msg_type=draw(st.sampled_from(codec.MSG_TYPES_V1)),
        source=draw(st.sampled_from(codec.SOURCES_V1)),
        clock_source=draw(st.sampled_from(codec.CLOCK_SOURCES_V1)),
        urgency=draw(st.sampled_from(codec.URGENCIES_V1)),
        severity=draw(st.sampled_from(codec.SEVERITIES_V1)),
        certainty=draw(st.sampled_from(codec.CERTAINTIES_V1)),
        loc_source=draw(st.sampled_from(codec.LOC_SOURCES_V1)),
        lat=draw(st.floats(-90, 90)) if has_pos else None,
        lon=draw(st.floats(-180, 180)) if has_pos else None,
        accuracy_m=draw(st.one_of(st.none(), st.integers(0, codec.MAX_ACCURACY_M))),
        lang=draw(st.one_of(st.just("id"), st.from_regex(r"\A[a-z]{2,3}(-[A-Za-z0-9]{1,8})?\Z"))),
        casualties=Casualties(draw(counts), draw(counts), draw(counts), draw(counts)),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(relay_reports(), st.integers(0, 255), st.integers(0, codec.MAX_HOPS), st.integers(0, codec.MAX_TRANSIT_S))
@example(sample(text=""), 0, 0, 0)
@example(sample(text="ñ" * (4096 // 2)), 255, codec.MAX_HOPS, codec.MAX_TRANSIT_S)
def test_round_trip_of_any_valid_field_values(r: RelayReport, epoch: int, hops: int, transit: int) -> None:
    key = codec.derive_post_key(SECRET, r.post_id, epoch)
    payload = codec.encode_report(r, key, key_epoch=epoch, hops=hops, transit_s=transit)
    assert len(payload) <= codec.MAX_PACKET_BYTES
    got = codec.decode_report(payload, lambda post, e: codec.derive_post_key(SECRET, post, e))
    assert got.verified and (got.hops, got.transit_s, got.key_epoch) == (hops, transit, epoch)
    text = r.text.encode()
    if got.truncated:
        assert r.text.startswith(got.report.text) and len(got.report.text) < len(r.text)
        assert got.full_text_bytes == len(text) and got.full_text_sha256 == hashlib.sha256(text).digest()[:4]
    else:
        assert got.report.text == r.text and got.full_text_bytes == len(text)
    if r.lat is not None:
        assert abs(got.report.lat - r.lat) <= HALF_LAT and abs(got.report.lon - r.lon) <= HALF_LON  # type: ignore[operator]
    assert replace(got.report, text=r.text, lat=r.lat, lon=r.lon) == r
    # canonical: decoding then encoding again gives the very same bytes
    assert codec.encode_report(got.report if not got.truncated else replace(got.report, text=r.text), key,
                               key_epoch=epoch, hops=hops, transit_s=transit) == payload  # fmt: skip


# ---------------------------------------------------------------------------- fuzzing
def _valid_packets() -> list[bytes]:
    return [
        codec.encode_report(sample(), KEY),
        codec.encode_report(sample(text="", lat=None, lon=None, accuracy_m=None, casualties=Casualties()), KEY),
        codec.encode_report(sample(text=long_text(300), origin="operator:Ibu Maria", report_id=new_report_id()), KEY),
        codec.encode_report(sample(text="🚑 tolong", lang="aoz", age_wall=True), KEY, hops=3, transit_s=4000),
    ]


def _decode_outcome(payload: bytes) -> str:
    """'ok' or the refusal's reason; any exception other than ProtocolError fails the test."""
    try:
        codec.decode_report(payload, keys)
    except ProtocolError as exc:
        assert exc.reason in DECODE_REASONS, exc
        return exc.reason
    return "ok"


def test_every_truncation_of_a_valid_packet_is_refused() -> None:
    seen: Counter[str] = Counter()
    for payload in _valid_packets():
        for n in range(len(payload)):
            outcome = _decode_outcome(payload[:n])
            assert outcome != "ok", (payload.hex(), n)
            seen[outcome] += 1
            # also without the key: the parser alone never raises anything else
            reason_of(lambda n=n, payload=payload: codec.parse_report(payload[:n]))
    assert seen["short"] > 0, seen


def test_every_bit_flip_is_refused_or_only_moves_the_carrier_fields() -> None:
    seen: Counter[str] = Counter()
    for payload in _valid_packets():
        original = codec.parse_report(payload)
        for bit in range(len(payload) * 8):
            flipped = bytearray(payload)
            flipped[bit // 8] ^= 1 << (bit % 8)
            outcome = _decode_outcome(bytes(flipped))
            seen[outcome] += 1
            if outcome == "ok":
                # only the mutable hop/transit/xmit bytes are outside the tag; the report itself is unchanged
                assert 2 <= bit // 8 < codec.SIGNED_START, bit
                got = codec.parse_report(bytes(flipped))
                assert got.report == original.report and got.signed == original.signed
    assert seen["tag"] > 0 and seen["version"] > 0 and seen["type"] > 0, seen


@pytest.mark.fuzz
def test_random_bytes_never_raise_anything_but_protocol_errors(budget: Budget) -> None:
    seen: Counter[str] = Counter()
    prefix = codec.encode_report(sample(), KEY)[:13]

    def check(data: bytes, with_prefix: bool) -> None:
        payload = prefix + data if with_prefix else data
        seen[_decode_outcome(payload)] += 1
        reason_of(lambda: codec.parse_report(payload))

    run = settings(
        max_examples=budget.pick(3000, 50_000), deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )(given(st.binary(max_size=260), st.booleans())(check))
    run()
    assert seen["ok"] == 0, seen  # a forged tag from nowhere: 2^-64 per try
    assert {"short", "version"} <= set(seen), seen


@pytest.mark.fuzz
def test_mutated_valid_packets_never_raise_anything_but_protocol_errors(budget: Budget) -> None:
    packets = _valid_packets()
    seen: Counter[str] = Counter()

    def check(index: int, edits: list[tuple[int, int]], cut: int, sign: bool) -> None:
        payload = bytearray(packets[index % len(packets)])
        for offset, value in edits:
            payload[offset % len(payload)] = value
        data = bytes(payload[: max(cut, codec.TAG_BYTES + 1)])
        # signed by the key holder: the mutation reaches the parser behind the tag
        data = retag(data) if sign else data
        try:
            got = codec.decode_report(data, keys)
        except ProtocolError as exc:
            assert exc.reason in DECODE_REASONS, exc
            seen[exc.reason] += 1
            return
        seen["ok"] += 1
        assert got.size <= codec.MAX_PACKET_BYTES and len(got.report.text.encode()) <= codec.MAX_FULL_TEXT_BYTES

    run = settings(
        max_examples=budget.pick(3000, 50_000), deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )(
        given(
            st.integers(0, 3),
            st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255)), max_size=4),
            st.integers(0, 260),
            st.booleans(),
        )(check)
    )
    run()
    assert seen["tag"] > 0 and seen["schema"] + seen["short"] + seen["text"] > 0, seen


def test_the_benchmark_measures_the_corpus() -> None:
    from bench import relay_codec as bench

    res = bench.measure(bench.REPO_CORPUS)
    assert res["reports"] == 30 and res["ok"], res
    assert res["fit_whole"] == 30 and res["size_max"] <= codec.MAX_PACKET_BYTES
    assert res["text"]["ratio_codec"] < res["text"]["ratio_deflate"]
    assert res["naive_json"]["fit"] == 0  # the report as JSON does not fit a packet: why the codec exists
