"""The center database's schema: every migration, for SQLite and PostgreSQL, in the order they apply.

:mod:`center.storage` applies :data:`MIGRATIONS` when it opens a database (and records each in
``schema_migrations``); the receiver's tables and the staff's tables (:mod:`center.staffdb`) are in the
same database, so that staff actions commit in the same transaction as a report's triage columns.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Migration:
    name: str
    sqlite: str
    postgresql: str


_REPORTS_SQL = """
CREATE TABLE reports (
    report_id TEXT PRIMARY KEY,
    post_id TEXT NOT NULL,
    origin TEXT NOT NULL,
    mesh_packet_id BIGINT,
    category TEXT NOT NULL,
    urgency TEXT NOT NULL,
    severity TEXT NOT NULL,
    mode TEXT NOT NULL,
    msg_type TEXT NOT NULL,
    text_raw TEXT NOT NULL,
    lat DOUBLE PRECISION,
    lon DOUBLE PRECISION,
    verified INTEGER NOT NULL DEFAULT 0,
    body TEXT NOT NULL,
    observed_post_ts DOUBLE PRECISION NOT NULL,
    stored_post_ts DOUBLE PRECISION NOT NULL,
    received_ts DOUBLE PRECISION NOT NULL,
    observed_est_ts DOUBLE PRECISION NOT NULL,
    age_s DOUBLE PRECISION NOT NULL,
    age_source TEXT NOT NULL,
    post_sent_ts DOUBLE PRECISION,
    copies INTEGER NOT NULL DEFAULT 1,
    status TEXT NOT NULL DEFAULT 'baru',
    incident_id TEXT,
    updated_ts DOUBLE PRECISION NOT NULL
);
CREATE INDEX reports_received ON reports (received_ts);
CREATE INDEX reports_mesh ON reports (origin, mesh_packet_id);
CREATE INDEX reports_post ON reports (post_id, received_ts);
CREATE TABLE report_copies (
    report_id TEXT NOT NULL REFERENCES reports (report_id) ON DELETE CASCADE,
    post_id TEXT NOT NULL,
    wire_report_id TEXT NOT NULL,
    first_received_ts DOUBLE PRECISION NOT NULL,
    last_received_ts DOUBLE PRECISION NOT NULL,
    receipts INTEGER NOT NULL DEFAULT 1,
    path TEXT NOT NULL DEFAULT '[]',
    age_s DOUBLE PRECISION NOT NULL,
    observed_est_ts DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (report_id, post_id)
);
CREATE INDEX report_copies_wire ON report_copies (wire_report_id);
CREATE TABLE posts (
    post_id TEXT PRIMARY KEY,
    regency TEXT NOT NULL,
    state TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT '{}',
    status_ts DOUBLE PRECISION,
    boot_counter BIGINT,
    version TEXT,
    first_seen_ts DOUBLE PRECISION NOT NULL,
    last_report_ts DOUBLE PRECISION
);
CREATE TABLE replies (
    cmd_id TEXT PRIMARY KEY,
    report_id TEXT NOT NULL REFERENCES reports (report_id),
    post_id TEXT NOT NULL,
    regency TEXT NOT NULL,
    to_node TEXT NOT NULL,
    text TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_ts DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',
    state_ts DOUBLE PRECISION NOT NULL,
    detail TEXT
);
CREATE INDEX replies_report ON replies (report_id);
CREATE INDEX replies_state ON replies (state);
"""

_STAFF_SQL = """
CREATE TABLE staff_users (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_ts DOUBLE PRECISION NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE staff_sessions (
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES staff_users (username),
    csrf TEXT NOT NULL,
    created_ts DOUBLE PRECISION NOT NULL,
    expires_ts DOUBLE PRECISION NOT NULL,
    last_seen_ts DOUBLE PRECISION NOT NULL
);
CREATE TABLE triage (
    report_id TEXT PRIMARY KEY REFERENCES reports (report_id),
    acknowledged_ts DOUBLE PRECISION,
    acknowledged_by TEXT,
    corrections TEXT NOT NULL DEFAULT '{}',
    updated_ts DOUBLE PRECISION NOT NULL,
    updated_by TEXT NOT NULL
);
CREATE TABLE incidents (
    incident_id TEXT PRIMARY KEY,
    primary_report_id TEXT NOT NULL,
    created_ts DOUBLE PRECISION NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE assignments (
    id {serial},
    report_id TEXT NOT NULL,
    agency TEXT NOT NULL,
    dispatched_ts DOUBLE PRECISION NOT NULL,
    assigned_by TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX assignments_report ON assignments (report_id);
CREATE TABLE notes (
    id {serial},
    report_id TEXT NOT NULL,
    at_ts DOUBLE PRECISION NOT NULL,
    username TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX notes_report ON notes (report_id);
CREATE TABLE edits (
    id {serial},
    report_id TEXT NOT NULL,
    at_ts DOUBLE PRECISION NOT NULL,
    username TEXT NOT NULL,
    field TEXT NOT NULL,
    old_value TEXT,
    new_value TEXT
);
CREATE INDEX edits_report ON edits (report_id);
CREATE TABLE audit (
    id {serial},
    at_ts DOUBLE PRECISION NOT NULL,
    username TEXT NOT NULL,
    action TEXT NOT NULL,
    report_id TEXT,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_report ON audit (report_id)
"""

_STAFF = Migration(
    "s001_staff",
    _STAFF_SQL.replace("{serial}", "INTEGER PRIMARY KEY AUTOINCREMENT"),
    _STAFF_SQL.replace("{serial}", "BIGSERIAL PRIMARY KEY"),
)

#: A copy another post carried (docs/RELAY.md, "To the center"): ``post_id`` of the copy is the carrier
#: that published it; these name the origin post, the hop it came from and the custody hops it made.
#: NULL for a copy the post delivered itself.  Additive: an older center's rows read as direct copies.
_RELAY_COPIES_SQL = """
ALTER TABLE report_copies ADD COLUMN relay_origin TEXT;
ALTER TABLE report_copies ADD COLUMN relay_prev TEXT;
ALTER TABLE report_copies ADD COLUMN relay_hops INTEGER;
CREATE INDEX report_copies_relay ON report_copies (relay_origin, post_id)
"""

#: Each center receiver's presence (docs/PROTOCOL.md, ``center_state``), from its retained topic
#: ``112/v1/center/receivers/{receiver_id}``: every receiver records every receiver's messages.
_RECEIVERS_SQL = """
CREATE TABLE receivers (
    receiver_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    connected_at TEXT,
    session TEXT,
    beat_ts DOUBLE PRECISION,
    status_ts DOUBLE PRECISION NOT NULL
)
"""

#: Failed staff logins inside the rate limiter's window (center/auth.py LoginLimiter), shared by every
#: center process on the database.
_LOGIN_FAILURES_SQL = """
CREATE TABLE login_failures (
    key TEXT NOT NULL,
    at_ts DOUBLE PRECISION NOT NULL
);
CREATE INDEX login_failures_key ON login_failures (key, at_ts);
CREATE INDEX login_failures_at ON login_failures (at_ts)
"""

#: A staff reply to a report that reached the center only carried goes to the carrier's ``cmd`` topic
#: (``replies.post_id`` = the carrier) with this origin post, for the carrier to send on over the mesh
#: (docs/RELAY.md, "Staff replies over the mesh").  NULL: the post itself delivers it to the handset.
_REPLY_ORIGIN_SQL = """
ALTER TABLE replies ADD COLUMN relay_origin TEXT
"""

#: Applied in order, once each, in one transaction per migration.  Append; never edit an applied one.
MIGRATIONS: tuple[Migration, ...] = (
    Migration("c001_core", _REPORTS_SQL, _REPORTS_SQL),
    _STAFF,
    Migration("c002_relay_copies", _RELAY_COPIES_SQL, _RELAY_COPIES_SQL),
    Migration("c003_receivers", _RECEIVERS_SQL, _RECEIVERS_SQL),
    Migration("s002_login_failures", _LOGIN_FAILURES_SQL, _LOGIN_FAILURES_SQL),
    Migration("c004_reply_origin", _REPLY_ORIGIN_SQL, _REPLY_ORIGIN_SQL),
)
