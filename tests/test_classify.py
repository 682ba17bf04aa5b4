"""The Indonesian report classifier: categories, canned texts, casualties, accuracy, extension files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.classify import Classification, Classifier, classify, default_classifier
from siaga.errors import ConfigError
from siaga.report import CANNED_MESSAGES, CATEGORIES, CERTAINTIES, SEVERITIES, URGENCIES, Casualties

DATA = Path(__file__).parent / "data" / "labelled_reports.jsonl"
# a copy of ../shared/corpus/reports_sample.jsonl, kept in the repo so CI always has it
SAMPLE = Path(__file__).resolve().parent / "data" / "reports_sample.jsonl"
# 150 reports written blind by another colleague; the keywords were tuned on it after its first run
# (92.0% category, 97.3% casualties), so it is now a regression set, no longer a blind one.
BLIND1 = Path(__file__).resolve().parent / "data" / "blind_reports.jsonl"
# 150 more reports written blind by someone who never saw the classifier; first run 90.0% category, 92.7%
# casualties, then the general rules below were fixed on its misses: a regression set now, not blind.
BLIND2 = Path(__file__).resolve().parent / "data" / "blind2_reports.jsonl"
# 150 more written blind (6 rows had been glimpsed by the previous tuner); first run 94.0% category (95.1%
# on the 144 unseen rows), 96.7% casualties, then the general rules of the blind-3 section below were
# fixed on its misses: a regression set now, not blind.
BLIND3 = Path(__file__).resolve().parent / "data" / "blind3_reports.jsonl"
# 150 more written blind; first run 91.3% category, 95.3% casualties, then the general mechanisms of the
# blind-4 section below were fixed on its misses: a regression set now, not blind.
BLIND4 = Path(__file__).resolve().parent / "data" / "blind4_reports.jsonl"
# 150 more written blind; first run 90.7% category, 95.3% casualties, then the general mechanisms of the
# blind-5 section below were fixed on its misses (one row relabelled: a singular person with no number is
# no count, as in the other sets): a regression set now, not blind.
BLIND5 = Path(__file__).resolve().parent / "data" / "blind5_reports.jsonl"
# The first rows are the tuning part; the rest were held out (see bench/classifier_accuracy.py).
TUNING_SIZE = 141


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _accuracy(rows: list[dict]) -> tuple[float, float, list[str]]:
    clf = default_classifier()
    cat = cas = 0
    misses = []
    for row in rows:
        got = clf.classify(row["text"])
        cat += got.category == row["category"]
        cas += got.casualties.to_dict() == row["casualties"]
        if got.category != row["category"] or got.casualties.to_dict() != row["casualties"]:
            misses.append(f"{row['text']!r}: {got.category} {got.casualties.to_dict()}")
    return cat / len(rows), cas / len(rows), misses


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("rumah warga terbakar, tlg kirim damkar", "kebakaran"),
        ("kbakaran di pasar Kefamenanu", "kebakaran"),
        ("bnjir masuk rumah di Biboki", "banjir"),
        ("lngsor tutup jalan ke Oelolok", "longsor"),
        ("angin puting beliung rusak atap", "angin"),
        ("gempa kuat, dinding retak", "gempa"),
        ("kcelakaan motor di Naiola", "kecelakaan"),
        ("ibu mau melahirkan, butuh ambulans", "medis"),
        ("motor dicuri di depan gereja", "kriminal"),
        ("pendaki tersesat di Mutis", "sar"),
        ("ular kobra masuk rumah", "hewan"),
        ("pohon tumbang tutup jalan", "infrastruktur"),
        ("tolong kami", "sos"),
        ("api sudah padam, situasi aman", "aman"),
        ("banjir sdh surut", "aman"),
        ("halo tes radio", "lainnya"),
        ("TOLOOONG!!!", "sos"),
        ("KeBaKaRaN di Insana!!!", "kebakaran"),
    ],
)
def test_categories(text: str, category: str) -> None:
    assert classify(text).category == category


def test_hazard_outranks_its_consequences() -> None:
    # people hurt in a crash: the category is the crash, not "medis"
    assert classify("tabrakan motor, 2 org luka berat").category == "kecelakaan"
    # an all-clear about a fire is "aman", not another fire
    assert classify("kebakaran di Oebubun sudah padam").category == "aman"
    # a negated all-clear is not an all-clear
    assert classify("belum aman, api masih besar").category == "kebakaran"


def test_common_words_are_not_taken_for_typos() -> None:
    assert classify("dia bilang pada hari sabtu").category == "lainnya"  # bilang ≠ hilang, pada ≠ padam
    assert classify("pukul 3 sore ada rapat").category == "lainnya"  # pukul 3 is a time
    assert classify("cek sinyal dari pos").category == "lainnya"
    assert classify("bakar sampah saja").category == "lainnya"  # saja ≠ sajam
    assert classify("gmpa terasa kuat").category == "gempa"  # but a dropped inner letter is a typo
    # "tangan" is not "tangga" (squashed to "tanga"), "jauh" not "jatuh", "gantung" not "jantung"
    clf = default_classifier()
    assert clf.tokens("tangan jauh gantung sampah sering") == ["tangan", "jauh", "gantung", "sampah", "sering"]


@pytest.mark.parametrize("text", CANNED_MESSAGES)
def test_canned_messages(text: str) -> None:
    result = classify(text)
    assert result.canned
    assert result.category != "lainnya"
    assert (
        result.category
        == {
            "DARURAT MEDIS": "medis",
            "KEBAKARAN": "kebakaran",
            "BANJIR": "banjir",
            "LONGSOR": "longsor",
            "KECELAKAAN": "kecelakaan",
            "KRIMINAL": "kriminal",
            "BUTUH EVAKUASI": "sar",
            "AMAN / SELESAI": "aman",
        }[text]
    )


def test_canned_set_is_the_handset_set() -> None:
    assert set(CANNED_MESSAGES) == {
        "DARURAT MEDIS",
        "KEBAKARAN",
        "BANJIR",
        "LONGSOR",
        "KECELAKAAN",
        "KRIMINAL",
        "BUTUH EVAKUASI",
        "AMAN / SELESAI",
    }
    assert not classify("DARURAT MEDIS di dusun 3").canned
    assert classify("DARURAT MEDIS di dusun 3").category == "medis"


@pytest.mark.parametrize("text", ["SOS-TN02 detected", "Pos Oelbonak detected", "btn1 DETECTED "])
def test_detection_sensor_button_is_sos(text: str) -> None:
    result = classify(text)
    assert (result.category, result.canned, result.urgency) == ("sos", True, "Immediate")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tiga orang luka", {"injured": 3}),
        ("2 meninggal", {"dead": 2}),
        ("2 org tewas", {"dead": 2}),
        ("5 warga hilang", {"missing": 5}),
        ("empat anak keracunan", {"affected": 4}),
        ("10 KK mengungsi", {}),  # KK (kepala keluarga) counts households, not people
        ("sebelas siswa keracunan", {"affected": 11}),
        ("dua belas orang luka", {"injured": 12}),
        ("dua puluh tiga jiwa mengungsi", {"affected": 23}),
        ("seratus dua puluh jiwa mengungsi", {"affected": 120}),
        ("seorang warga tewas", {"dead": 1}),
        ("laka, 4 org luka, 1 md", {"injured": 4, "dead": 1}),
        ("tabrakan, 2 luka berat satu meninggal", {"injured": 2, "dead": 1}),
        ("korban meninggal 2 orang", {"dead": 2}),
        ("luka-luka 2 org", {"injured": 2}),
        ("puluhan warga mengungsi", {}),  # a vague count is unknown, not zero
        ("dua rumah terbakar", {}),  # houses are not people
        ("dua ekor babi mati", {}),
        ("listrik padam 2 hari", {}),
        ("jam 3 org luka", {}),  # "jam 3" is a time; no count given
        ("tidak ada korban", {}),
    ],
)
def test_casualties(text: str, expected: dict[str, int]) -> None:
    assert classify(text).casualties.to_dict() == expected


def test_cap_fields() -> None:
    sos = classify("tolong")
    assert (sos.urgency, sos.severity) == ("Immediate", "Severe")
    dead = classify("kebakaran, 2 org meninggal")
    assert dead.severity == "Extreme"
    clear = classify("AMAN / SELESAI")
    assert (clear.urgency, clear.severity) == ("Past", "Minor")
    other = classify("halo tes radio")
    assert (other.urgency, other.severity, other.certainty) == ("Unknown", "Unknown", "Unknown")
    assert classify("katanya ada kebakaran di Noemuti").certainty == "Likely"
    assert classify("ada kebakaran di Noemuti").certainty == "Observed"


def test_to_dict_shape() -> None:
    out = classify("kbakaran rumah, 1 balita meninggal").to_dict()
    assert out == {
        "category": "kebakaran",
        "urgency": "Immediate",
        "severity": "Extreme",
        "certainty": "Observed",
        "event": "Kebakaran",
        "canned": False,
        "casualties": {"dead": 1},
    }
    json.dumps(out)


@pytest.mark.parametrize("text", ["", "   ", "\x00\x01\x02", "🔥🔥🔥", "1234567890123", "?!.,;", "a" * 10_000])
def test_odd_input_is_lainnya_or_valid(text: str) -> None:
    result = classify(text)
    assert result.category in CATEGORIES
    assert isinstance(result.casualties, Casualties)


def test_empty_is_lainnya() -> None:
    assert classify("").category == "lainnya"
    assert classify("...").category == "lainnya"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_never_raises_on_any_text(text: str) -> None:
    result = classify(text)
    assert isinstance(result, Classification)
    assert result.category in CATEGORIES
    assert result.urgency in URGENCIES
    assert result.severity in SEVERITIES
    assert result.certainty in CERTAINTIES
    Casualties.from_dict(result.casualties.to_dict())  # counts stay within the model's range


words = st.sampled_from(
    [
        "tlg",
        "org",
        "2",
        "dua",
        "puluh",
        "belas",
        "luka",
        "meninggal",
        "api",
        "tidak",
        "ada",
        "sudah",
        "aman",
        "banjir",
        "seratus",
        "ribu",
        "se",
        "korban",
        "jam",
        "KK",
        "hilang",
        "detected",
        "rumah",
        "ekor",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(words, max_size=12))
def test_never_raises_on_keyword_soup(parts: list[str]) -> None:
    result = classify(" ".join(parts))
    assert result.category in CATEGORIES
    Casualties.from_dict(result.casualties.to_dict())


# -- accuracy: quality assertions on labelled data, not timings -------------------------------------


def test_accuracy_on_shared_sample() -> None:
    cat, cas, misses = _accuracy(_rows(SAMPLE))
    assert cat >= 0.95, misses
    assert cas >= 0.95, misses


def test_labelled_set_is_big_and_valid() -> None:
    rows = _rows(DATA)
    assert len(rows) >= 180
    for row in rows:
        assert set(row) == {"text", "category", "casualties"}
        assert row["category"] in CATEGORIES
        Casualties.from_dict(row["casualties"])
    assert {row["category"] for row in rows} == set(CATEGORIES)


def test_accuracy_on_tuning_part() -> None:
    cat, cas, misses = _accuracy(_rows(DATA)[:TUNING_SIZE])
    assert cat >= 0.95, misses
    assert cas >= 0.95, misses


def test_accuracy_on_held_out_part() -> None:
    cat, cas, misses = _accuracy(_rows(DATA)[TUNING_SIZE:])
    assert cat >= 0.95, misses
    assert cas >= 0.95, misses


@pytest.mark.parametrize(
    "path",
    [BLIND1, BLIND2, BLIND3, BLIND4, BLIND5],
    ids=["blind-1", "blind-2", "blind-3", "blind-4", "blind-5"],
)
def test_accuracy_on_blind_sets(path: Path) -> None:
    rows = _rows(path)
    assert len(rows) == 150
    for row in rows:
        assert set(row) == {"text", "category", "casualties"}
        assert row["category"] in CATEGORIES
        Casualties.from_dict(row["casualties"])
    cat, cas, misses = _accuracy(rows)
    assert cat >= 0.95, misses
    assert cas >= 0.95, misses


# -- the general rules behind the blind-1 fixes, on sentences that are in no data set -----------------


@pytest.mark.parametrize(
    ("text", "category"),
    [
        # Kupang Malay function words: su = sudah, sonde = tidak, dong = mereka, maso = masuk, ...
        ("katong pung kampung su tagenang, air maso rumah", "banjir"),
        ("dong pung oto tabalek di tikungan", "kecelakaan"),
        ("su aman, sonde perlu datang", "aman"),
        ("bapa sonde pulang dari kebun, dong su cari", "sar"),
        # theft, snatching and vandalism families
        ("hp dijambret di pasar inpres", "kriminal"),
        ("dompet dicopet di bemo", "kriminal"),
        ("kaca gereja dilempari batu", "kriminal"),
        ("orang tidak dikenal masuk kios", "kriminal"),
        # poisoning
        ("kakek minum racun tikus", "medis"),
        ("petani minum pestisida, mulut berbusa", "medis"),
        # ground movement in local words
        ("tanah turun di belakang sekolah", "longsor"),
        # a river's name between "sungai"/"kali" and the verb; aspect words inside a phrase
        ("kali noelmina naik cepat sekali", "banjir"),
        ("air mulai masuk rumah", "banjir"),
        # a road sinking is the road's damage, not a landslide
        ("jalan desa amblas, ada lubang besar", "infrastruktur"),
        # burnt-out is fire even when people are trapped
        ("dapur hangus, kakek terjebak di dalam", "kebakaran"),
        # "pencari" is a person, not a typo for "pencuri"
        ("pencari kayu tersesat di hutan", "sar"),
    ],
)
def test_vocabulary_families(text: str, category: str) -> None:
    assert classify(text).category == category


def test_own_need_is_not_outranked_by_the_hazard_around_it() -> None:
    # a birth is the emergency; the flood only blocks the way
    assert classify("banjir, ibu mau melahirkan tdk bisa ke puskesmas").category == "medis"
    assert classify("ibu bersalin, jalan tertutup longsor").category == "medis"
    # but an all-clear still ends it
    assert classify("ibu sdh melahirkan, kondisi aman").category == "aman"
    # a search still going on is SAR even inside a flood report ...
    assert classify("pemancing terbawa arus saat banjir, belum ditemukan").category == "sar"
    # ... while people swept away by the flood itself stay the flood (no search named)
    assert classify("5 warga hilang terseret banjir bandang").category == "banjir"
    # and a landslide report with people still buried stays the landslide on its score
    assert classify("tanah longsor timbun rumah, 3 org blm ditemukan").category == "longsor"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 tewas 2 kritis", {"dead": 1, "injured": 2}),
        ("dua siswi pingsan saat upacara", {"affected": 2}),
        ("lima balita lemas", {"affected": 5}),
        ("tiga pemuda dibacok di pesta", {"injured": 3}),
        ("satu nenek tertabrak motor", {"injured": 1}),
        # an active verb hurts the people counted after it ...
        ("ular patuk 1 petani di sawah", {"injured": 1}),
        ("buaya serang 2 nelayan", {"injured": 2}),
        # ... and the number before it counts the attackers
        ("2 anjing gigit kambing", {}),
        ("dua warga dipukuli massa", {"injured": 2}),
    ],
)
def test_casualty_states_and_hurt_verbs(text: str, expected: dict[str, int]) -> None:
    assert classify(text).casualties.to_dict() == expected


def test_wildcard_and_fillers_keep_negation() -> None:
    assert classify("jalan tidak rusak").category != "infrastruktur"
    assert classify("air belum masuk rumah").category == "lainnya"


def test_dialect_prefix_only_onto_known_words() -> None:
    clf = default_classifier()
    assert clf.tokens("tabakar") == ["terbakar"]
    assert clf.tokens("tajepit") == ["terjepit"]
    # common words starting with "ta" stay themselves
    assert clf.tokens("takut tanya taman tapi") == ["takut", "tanya", "taman", "tapi"]


# -- the general rules behind the blind-2 fixes, on sentences that are in no data set -----------------


@pytest.mark.parametrize(
    "text",
    [
        "kakek usia 80 tahun hilang sejak kemarin",
        "opa 75 thn sakit keras di rumah",
        "bayi umur 8 bln demam tinggi",
        "warga rt 3 rw 2 terjebak banjir",
        "dsn 4 terisolir, jalan putus",
        "km 14 jalan putus, tdk bisa lewat",
        "jam 5 pagi tadi longsor",
    ],
)
def test_ages_addresses_and_times_are_never_counts(text: str) -> None:
    assert classify(text).casualties.to_dict() == {}


@pytest.mark.parametrize(
    ("text", "category"),
    [
        # a body found is a death in a search, not an all-clear
        ("korban hanyut di kali sudah ditemukan meninggal", "sar"),
        ("pendaki yg tersesat sdh ditemukan tewas di jurang", "sar"),
        # found alive / back home is the all-clear of a search
        ("anak yg hilang td pagi sdh ketemu di kebun", "aman"),
        ("nelayan yg blm pulang semalam sudah kembali dengan selamat", "aman"),
        # ... but not while another one is still missing
        ("2 org hilang, 1 sudah ditemukan, 1 blm ketemu", "sar"),
        # the all-clear of one hazard leaves another one the message names
        ("api dapur sdh dipadamkan, tiang listrik roboh ke jalan", "infrastruktur"),
        ("api sudah padam tapi rumah warga masih tergenang banjir", "banjir"),
        ("banjir sdh surut, jembatan putus belum bisa dilewati", "infrastruktur"),
        ("kebakaran gudang sudah padam", "aman"),
        # an all-clear of everything still ends it
        ("api sudah padam, jembatan yg putus sdh diperbaiki, semua aman", "aman"),
        # cancel words, and the calm / under-control words
        ("mohon abaikan pesan tadi", "aman"),
        ("maaf salah kirim", "aman"),
        ("salah pencet pak", "aman"),
        ("laporan dibatalkan", "aman"),
        ("clear pak", "aman"),
        ("situasi desa sdh kondusif", "aman"),
        ("warga sdh tenang, pelaku diamankan", "aman"),
        ("suasana sonde tenang, dong masih bakalai", "lainnya"),
        # boats and fishermen not back
        ("perahu nelayan blm merapat sejak semalam", "sar"),
        ("tiga nelayan belum pulang dari melaut, ombak tinggi", "sar"),
        # a fall from a height is an accident
        ("tukang jatuh dari atap gereja, kepala berdarah", "kecelakaan"),
        ("petani jatuh dari atas pohon lontar, tdk sadar, tlg ambulan", "kecelakaan"),
        # ... while falling rock is a landslide
        ("batu besar jatuh ke jalan dari bukit", "longsor"),
        # "X vs Y" between vehicles is a collision
        ("mobil vs motor di jln timor raya, 2 luka", "kecelakaan"),
        ("truk versus pick up di tanjakan, 1 meninggal", "kecelakaan"),
        # violence at home is a crime even when it bleeds
        ("bapak pukul anak pakai kayu smp berdarah", "kriminal"),
        ("istri dipukul suami, muka bengkak", "kriminal"),
        # the water supply is infrastructure
        ("pipa air desa putus, warga tdk dapat air", "infrastruktur"),
        ("sumur bor rusak, warga antri air di kali", "infrastruktur"),
        ("tandon air sekolah pecah", "infrastruktur"),
        # fields and houses "drown" in a flood; people drowning are a search
        ("kebun jagung tenggelam, kali meluap", "banjir"),
        ("rumah dong tenggelam sampe atap", "banjir"),
        ("anak tenggelam di kali dekat rumah", "sar"),
        # ground on the move, in Kupang Malay ("ba-" = "ber-") too; a landslide damming a river
        ("tanah mulai bagerak, jalan retak", "longsor"),
        ("tebing runtuh tutup sungai, air naik di hulu", "longsor"),
        # Kupang Malay calls for help
        ("tolong beta", "sos"),
        ("bantu kami", "sos"),
    ],
)
def test_blind2_rules(text: str, category: str) -> None:
    assert classify(text).category == category


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # trapped, buried, pinned, evacuated: alive and located
        ("dua org terjepit di reruntuhan", {"affected": 2}),
        ("3 org terjebak di dalam rumah yg terbakar", {"affected": 3}),
        ("1 pekerja tertimbun di galian", {"affected": 1}),
        ("5 warga berhasil dievakuasi dari rumah yg terbakar", {"affected": 5}),
        # ... missing when they are still not found
        ("2 penambang tertimbun blm ditemukan", {"missing": 2}),
        # injury verbs and bites
        ("pemuda dibacok di pesta, 2 org kena parang", {"injured": 2}),
        ("sapi ngamuk seruduk 2 org di pasar hewan", {"injured": 2}),
        ("anjing gila gigit lagi, sdh 3 org bulan ini", {"injured": 3}),
        # "korban" alone says nothing of the state when one follows
        ("penikaman, 1 korban kritis", {"injured": 1}),
        # boats not back: the people on them are missing
        ("tiga nelayan belum pulang dari melaut", {"missing": 3}),
        # "anak 3 org" is three children
        ("anak 3 org keracunan makanan", {"affected": 3}),
        # a total and its breakdown are counted once
        ("5 org hanyut, 2 selamat, 3 blm ditemukan", {"missing": 3}),
        ("2 org hilang, 1 sudah ditemukan, 1 blm ketemu", {"missing": 1}),
        ("korban 3 org: 1 meninggal 2 luka", {"dead": 1, "injured": 2}),
        # ... but separate counts of other states are not a breakdown
        ("2 meninggal, 1 luka, 1 hilang", {"dead": 2, "injured": 1, "missing": 1}),
    ],
)
def test_blind2_casualty_rules(text: str, expected: dict[str, int]) -> None:
    assert classify(text).casualties.to_dict() == expected


# -- the general rules behind the blind-3 fixes, on sentences that are in no data set -----------------


@pytest.mark.parametrize(
    ("text", "category"),
    [
        # a rider falling off, or a vehicle on its side, is a crash whatever it carried or whoever is hurt
        ("pemotor jatuh sendiri di tikungan, kepala berdarah", "kecelakaan"),
        ("ojek jatuh dari motor dekat pasar, tangan patah, minta ambulans", "kecelakaan"),
        ("bapak pengendara motor jatuh di jalan licin, pingsan", "kecelakaan"),
        ("pikap muat kambing terbalik di turunan, kambing mati 3 ekor", "kecelakaan"),
        ("truk babi terguling di Kefa, 2 org luka", "kecelakaan"),
        # a well, trench or mine collapsing on the people digging it is a work accident
        ("galian pipa di Oelolok runtuh, 1 pekerja tertimbun", "kecelakaan"),
        ("tambang mangan runtuh, 3 penambang terjebak", "kecelakaan"),
        ("sumur warga runtuh saat digali", "kecelakaan"),
        # ... while a landslide burying diggers stays a landslide
        ("longsor timpa 2 org yg sedang gali batu", "longsor"),
        # ground movement and cracks in the ground
        ("ada pergerakan tanah di belakang kapela", "longsor"),
        ("retakan tanah makin lebar di ladang", "longsor"),
        # cut off by water or a broken road is the hazard's consequence; asking for evacuation is a rescue
        ("jalan putus, dusun terisolir", "infrastruktur"),
        ("sungai Benanain meluap, kampung terisolasi", "banjir"),
        ("jembatan gantung tenggelam, air kali naik", "banjir"),
        ("desa terisolasi, mohon evakuasi ibu hamil", "sar"),
        # a false alarm: a button pressed in a pocket or by accident
        ("maaf alarm palsu", "aman"),
        ("tombol tertekan waktu di motor, tidak ada apa2", "aman"),
        ("tdk sengaja terpencet, maaf pak", "aman"),
        ("hp kepencet di saku", "aman"),
        # ... but an accident that happened "tidak sengaja" is still the accident
        ("anak tidak sengaja minum racun tikus", "medis"),
        # politeness around a routine request or a logistics question is not an SOS
        ("tolong info jadwal pembagian beras", "lainnya"),
        ("mau tanya kapan bantuan sembako datang", "lainnya"),
        ("tolong cek rapat besok pagi", "lainnya"),
        # ... while a plea for people in danger still is, and a hazard still wins
        ("tolong!! kami butuh bantuan skrg", "sos"),
        ("minta tolong cepat datang", "sos"),
        ("tolong, kapan tim datang?", "sos"),
        ("tolong cek rumah nenek", "sos"),
        ("tolong kami, air sudah masuk rumah", "banjir"),
        # found dead (in Kupang Malay "ketemu") ends a search with a death, not an all-clear; someone
        # still missing keeps it going
        ("pemancing yg hanyut sdh ketemu meninggal", "sar"),
        ("dua pendaki: 1 sudah ketemu, 1 masih hilang", "sar"),
        ("lima nelayan hilang, tiga sudah kembali", "sar"),
        ("2 pendaki tersesat, 2 sudah ketemu selamat", "aman"),
        ("tiga nelayan hilang, dua sudah pulang", "sar"),
        # a hazard named after a general all-clear word is not cleared
        ("aman pak, cuma tiang listrik miring", "infrastruktur"),
        ("aman, tapi jembatan putus", "infrastruktur"),
        # a fire out with someone burnt is still the fire
        ("api sdh padam, 1 org luka bakar", "kebakaran"),
        # lamps and engines "mati" too
        ("lampu mati sejak sore di dusun 2", "infrastruktur"),
    ],
)
def test_blind3_rules(text: str, category: str) -> None:
    assert classify(text).category == category


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # "mati" is a death only of people
        ("tabrakan di Kiupukan, 2 org mati di tempat", {"dead": 2}),
        ("lampu mati satu kampung sejak sore", {}),
        ("mesin pompa mati, dua hari warga tdk dapat air", {}),
        ("kambing mati 4 ekor di kandang", {}),
        ("2 sapi mati tersambar petir", {}),
        ("ternak mati mendadak, 1 kampung resah", {}),
        # jiwa are people; "ungsi" is "mengungsi"
        ("banjir, lima belas jiwa ungsi ke sekolah", {"affected": 15}),
        ("angin kencang, 12 jiwa terpaksa ungsi", {"affected": 12}),
        # an update gives the new total, it does not add to the old one
        ("korban keracunan bertambah jadi 25 org", {"affected": 25}),
        ("warga diare sudah menjadi 9 org", {"affected": 9}),
        ("3 org keracunan, skrg su jadi 7 org", {"affected": 7}),
        ("4 org luka, korban bertambah jadi 6 org", {"injured": 6}),
        # stung or swollen is hurt
        ("dua petani bengkak2 disengat lebah", {"injured": 2}),
        ("tiga anak bengkak setelah disengat tawon", {"injured": 3}),
        # the people aboard a boat not back are missing with it
        ("sampan dari Oepoli belum merapat sejak kemarin, 2 org di dalamnya", {"missing": 2}),
        ("kapal motor hilang kontak, 5 org di atas kapal", {"missing": 5}),
        ("perahu sudah merapat, 3 org di atasnya selamat", {}),
        ("3 org di dalam rumah, air setinggi lutut", {}),
        # those back or found are no longer missing
        ("lima nelayan hilang, tiga sudah kembali", {"missing": 2}),
        ("dua pendaki: 1 sudah ketemu, 1 masih hilang", {"missing": 1}),
        ("2 pendaki tersesat, 2 sudah ketemu selamat", {}),
        ("tiga nelayan hilang, dua sudah pulang", {"missing": 1}),
        ("api sdh padam, 1 org luka bakar", {"injured": 1}),
        ("pemancing hanyut 2 org, satu ketemu meninggal", {"dead": 1, "missing": 1}),
    ],
)
def test_blind3_casualty_rules(text: str, expected: dict[str, int]) -> None:
    assert classify(text).casualties.to_dict() == expected


# -- the general mechanisms behind the blind-4 fixes, on sentences that are in no data set -------------


@pytest.mark.parametrize(
    ("text", "category"),
    [
        # a drill, a simulation or a training is planned, not happening ...
        ("minggu depan latihan evakuasi tsunami di pantai", "lainnya"),
        ("simulasi banjir di kantor camat jam 9", "lainnya"),
        ("pelatihan pemadam kebakaran utk relawan hari sabtu", "lainnya"),
        # ... but a real accident during one is still the accident
        ("waktu latihan pramuka anak jatuh dari pohon, tangan patah", "kecelakaan"),
        # an aftershock is an earthquake
        ("ada susulan lagi, warga keluar rumah", "gempa"),
        # a person pinned under a collapse, electrocuted, or hurt in a vehicle that was struck outranks
        # the damaged building, cable or tree
        ("tembok sekolah roboh, 1 murid masih tertindih, tlg", "sar"),
        ("rumah ambruk, bapak terjepit di bawah kayu, butuh bantuan", "sar"),
        ("petani tersetrum kabel listrik di sawah, tdk sadar", "kecelakaan"),
        ("pohon besar tumbang timpa motor, pengendara luka parah", "kecelakaan"),
        ("pohon tumbang tutup jln, tdk ada korban", "infrastruktur"),
        # a warning of what may happen does not make it happen
        ("awas kabel listrik putus di jln, bisa kesetrum", "infrastruktur"),
        # rescued / got out alive ends a search
        ("anak yg jatuh ke sumur sudah berhasil dikeluarkan, selamat", "aman"),
        # an enraged animal is hewan; a stray one is a neighbour's question
        ("kerbau ngamuk di kampung, seruduk anak", "hewan"),
        ("kambing sy lepas dari kandang, ada yg tau?", "lainnya"),
        # a boat found capsized with its crew not back is a search
        ("sampan ditemukan terbalik di pantai, pemiliknya belum ada kabar", "sar"),
        # past accidents cited about a road make it a road report; a crash happening now stays a crash
        ("jln ke oelbiteno berlubang besar, sdh 4 motor jatuh bulan ini", "infrastruktur"),
        ("motor jatuh di jln berlubang, pengendara luka", "kecelakaan"),
        # someone missing in a named hazard stays with the hazard ...
        ("banjir bandang di benanain, 2 org masih hilang", "banjir"),
        ("kebakaran rumah, 1 anak masih dicari", "kebakaran"),
        ("gempa, 1 org masih hilang", "gempa"),
        # ... unless swept away, drowned or on a boat, or when no hazard is named
        ("banjir, anak terseret arus, belum ditemukan", "sar"),
        ("perahu terbalik di laut, 2 nelayan masih hilang", "sar"),
        ("1 org masih hilang di hutan", "sar"),
        # water entering houses from a burst dam is a flood; "*" stands for one or two words but never
        # for a keyword of its own ("air banjir masuk" is the flood, not "air * masuk")
        ("embung desa jebol, air masuk rumah warga", "banjir"),
        ("tanah di kebun sudah turun", "longsor"),
        ("air banjir masuk puskesmas, pasien dipindah", "banjir"),
    ],
)
def test_blind4_rules(text: str, category: str) -> None:
    assert classify(text).category == category


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # KK, kepala keluarga, keluarga, rumah tangga: households, never people
        ("25 KK mengungsi ke balai desa", {}),
        ("lima belas kepala keluarga mengungsi krn longsor", {}),
        ("tiga keluarga mengungsi ke gereja", {}),
        ("sebelas jiwa dari 3 KK mengungsi", {"affected": 11}),
        # vehicles and animals are never people
        ("longsor timbun 2 oto di jln kefa, sopir selamat", {}),
        ("3 kendaraan tertimbun longsor", {}),
        ("1 pick up hanyut di kali", {}),
        ("2 org dan 3 sapi hanyut di kali", {"missing": 2}),
        # a count takes the one state word further on in its own clause ...
        ("tiga org nenek dan cucu terjebak di dapur, api besar", {"affected": 3}),
        ("longsor di bukit, 4 org petani dan anaknya tertimbun", {"affected": 4}),
        # ... but not one in another clause
        ("2 org dari desa sebelah, kakek luka di kepala", {}),
        # a bare count takes the message's one state word, and no guess when it names two
        ("anak2 sd muntah setelah makan jajan, 14 org", {"affected": 14}),
        ("keracunan makanan di pesta, ada 23 org", {"affected": 23}),
        ("api besar, 2 org luka, 1 pingsan, 5 org", {"injured": 2, "affected": 1}),
        # fever, waiting for evacuation, sleeping in tents: affected
        ("5 balita demam tinggi di posyandu", {"affected": 5}),
        ("gempa semalam, 45 org tidur di tenda darurat", {"affected": 45}),
        ("8 warga termasuk lansia menunggu evakuasi", {"affected": 8}),
        # still being searched for is missing
        ("kebakaran rumah, 1 anak masih dicari", {"missing": 1}),
    ],
)
def test_blind4_casualty_rules(text: str, expected: dict[str, int]) -> None:
    assert classify(text).casualties.to_dict() == expected


# -- the general mechanisms behind the blind-5 fixes, on sentences that are in no data set -------------


@pytest.mark.parametrize(
    ("text", "category"),
    [
        # what a word means depends on its clause's subject: fields drown in a flood, people in a search
        ("kebun jagung warga di oelbiteno dekat kali tenggelam", "banjir"),
        ("jalan desa ke arah pasar lama terendam, oto son bisa lewat", "banjir"),
        ("2 anak tenggelam di kali noemuti", "sar"),
        # ground cracking or sinking is a landslide; a crack alone is no earthquake
        ("tanah di pinggir kebun kopi bapak yosef retak dan terus turun", "longsor"),
        ("gempa td mlm, tanah di lapangan retak", "gempa"),
        ("dinding kantor desa retak", "lainnya"),
        # a lost animal is a neighbour's question; a lost child, or one taken by an animal, is a search
        ("kuda bpk markus hilang dari kemarin", "lainnya"),
        ("3 ekor kerbau lepas dr kandang, su cari seharian son dapat", "lainnya"),
        ("anak bpk markus hilang dari kemarin", "sar"),
        ("buaya terkam anak nelayan hingga hilang", "sar"),
        # livestock dying is an animal report, a burned body a burn, unless a fire is named
        ("babi2 warga mati mendadak, mulut berbusa", "hewan"),
        ("petani kena petir di sawah, badan gosong, tdk sadar", "medis"),
        ("rumah terbakar, badan korban hangus", "kebakaran"),
        # a hazard opening the message as what came before is background to the need that follows
        ("setelah gempa tadi ada maling masuk rumah kosong", "kriminal"),
        ("pasca banjir warga butuh air bersih", "infrastruktur"),
        ("2 org luka setelah tabrakan motor", "kecelakaan"),
        ("habis banjir", "banjir"),
        # ... but the sea drawing back is a tsunami sign, never a flood's all-clear
        ("abis gempa air laut di pantai ponu surut jauh", "gempa"),
        # a last clause that is an all-clear alone clears the message; "warga aman" does not
        ("ular kobra masuk dapur, su dibunuh warga, aman", "aman"),
        ("ular masuk kamar, sudah ditangkap pawang", "aman"),
        ("kebakaran di pasar, warga aman", "kebakaran"),
        ("api masih besar, belum aman", "kebakaran"),
        # someone trapped with signs of life is a rescue, outranking the work accident ...
        ("sumur tua runtuh, 1 pekerja terjebak di dalam, masih terdengar suara", "sar"),
        # ... buried workers alone stay the accident
        ("galian pipa runtuh, 2 buruh tertimbun, masih dengar suara", "kecelakaan"),
        # got out alive ends it
        ("nenek yg jatuh di sumur su diangkat selamat", "aman"),
        # supplies, routine trips and "not an emergency" are logistics
        ("persediaan oralit di posyandu tinggal sedikit, kapan dikirim?", "lainnya"),
        ("mohon oto utk pasien kontrol ke rsud hari kamis, tidak darurat", "lainnya"),
        ("ibu hamil pendarahan, butuh ambulans sekarang", "medis"),
        # a road nobody can pass is a road report unless a crash or a flood blocks it
        ("deker di jln oeolo patah, oto tdk bisa lewat", "infrastruktur"),
        ("truk terbalik di jln oeolo, tdk bisa lewat", "kecelakaan"),
        # water measured against the body is a flood, whoever it traps
        ("air sudah sampai dada di rt 4, 3 keluarga terjebak di loteng", "banjir"),
        # everyday words are not typos of keywords
        ("banjir su surut, warga pulang ke rumah masing2", "aman"),
        ("sangat parah angin semalam, atap terbang", "angin"),
    ],
)
def test_blind5_rules(text: str, category: str) -> None:
    assert classify(text).category == category


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # moved, got out, taken to a clinic: affected
        ("air masuk sekolah, 30 murid dipindahkan ke gereja", {"affected": 30}),
        ("5 anak dibawa ke puskesmas krn diare", {"affected": 5}),
        ("tembok roboh, 2 tukang su berhasil dikeluarkan", {"affected": 2}),
        # a graver state said later of the same people, with no count of its own, is their state
        ("tertimbun 2 org di kebun, su diangkat tp meninggal", {"dead": 2}),
        ("perahu terbalik 3 org, blm ditemukan", {"missing": 3}),
        # ... not when the later clause has its own people or count
        ("2 org tertimbun, sopir oto meninggal", {"affected": 2}),
        # part of a group counted before is not added
        ("keracunan di pesta, 12 org muntah, 4 dirawat di pkm", {"affected": 12}),
        ("6 org luka, 2 luka berat", {"injured": 6}),
        ("3 org keracunan, 5 org dirawat", {"affected": 8}),
        # a count right after "<thing> <verb>" counts the thing
        ("tawuran pemuda, motor dirusak 3, ada yg luka", {}),
        ("rumah dibakar, 2 org luka", {"injured": 2}),
        ("motor tabrak 2 anak", {"injured": 2}),
        # a singular person with no number is no count
        ("bapak tua luka kena parang", {}),
    ],
)
def test_blind5_casualty_rules(text: str, expected: dict[str, int]) -> None:
    assert classify(text).casualties.to_dict() == expected


def test_common_words_one_letter_from_a_keyword_stay_themselves() -> None:
    clf = default_classifier()
    words = ["masing", "sangat", "bantal", "kolong", "tentang", "rendah", "jarang", "kadang", "tampak"]
    assert clf.tokens(" ".join(words)) == words


def test_said_of_is_validated_and_extensible(tmp_path: Path) -> None:
    ext = tmp_path / "meto.toml"
    ext.write_text('[categories.lainnya.said_of]\nikan = ["hilang"]\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Classifier.load([ext])
    assert "categories.lainnya.said_of.ikan" in info.value.key
    assert "not a subject class" in info.value.reason
    ext.write_text('[subjects]\nanimals = ["bijae teun"]\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Classifier.load([ext])
    assert "subjects.animals[0]" in info.value.key
    ext.write_text('[subjects]\n"Ternak" = ["bijae"]\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Classifier.load([ext])
    assert "subjects.Ternak" in info.value.key
    # Uab Meto: "bijae" is a cow, "fafi" a pig; a regency's own subject class works the same way
    ext.write_text(
        '[subjects]\nanimals = ["bijae", "fafi"]\nboats = ["sampan"]\n'
        '[categories.sar.said_of]\nboats = ["belum pulang"]\n',
        encoding="utf-8",
    )
    clf = Classifier.load([ext])
    assert clf.classify("bijae bpk lukas hilang").category == "lainnya"
    assert classify("bijae bpk lukas hilang").category == "sar"


def test_tokens_keep_their_clauses() -> None:
    clf = default_classifier()
    # "." and "," between digits are part of a number, not clause separators
    assert clf.tokens_and_clauses("1.500 jiwa, 2 luka; aman")[1] == [0, 0, 0, 1, 1, 2]
    assert clf.tokens("1.500 jiwa, 2 luka; aman") == ["1", "500", "jiwa", "2", "luka", "aman"]


def test_primary_yields_and_word_lists_are_validated(tmp_path: Path) -> None:
    ext = tmp_path / "meto.toml"
    ext.write_text("[categories.sar]\nprimary_yields = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Classifier.load([ext])
    assert "categories.sar.primary_yields" in info.value.key
    ext.write_text('[words]\ndrills = ["latihan", 3]\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Classifier.load([ext])
    assert "words.drills[1]" in info.value.key
    # a regency adds its own drill word ("lat" is what officers type)
    ext.write_text('[words]\ndrills = ["lat"]\n[categories.lainnya]\nkeywords = ["lat"]\n', encoding="utf-8")
    assert Classifier.load([ext]).classify("lat kebakaran di sd kefa").category == "lainnya"
    assert classify("lat kebakaran di sd kefa").category == "kebakaran"


def test_cleared_by_only_for_hazards(tmp_path: Path) -> None:
    ext = tmp_path / "meto.toml"
    ext.write_text('[categories.aman]\ncleared_by = ["oke"]\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Classifier.load([ext])
    assert "categories.aman.cleared_by" in info.value.key
    ext.write_text('[categories.kebakaran]\ncleared_by = ["ai mate"]\n', encoding="utf-8")
    clf = Classifier.load([ext])
    assert clf.classify("ai mate").category == "aman"
    assert clf.classify("kebakaran di Noemuti ai mate, tiang listrik roboh").category == "infrastruktur"


# -- regency extension files ------------------------------------------------------------------------

METO = """
# Uab Meto (Dawan) words for the Miomaffo valley
[categories.kebakaran]
strong = ["ai naek"]
keywords = ["ai"]

[categories.banjir]
keywords = ["oe naek"]

[synonyms]
atoni = "orang"

[numbers.words]
nua = 2
teun = 3
"bo'es" = 10

[canned]
"AI NAEK" = "kebakaran"
"""


def test_extension_adds_uab_meto_words(tmp_path: Path) -> None:
    ext = tmp_path / "meto.toml"
    ext.write_text(METO, encoding="utf-8")
    assert classify("ai naek di Noemuti").category == "lainnya"
    clf = Classifier.load([ext])
    assert clf.classify("ai naek di Noemuti").category == "kebakaran"
    assert clf.classify("oe naek di Oelolok").category == "banjir"
    assert clf.classify("teun atoni luka").casualties.to_dict() == {"injured": 3}
    assert clf.classify("bo'es atoni mengungsi").casualties.to_dict() == {"affected": 10}
    assert clf.classify("AI NAEK").canned
    # the packaged words still work
    assert clf.classify("bnjir di Biboki").category == "banjir"


@pytest.mark.parametrize(
    ("content", "key_part", "reason_part"),
    [
        ('[categories.kebakar]\nkeywords = ["x"]\n', "categories.kebakar", "not a category"),
        ("[categories.banjir]\nkeywords = [3]\n", "categories.banjir.keywords[0]", "must be a string"),
        ('[categories.banjir]\nkeywords = ["  "]\n', "categories.banjir.keywords[0]", "at least one letter"),
        ('[categories.banjir]\nkeywords = "oe"\n', "categories.banjir.keywords", "must be a list"),
        ('[categories.banjir]\nurgency = "Now"\n', "categories.banjir.urgency", "Immediate"),
        ('[categories.banjir]\nkeywrds = ["oe"]\n', "categories.banjir.keywrds", "not a known key"),
        ("[kategori]\nx = 1\n", "kategori", "not a known key"),
        ('[canned]\n"AI" = "api"\n', "canned", "must be one of"),
        ("[numbers.words]\nnua = -2\n", "numbers.words.nua", "0-100000"),
        ('[synonyms]\n"dua kata" = "x"\n', "synonyms.dua kata", "single word"),
        ("[categories.banjir\n", "meto.toml", "not valid TOML"),
        ('[categories.banjir]\nkeywords = ["* naik"]\n', "categories.banjir.keywords[0]", "between two"),
        ('[categories.banjir]\nkeywords = ["kali *x naik"]\n', "categories.banjir.keywords[0]", "alone"),
        ("[categories.aman]\nfinal = 1\n", "categories.aman.final", "true or false"),
    ],
)
def test_invalid_extension_names_file_and_key(tmp_path: Path, content: str, key_part: str, reason_part: str) -> None:
    ext = tmp_path / "meto.toml"
    ext.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Classifier.load([ext])
    assert str(ext) in info.value.key
    assert key_part in info.value.key
    assert reason_part in info.value.reason


def test_missing_extension_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        Classifier.load([tmp_path / "nope.toml"])
    assert "nope.toml" in info.value.key


def test_default_classifier_is_cached() -> None:
    assert default_classifier() is default_classifier()
