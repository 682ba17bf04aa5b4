"""The post store's tables: every migration, in order (applied by :meth:`edge.store.Store.open`).

Additive only: a store file written by an older version opens and drains with this code
(tests/test_store_upgrade.py), and a newer file is never needed to read an older one.
"""

from __future__ import annotations

import sqlite_utils

migrations = sqlite_utils.Migrations("siaga-post-store")


@migrations()
def m001_reports(db: sqlite_utils.Database) -> None:
    db.execute(
        """
        CREATE TABLE reports (
            report_id TEXT PRIMARY KEY,
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'sent', 'delivered', 'rejected')),
            priority INTEGER NOT NULL,
            category TEXT NOT NULL,
            origin TEXT NOT NULL,
            mesh_packet_id INTEGER,
            body TEXT NOT NULL,
            copies INTEGER NOT NULL DEFAULT 1,
            stored_ts REAL NOT NULL,
            boot_id TEXT NOT NULL,
            boot_stored REAL NOT NULL,
            -- unused since claims became leases in memory: neither read nor written, kept so that files
            -- of every version share one schema (SQLite cannot drop a column of an old file cheaply)
            claim_token TEXT,
            claim_boot REAL,
            sent_ts REAL,
            sent_boot REAL,
            delivered_ts REAL,
            rejected_ts REAL,
            reject_reason TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            receipt_post TEXT,
            receipt_center TEXT
        )
        """
    )
    db.execute("CREATE INDEX reports_drain ON reports (state, priority, stored_ts)")
    db.execute("CREATE INDEX reports_mesh ON reports (origin, mesh_packet_id)")
    db.execute(
        """
        CREATE TABLE meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )
        """
    )


@migrations()
def m002_nodes(db: sqlite_utils.Database) -> None:
    # Radios the post has heard (edge/nodes.py): names, and the last position with when it was heard
    # (wall clock, and boot id + CLOCK_BOOTTIME so the age stays exact while the post has not rebooted).
    db.execute(
        """
        CREATE TABLE nodes (
            num INTEGER PRIMARY KEY,
            long_name TEXT,
            short_name TEXT,
            lat REAL,
            lon REAL,
            altitude INTEGER,
            accuracy_m REAL,
            pos_ts REAL,
            pos_boot_id TEXT,
            pos_boot REAL,
            heard_ts REAL
        )
        """
    )


@migrations()
def m003_relay(db: sqlite_utils.Database) -> None:
    # Custody relay (docs/RELAY.md, "Custody protocol, version 1"); additive only, so a store written by an
    # older version opens and drains as before.  A carried report is a row of ``reports`` like any other
    # (its report_id primary key is the exact seen-set) with the packet as received and where it came from;
    # relay_next_node is its next hop once custody passed (the tombstone the center ack walks back along).
    for column in (
        "relay_packet BLOB",
        "relay_prev_node INTEGER",
        "relay_prev_post TEXT",
        "relay_hops INTEGER",
        "relay_parked INTEGER NOT NULL DEFAULT 0",
        "relay_next_node INTEGER",
        "relay_xmit INTEGER",
        "relay_xmit_node INTEGER",
    ):
        db.execute(f"ALTER TABLE reports ADD COLUMN {column}")
    # every transfer id this post sent, and what it carried (a CACK names ids, possibly late)
    db.execute(
        """
        CREATE TABLE relay_xmit (
            xmit INTEGER PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('report', 'center_ack')),
            node INTEGER NOT NULL,
            report_id TEXT,
            sent_ts REAL NOT NULL
        )
        """
    )
    # center acks this post owes the previous hops of reports it carried; deleted once CACKed
    db.execute(
        """
        CREATE TABLE relay_owed (
            report_id TEXT NOT NULL,
            prev_node INTEGER NOT NULL,
            origin TEXT NOT NULL,
            committed_ts REAL NOT NULL,
            xmit INTEGER,
            PRIMARY KEY (report_id, prev_node)
        )
        """
    )


@migrations()
def m004_console(db: sqlite_utils.Database) -> None:
    # The operator console (edge/console/); additive only, so a store of an older version opens as before.
    # center_ts: when the center committed the report, by the center's clock (the post's may be years off).
    db.execute("ALTER TABLE reports ADD COLUMN center_ts REAL")
    # staff replies from 112 (the uplink's cmd), kept for the console whether or not a radio carried them
    db.execute(
        """
        CREATE TABLE messages (
            cmd_id TEXT PRIMARY KEY,
            report_id TEXT,
            to_node TEXT,
            text TEXT NOT NULL,
            received_ts REAL NOT NULL,
            read_ts REAL,
            read_by TEXT
        )
        """
    )
    # operator accounts of the console (`siaga console passwd`): scrypt hashes, siaga/passwords.py
    db.execute(
        """
        CREATE TABLE operators (
            name TEXT PRIMARY KEY,
            password_hash TEXT NOT NULL,
            created_ts REAL NOT NULL,
            changed_ts REAL NOT NULL
        )
        """
    )


@migrations()
def m005_relay_replies(db: sqlite_utils.Database) -> None:
    # Staff replies walking back over the mesh to the origin post of a report that reached the center only
    # carried (docs/RELAY.md, "Staff replies over the mesh"); additive only.  One row per cmd_id at every
    # post the reply passes (the primary key is its seen-set): 'pending' to send to next_node (the report's
    # previous hop) under transfer id xmit, 'passed' once that neighbour CACKed, 'failed' when this post
    # does not hold the report (no way back); at the origin 'arrived' until handed to the radio, 'handed'.
    db.execute(
        """
        CREATE TABLE relay_replies (
            cmd_id TEXT PRIMARY KEY,
            origin TEXT NOT NULL,
            report_id TEXT NOT NULL,
            text TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('pending', 'passed', 'failed', 'arrived', 'handed')),
            next_node INTEGER,
            xmit INTEGER,
            received_ts REAL NOT NULL
        )
        """
    )
