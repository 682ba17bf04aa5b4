"""Staff accounts, sessions, CSRF tokens and login rate limiting for the center dashboard.

* Passwords: ``hashlib.scrypt`` (N=2^14, r=8, p=1) with a 16-byte random salt per user, stored as
  ``scrypt$N$r$p$salt$hash`` (base64) so the cost can be raised later without breaking old hashes.
* Sessions are server-side rows: the browser holds a random 256-bit token in an HttpOnly, SameSite=Strict
  cookie; the database keeps only its SHA-256, so a leaked database gives no usable session.  Logging out
  or disabling an account ends the session at once.
* CSRF: each session has its own random token, rendered into every form and sent by fetch() as a header;
  every state-changing request must carry it (compared in constant time).
* Rate limiting: failed logins are counted per account and per client address in a sliding window, in the
  database (shared by every center process on it); past the limit the login is refused without even
  checking the password.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from center.staffdb import StaffDB
from siaga.errors import CenterError
from siaga.passwords import DUMMY_HASH, hash_password, verify_password

log = logging.getLogger(__name__)

ROLES = ("petugas", "supervisor", "pengamat")
#: Roles that may change anything (triage, replies); ``pengamat`` (observer) only reads.
WRITE_ROLES = frozenset({"petugas", "supervisor"})
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024

SESSION_TTL_S = 12 * 3600
# A session unused this long ends even before its TTL (a forgotten logged-in screen at a shift change).
IDLE_TTL_S = 2 * 3600


class AuthError(CenterError):
    """Login refused or an account operation is invalid; the message is safe to show."""


class RateLimited(AuthError):
    def __init__(self, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(f"terlalu banyak percobaan masuk; coba lagi dalam {retry_after_s} detik")


# -------------------------------------------------------------------------------- password policy
# (hashing is siaga/passwords.py: the post's operator console hashes the same way)
def check_password_policy(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"kata sandi minimal {MIN_PASSWORD} karakter")
    if len(password) > MAX_PASSWORD:
        raise AuthError("kata sandi terlalu panjang")


# -------------------------------------------------------------------------------- rate limiting
class LoginLimiter:
    """Sliding-window failure counter per key (account name, client address), in the center database
    (``login_failures``): every center process behind one database shares the count, so that a guesser
    spreading attempts over several processes (or a restart) gains nothing."""

    def __init__(
        self, db: StaffDB, max_failures: int = 5, window_s: float = 300.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock  # wall clock: shared by processes (a monotonic clock is not)

    def check(self, *keys: str) -> None:
        since = self._clock() - self.window_s
        for key in keys:
            row = self.db.one(
                "SELECT count(*) AS n, min(at_ts) AS first FROM login_failures WHERE key = ? AND at_ts > ?",
                (key, since),
            )
            if row and int(row["n"]) >= self.max_failures:
                raise RateLimited(max(1, int(float(row["first"]) + self.window_s - self._clock())))

    def failed(self, *keys: str) -> None:
        now = self._clock()
        with self.db.atomic():
            for key in keys:
                self.db.execute("INSERT INTO login_failures (key, at_ts) VALUES (?, ?)", (key[:200], now))
            # what has left every window goes at once: an address sweep cannot grow the table without bound
            self.db.execute("DELETE FROM login_failures WHERE at_ts <= ?", (now - self.window_s,))

    def succeeded(self, *keys: str) -> None:
        with self.db.atomic():
            for key in keys:
                self.db.execute("DELETE FROM login_failures WHERE key = ?", (key[:200],))


# -------------------------------------------------------------------------------- accounts + sessions
@dataclass(frozen=True, slots=True)
class Session:
    username: str
    role: str
    csrf: str
    token_hash: str

    @property
    def can_write(self) -> bool:
        return self.role in WRITE_ROLES


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


class Auth:
    def __init__(self, db: StaffDB, *, limiter: LoginLimiter | None = None) -> None:
        self.db = db
        self.limiter = limiter or LoginLimiter(db)

    # accounts
    def add_user(self, username: str, password: str, role: str = "petugas") -> None:
        if not USERNAME_RE.match(username):
            raise AuthError("nama pengguna: 2-32 karakter a-z 0-9 . _ - (huruf kecil)")
        if role not in ROLES:
            raise AuthError(f"peran harus salah satu dari {', '.join(ROLES)}")
        check_password_policy(password)
        with self.db.atomic():
            if self.db.one("SELECT username FROM staff_users WHERE username = ?", (username,)):
                raise AuthError(f"pengguna {username} sudah ada")
            self.db.execute(
                "INSERT INTO staff_users (username, password_hash, role, created_ts) VALUES (?, ?, ?, ?)",
                (username, hash_password(password), role, time.time()),
            )
            self._audit(username, "user.add", {"role": role})
        log.info("staff account %s added (role %s)", username, role)

    def set_password(self, username: str, password: str) -> None:
        check_password_policy(password)
        with self.db.atomic():
            changed = self.db.execute(
                "UPDATE staff_users SET password_hash = ? WHERE username = ?",
                (hash_password(password), username),
            )
            if not changed:
                raise AuthError(f"pengguna {username} tidak ada")
            # a new password ends every session of the old one
            self.db.execute("DELETE FROM staff_sessions WHERE username = ?", (username,))
            self._audit(username, "user.password", {})

    def users(self) -> list[dict[str, object]]:
        return self.db.query("SELECT username, role, created_ts, disabled FROM staff_users ORDER BY username")

    # login / logout
    def login(self, username: str, password: str, client: str) -> tuple[str, Session]:
        """Return (cookie token, session).  Raises :class:`RateLimited` or :class:`AuthError`."""
        username = username.strip().lower()[:64]
        keys = (f"user:{username}", f"addr:{client}")
        self.limiter.check(*keys)
        row = self.db.one(
            "SELECT username, password_hash, role, disabled FROM staff_users WHERE username = ?", (username,)
        )
        ok = verify_password(password[:MAX_PASSWORD], row["password_hash"] if row else DUMMY_HASH)
        if not row or not ok or row["disabled"]:
            self.limiter.failed(*keys)
            log.warning("failed staff login for %r from %s", username[:32], client)
            raise AuthError("nama pengguna atau kata sandi salah")
        self.limiter.succeeded(*keys)
        token = secrets.token_urlsafe(32)
        now = time.time()
        session = Session(row["username"], row["role"], secrets.token_urlsafe(32), _token_hash(token))
        with self.db.atomic():
            # expired sessions of anyone are swept at each login: no cron needed
            self.db.execute("DELETE FROM staff_sessions WHERE expires_ts < ?", (now,))
            self.db.execute(
                "INSERT INTO staff_sessions (token_hash, username, csrf, created_ts, expires_ts,"
                " last_seen_ts)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (session.token_hash, session.username, session.csrf, now, now + SESSION_TTL_S, now),
            )
            self._audit(session.username, "login", {"client": client})
        return token, session

    def session(self, token: str | None) -> Session | None:
        if not token or len(token) > 128:
            return None
        row = self.db.one(
            "SELECT s.token_hash, s.username, s.csrf, s.expires_ts, s.last_seen_ts, u.role, u.disabled"
            " FROM staff_sessions s JOIN staff_users u ON u.username = s.username WHERE s.token_hash = ?",
            (_token_hash(token),),
        )
        if row is None or row["disabled"]:
            return None
        now = time.time()
        if row["expires_ts"] < now or row["last_seen_ts"] + IDLE_TTL_S < now:
            self.db.execute("DELETE FROM staff_sessions WHERE token_hash = ?", (row["token_hash"],))
            return None
        if row["last_seen_ts"] + 60 < now:
            # touch at most once a minute: SSE and polling must not write on every request
            self.db.execute("UPDATE staff_sessions SET last_seen_ts = ? WHERE token_hash = ?", (now, row["token_hash"]))
        return Session(row["username"], row["role"], row["csrf"], row["token_hash"])

    def logout(self, session: Session) -> None:
        with self.db.atomic():
            self.db.execute("DELETE FROM staff_sessions WHERE token_hash = ?", (session.token_hash,))
            self._audit(session.username, "logout", {})

    @staticmethod
    def csrf_ok(session: Session, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(session.csrf.encode(), (presented or "").encode())

    def _audit(self, username: str, action: str, detail: dict[str, object]) -> None:
        self.db.execute(
            "INSERT INTO audit (at_ts, username, action, report_id, detail) VALUES (?, ?, ?, NULL, ?)",
            (time.time(), username, action, json.dumps(detail, ensure_ascii=False)),
        )


def read_password_file(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AuthError(f"berkas kata sandi {path} tidak dapat dibaca: {exc.strerror}") from None
    return text.rstrip("\r\n")
