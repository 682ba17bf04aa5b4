"""What staff do with a report: triage status, agency assignment, merging duplicates into one incident,
notes and corrections — each written to the audit log with the user and the time.

Status flow (CENTER.md)::

    baru → diterima → diverifikasi ─→ dikirim (unit) → selesai
              │   ╲→ duplikat / palsu        ╲──────────→ selesai
              ╰── (duplikat / palsu / selesai can be reopened to diterima)

The first move out of ``baru`` is the acknowledgement: its user and time are kept, shown in the timeline
and exported as a CAP ``Ack``.  The report as received is never changed: corrections are an overlay
(``corrections``), each change also kept in ``edits`` with the old and new value.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from center.staffdb import StaffDB
from siaga.errors import CenterError
from siaga.report import (
    CATEGORIES,
    LIFE_SAFETY,
    PRIORITY,
    Casualties,
    InvalidReport,
    PathHop,
    Report,
    format_time,
    utcnow,
)

STATUSES: tuple[str, ...] = ("baru", "diterima", "diverifikasi", "duplikat", "palsu", "dikirim", "selesai")
STATUS_LABEL: dict[str, str] = {
    "baru": "Baru",
    "diterima": "Diterima",
    "diverifikasi": "Diverifikasi",
    "duplikat": "Duplikat",
    "palsu": "Palsu",
    "dikirim": "Dikirim unit",
    "selesai": "Selesai",
}
TRANSITIONS: dict[str, frozenset[str]] = {
    "baru": frozenset({"diterima", "duplikat", "palsu"}),
    "diterima": frozenset({"diverifikasi", "duplikat", "palsu"}),
    "diverifikasi": frozenset({"dikirim", "selesai", "duplikat", "palsu"}),
    "dikirim": frozenset({"selesai"}),
    "duplikat": frozenset({"diterima"}),
    "palsu": frozenset({"diterima"}),
    "selesai": frozenset({"diterima"}),
}
#: Statuses that still need someone's attention (sorted before closed ones in the queue).
OPEN_STATUSES = frozenset({"baru", "diterima", "diverifikasi", "dikirim"})
AGENCIES: tuple[str, ...] = ("Damkar", "PSC 119", "Polres", "BPBD", "Basarnas")
#: Fields staff may correct, with the key used in ``corrections``.
CORRECTABLE = ("category", "casualties", "lat", "lon", "accuracy_m", "area_desc", "area_code", "text_id")
MAX_NOTE = 2000


class TriageError(CenterError):
    """A staff action is not allowed (bad transition, bad value); the message is shown to the user."""


@dataclass(frozen=True, slots=True)
class Reply:
    cmd_id: str
    text: str
    state: str
    created_at: datetime | None = None
    updated_at: datetime | None = None
    username: str | None = None


@dataclass(frozen=True, slots=True)
class ReportView:
    """A report as staff see it: what arrived, the receiver's bookkeeping, and the triage overlay."""

    report: Report
    received_at: datetime
    observed_est: datetime | None = None
    copies: int = 1
    paths: tuple[PathHop, ...] = ()
    replies: tuple[Reply, ...] = ()
    status: str = "baru"
    incident_id: str | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    corrections: Mapping[str, Any] = field(default_factory=dict)
    assignments: tuple[Mapping[str, Any], ...] = ()

    # effective values: a correction wins over what the post parsed
    @property
    def report_id(self) -> str:
        return self.report.report_id

    @property
    def category(self) -> str:
        return str(self.corrections.get("category", self.report.category))

    @property
    def casualties(self) -> Casualties:
        if "casualties" in self.corrections:
            return Casualties.from_dict(self.corrections["casualties"])
        return self.report.casualties

    @property
    def lat(self) -> float | None:
        return self.corrections.get("lat", self.report.lat)

    @property
    def lon(self) -> float | None:
        return self.corrections.get("lon", self.report.lon)

    @property
    def accuracy_m(self) -> float | None:
        return self.corrections.get("accuracy_m", self.report.accuracy_m)

    @property
    def area_desc(self) -> str | None:
        return self.corrections.get("area_desc", self.report.area_desc)

    @property
    def area_code(self) -> str | None:
        return self.corrections.get("area_code", self.report.area_code)

    @property
    def text_id(self) -> str | None:
        return self.corrections.get("text_id")

    @property
    def observed(self) -> datetime:
        """Best estimate of when it happened: the receiver's clock-corrected time, else the post's."""
        return self.observed_est or self.report.observed_at

    @property
    def life_safety(self) -> bool:
        return self.category in LIFE_SAFETY

    @property
    def priority(self) -> int:
        return PRIORITY.get(self.category, 3)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def corrected(self) -> bool:
        return bool(self.corrections)

    def queue_key(self) -> tuple[int, int, int, str]:
        """Unacknowledged first, then open before closed, most urgent, oldest first."""
        return (
            0 if self.status == "baru" else 1 if self.is_open else 2,
            self.priority,
            0,
            format_time(self.received_at) if self.is_open else _invert(format_time(self.received_at)),
        )


def _invert(text: str) -> str:
    # closed reports: newest first, so the sort key of a timestamp string is inverted character-wise
    return "".join(chr(0x10FFFF - ord(c)) for c in text)


def sort_queue(views: Iterable[ReportView]) -> list[ReportView]:
    return sorted(views, key=ReportView.queue_key)


class Triage:
    """Staff actions.  Every method takes the acting username, runs in one transaction and audits.

    ``status`` and ``incident_id`` live in the receiver's ``reports`` row (so ``siaga center reports`` and
    storage's filters see them); acknowledgement and corrections in ``triage``; the rest in their tables.
    """

    def __init__(self, db: StaffDB) -> None:
        self.db = db

    # -- reading --------------------------------------------------------------------------------
    def state(self, report_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Triage overlay (acknowledgement, corrections, assignments) for these reports."""
        ids = list(dict.fromkeys(report_ids))
        out: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.db.query(f"SELECT * FROM triage WHERE report_id IN ({marks})", chunk):
                row["corrections"] = json.loads(row["corrections"] or "{}")
                row["assignments"] = []
                out[row["report_id"]] = row
            for row in self.db.query(
                f"SELECT report_id, agency, dispatched_ts, assigned_by, note FROM assignments"
                f" WHERE report_id IN ({marks}) ORDER BY id",
                chunk,
            ):
                row["dispatched_at"] = _dt(row.pop("dispatched_ts"))
                out.setdefault(row["report_id"], _fresh(row["report_id"]))["assignments"].append(row)
        return out

    def version(self) -> str:
        """Changes whenever any staff data changes (live updates across processes)."""
        row = self.db.one("SELECT MAX(id) AS last FROM audit")
        return str(row["last"] if row else None)

    def notes(self, report_id: str) -> list[dict[str, Any]]:
        rows = self.db.query("SELECT at_ts, username, text FROM notes WHERE report_id = ? ORDER BY id", (report_id,))
        return [{"at": _dt(r["at_ts"]), "username": r["username"], "text": r["text"]} for r in rows]

    def audit(self, report_id: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        if report_id is None:
            rows = self.db.query(
                "SELECT at_ts, username, action, report_id, detail FROM audit ORDER BY id DESC LIMIT ?",
                (limit,),
            )
        else:
            rows = self.db.query(
                "SELECT at_ts, username, action, report_id, detail FROM audit WHERE report_id = ? ORDER BY id",
                (report_id,),
            )
        return [
            {
                "at": _dt(r["at_ts"]),
                "username": r["username"],
                "action": r["action"],
                "report_id": r["report_id"],
                "detail": json.loads(r["detail"] or "{}"),
            }
            for r in rows
        ]

    def incident_members(self, incident_id: str) -> list[str]:
        rows = self.db.query("SELECT report_id FROM reports WHERE incident_id = ? ORDER BY received_ts", (incident_id,))
        return [r["report_id"] for r in rows]

    # -- actions --------------------------------------------------------------------------------
    def set_status(self, report_id: str, status: str, user: str, *, note: str = "") -> None:
        if status not in STATUSES:
            raise TriageError(f"status tidak dikenal: {status!r}")
        with self.db.atomic():
            row = self._row(report_id, user)
            current = row["status"]
            if status == current:
                return
            if status not in TRANSITIONS.get(current, frozenset()):
                raise TriageError(
                    f"status {STATUS_LABEL.get(current, current)} tidak dapat diubah ke {STATUS_LABEL[status]}"
                )
            self._move(report_id, current, status, user)
            if note.strip():
                self._note(report_id, user, note.strip())

    def acknowledge(self, report_id: str, user: str) -> bool:
        """baru → diterima; False when someone already acknowledged it."""
        with self.db.atomic():
            row = self._row(report_id, user)
            if row["status"] != "baru":
                return False
            self._move(report_id, "baru", "diterima", user)
            return True

    def assign(
        self, report_id: str, agency: str, user: str, *, dispatched_at: datetime | None = None, note: str = ""
    ) -> None:
        if agency not in AGENCIES:
            raise TriageError(f"instansi harus salah satu dari {', '.join(AGENCIES)}")
        when = (dispatched_at or utcnow()).timestamp()
        with self.db.atomic():
            row = self._row(report_id, user)
            if row["status"] not in ("diverifikasi", "dikirim"):
                raise TriageError("laporan harus diverifikasi dulu sebelum unit dikirim")
            self.db.insert(
                "INSERT INTO assignments (report_id, agency, dispatched_ts, assigned_by, note) VALUES (?, ?, ?, ?, ?)",
                (report_id, agency, when, user, note[:MAX_NOTE]),
            )
            self._audit(user, "assign", report_id, {"agency": agency, "dispatched_at": format_time(_dt(when))})
            if row["status"] == "diverifikasi":
                self._move(report_id, "diverifikasi", "dikirim", user)

    def add_note(self, report_id: str, text: str, user: str) -> None:
        text = text.strip()
        if not text:
            raise TriageError("catatan kosong")
        with self.db.atomic():
            self._row(report_id, user)
            self._note(report_id, user, text)

    def correct(self, report_id: str, changes: Mapping[str, Any], user: str) -> dict[str, Any]:
        """Apply corrections (validated); returns the new overlay.  ``None``/"" removes a correction."""
        clean = {key: _validate_correction(key, value) for key, value in changes.items()}
        if ("lat" in clean) != ("lon" in clean) or (clean.get("lat") is None) != (clean.get("lon") is None):
            raise TriageError("lintang dan bujur harus diisi bersama")
        with self.db.atomic():
            row = self._row(report_id, user)
            overlay = dict(row["corrections"])
            changed = False
            now = time.time()
            for key, value in clean.items():
                old = overlay.get(key)
                if old == value:
                    continue
                if value is None:
                    overlay.pop(key, None)
                else:
                    overlay[key] = value
                changed = True
                self.db.insert(
                    "INSERT INTO edits (report_id, at_ts, username, field, old_value, new_value)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (report_id, now, user, key, json.dumps(old), json.dumps(value)),
                )
                self._audit(user, "correct", report_id, {"field": key, "old": old, "new": value})
            if changed:
                self.db.execute(
                    "UPDATE triage SET corrections = ?, updated_ts = ?, updated_by = ? WHERE report_id = ?",
                    (json.dumps(overlay, ensure_ascii=False), now, user, report_id),
                )
                self._touch(report_id, now)
            return overlay

    def merge(self, primary_id: str, duplicate_ids: Iterable[str], user: str) -> str:
        """Put duplicates into the primary's incident (created if needed) and mark them ``duplikat``."""
        dups = [d for d in dict.fromkeys(duplicate_ids) if d and d != primary_id]
        if not dups:
            raise TriageError("pilih laporan lain untuk digabung")
        with self.db.atomic():
            primary = self._row(primary_id, user)
            incident = primary["incident_id"]
            now = time.time()
            if not incident:
                incident = f"INS-{utcnow():%Y%m%d}-{secrets.token_hex(3).upper()}"
                self.db.insert(
                    "INSERT INTO incidents (incident_id, primary_report_id, created_ts, created_by)"
                    " VALUES (?, ?, ?, ?)",
                    (incident, primary_id, now, user),
                )
                self.db.execute(
                    "UPDATE reports SET incident_id = ?, updated_ts = ? WHERE report_id = ?",
                    (incident, now, primary_id),
                )
                self._audit(user, "incident.create", primary_id, {"incident_id": incident})
            for dup in dups:
                row = self._row(dup, user)
                old_incident = row["incident_id"]
                if old_incident and old_incident != incident:
                    # two incidents become one: every member of the old one follows
                    self.db.execute(
                        "UPDATE reports SET incident_id = ?, updated_ts = ? WHERE incident_id = ?",
                        (incident, now, old_incident),
                    )
                self.db.execute(
                    "UPDATE reports SET incident_id = ?, updated_ts = ? WHERE report_id = ?",
                    (incident, now, dup),
                )
                self._audit(user, "merge", dup, {"incident_id": incident, "into": primary_id})
                if row["status"] != "duplikat":
                    # a merge is a decision that overrides the normal flow (even from "baru")
                    self._move(dup, row["status"], "duplikat", user, forced=True)
            return str(incident)

    def record(self, user: str, action: str, report_id: str | None, detail: Mapping[str, Any]) -> None:
        """Audit an action done through another module (a reply sent through the receiver's cmd path)."""
        with self.db.atomic():
            self._audit(user, action, report_id, detail)

    # -- internals ------------------------------------------------------------------------------
    def _row(self, report_id: str, user: str) -> dict[str, Any]:
        rows = self.db.query(
            "SELECT r.report_id, r.status, r.incident_id, t.corrections, t.acknowledged_ts"
            " FROM reports r LEFT JOIN triage t ON t.report_id = r.report_id WHERE r.report_id = ?",
            (report_id,),
        )
        if not rows:
            raise TriageError(f"laporan {report_id!r} tidak ditemukan")
        row = rows[0]
        if row["corrections"] is None:
            self.db.execute(
                "INSERT INTO triage (report_id, corrections, updated_ts, updated_by) VALUES (?, '{}', ?, ?)",
                (report_id, time.time(), user),
            )
        row["corrections"] = json.loads(row["corrections"] or "{}")
        return row

    def _touch(self, report_id: str, now: float) -> None:
        self.db.execute("UPDATE reports SET updated_ts = ? WHERE report_id = ?", (now, report_id))

    def _move(self, report_id: str, old: str, new: str, user: str, *, forced: bool = False) -> None:
        now = time.time()
        if old == "baru":
            self.db.execute(
                "UPDATE triage SET acknowledged_ts = ?, acknowledged_by = ? WHERE report_id = ?"
                " AND acknowledged_ts IS NULL",
                (now, user, report_id),
            )
            self._audit(user, "acknowledge", report_id, {})
        self.db.execute("UPDATE reports SET status = ?, updated_ts = ? WHERE report_id = ?", (new, now, report_id))
        self.db.execute("UPDATE triage SET updated_ts = ?, updated_by = ? WHERE report_id = ?", (now, user, report_id))
        detail: dict[str, Any] = {"from": old, "to": new}
        if forced:
            detail["forced"] = True
        self._audit(user, "status", report_id, detail)

    def _note(self, report_id: str, user: str, text: str) -> None:
        text = text[:MAX_NOTE]
        self.db.insert(
            "INSERT INTO notes (report_id, at_ts, username, text) VALUES (?, ?, ?, ?)",
            (report_id, time.time(), user, text),
        )
        self._audit(user, "note", report_id, {"text": text[:200]})

    def _audit(self, user: str, action: str, report_id: str | None, detail: Mapping[str, Any]) -> None:
        self.db.insert(
            "INSERT INTO audit (at_ts, username, action, report_id, detail) VALUES (?, ?, ?, ?, ?)",
            (time.time(), user, action, report_id, json.dumps(dict(detail), ensure_ascii=False)),
        )


def _dt(ts: float | None) -> datetime:
    return datetime.fromtimestamp(float(ts or 0.0), UTC)


def _fresh(report_id: str) -> dict[str, Any]:
    return {
        "report_id": report_id,
        "acknowledged_ts": None,
        "acknowledged_by": None,
        "corrections": {},
        "assignments": [],
    }


def apply_state(
    report: Report,
    *,
    received_at: datetime,
    status: str = "baru",
    incident_id: str | None = None,
    state: Mapping[str, Any] | None = None,
    observed_est: datetime | None = None,
    copies: int = 1,
    paths: Iterable[PathHop] = (),
    replies: Iterable[Reply] = (),
) -> ReportView:
    """Combine a stored report with its triage overlay into what the dashboard and exports show."""
    state = state or {}
    ack = state.get("acknowledged_ts")
    return ReportView(
        report=report,
        received_at=received_at,
        observed_est=observed_est,
        copies=copies,
        paths=tuple(paths) or report.path,
        replies=tuple(replies),
        status=status,
        incident_id=incident_id,
        acknowledged_at=_dt(ack) if ack is not None else None,
        acknowledged_by=state.get("acknowledged_by"),
        corrections=dict(state.get("corrections") or {}),
        assignments=tuple(state.get("assignments") or ()),
    )


def _validate_correction(key: str, value: Any) -> Any:
    if key not in CORRECTABLE:
        raise TriageError(f"kolom {key!r} tidak dapat dikoreksi")
    if value is None or value == "":
        return None
    if key == "category":
        if value not in CATEGORIES:
            raise TriageError(f"kategori harus salah satu dari {', '.join(CATEGORIES)}")
        return value
    if key == "casualties":
        try:
            return Casualties.from_dict(value).to_dict()
        except InvalidReport as exc:
            raise TriageError(f"korban: {exc}") from None
    if key in ("lat", "lon", "accuracy_m"):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TriageError(f"{key} harus berupa angka") from None
        bounds = {"lat": (-90.0, 90.0), "lon": (-180.0, 180.0), "accuracy_m": (0.0, 1e6)}[key]
        if not bounds[0] <= number <= bounds[1] or number != number:
            raise TriageError(f"{key} di luar batas {bounds[0]:g}..{bounds[1]:g}")
        return number
    if not isinstance(value, str) or len(value) > (4096 if key == "text_id" else 200):
        raise TriageError(f"{key} terlalu panjang")
    return value.strip() or None
