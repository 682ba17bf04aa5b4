"""Operator accounts, sessions, CSRF tokens and the login limiter of the console.

* Accounts live in the post store (``operators``: name + scrypt hash, siaga/passwords.py), set with
  ``siaga console passwd NAME``; a password or a PIN of at least :data:`MIN_SECRET` characters (a phone
  keypad in bad light), which the limiter makes affordable: 5 failures per name or address per 5 minutes.
* Sessions are in memory only: a restart of ``siaga run`` logs the officer out, and no session ever wears
  the SD card.  The browser holds a random 256-bit token in an HttpOnly, SameSite=Strict cookie; this
  process keeps its SHA-256 only.  A session ends after ``[console] idle_timeout_s`` unused, or 12 h.
* CSRF: each session has its own random token, in every form and in the ``X-CSRF-Token`` header of fetch().
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from siaga.errors import ConsoleError
from siaga.passwords import DUMMY_HASH, LoginLimiter, hash_password, verify_password

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")
MIN_SECRET = 6
MAX_SECRET = 256
SESSION_MAX_S = 12 * 3600
MAX_SESSIONS = 64


class RateLimited(ConsoleError):
    def __init__(self, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(f"terlalu banyak percobaan masuk; coba lagi dalam {retry_after_s} detik")


class OperatorStore(Protocol):
    def set_operator(self, name: str, password_hash: str) -> bool: ...

    def operator(self, name: str) -> dict[str, object] | None: ...


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ConsoleError("nama operator: 2-32 karakter a-z 0-9 . _ - (huruf kecil)")
    return name


def check_secret(secret: str) -> str:
    if len(secret) < MIN_SECRET:
        raise ConsoleError(f"kata sandi atau PIN minimal {MIN_SECRET} karakter")
    if len(secret) > MAX_SECRET:
        raise ConsoleError("kata sandi terlalu panjang")
    return secret


def set_password(store: OperatorStore, name: str, secret: str) -> bool:
    """Create the operator or give it a new password/PIN (stored hashed).  True: a new account."""
    return store.set_operator(check_name(name), hash_password(check_secret(secret)))


@dataclass(frozen=True, slots=True)
class Session:
    name: str
    csrf: str
    token_hash: str


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


class Accounts:
    """Logins against the store's operators; the sessions of this process."""

    def __init__(
        self,
        store: OperatorStore,
        *,
        idle_timeout_s: float = 2 * 3600.0,
        limiter: LoginLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.idle_timeout_s = idle_timeout_s
        self.limiter = limiter or LoginLimiter()
        self._clock = clock
        # token hash -> (session, created, last seen)
        self._sessions: dict[str, tuple[Session, float, float]] = {}
        self._lock = threading.Lock()

    def login(self, name: str, secret: str, client: str) -> tuple[str, Session]:
        """Return (cookie token, session).  Raises :class:`RateLimited` or :class:`ConsoleError`."""
        name = name.strip().lower()[:64]
        keys = (f"user:{name}", f"addr:{client}")
        retry = self.limiter.retry_after(*keys)
        if retry is not None:
            raise RateLimited(retry)
        row = self.store.operator(name) if NAME_RE.match(name) else None
        stored = str(row["password_hash"]) if row else DUMMY_HASH
        if not verify_password(secret[:MAX_SECRET], stored) or row is None:
            self.limiter.failed(*keys)
            log.warning("failed console login for %r from %s", name[:32], client)
            raise ConsoleError("nama atau kata sandi/PIN salah")
        self.limiter.succeeded(*keys)
        token = secrets.token_urlsafe(32)
        session = Session(name, secrets.token_urlsafe(32), _token_hash(token))
        now = self._clock()
        with self._lock:
            self._sweep(now)
            if len(self._sessions) >= MAX_SESSIONS:
                oldest = min(self._sessions, key=lambda k: self._sessions[k][2])
                del self._sessions[oldest]
            self._sessions[session.token_hash] = (session, now, now)
        log.info("operator %s logged in to the console from %s", name, client)
        return token, session

    def session(self, token: str | None) -> Session | None:
        if not token or len(token) > 128:
            return None
        key = _token_hash(token)
        now = self._clock()
        with self._lock:
            entry = self._sessions.get(key)
            if entry is None:
                return None
            session, created, seen = entry
            if now - seen > self.idle_timeout_s or now - created > SESSION_MAX_S:
                del self._sessions[key]
                return None
            self._sessions[key] = (session, created, now)
            return session

    def logout(self, session: Session) -> None:
        with self._lock:
            self._sessions.pop(session.token_hash, None)

    def _sweep(self, now: float) -> None:
        for key, (_s, created, seen) in list(self._sessions.items()):
            if now - seen > self.idle_timeout_s or now - created > SESSION_MAX_S:
                del self._sessions[key]

    @staticmethod
    def csrf_ok(session: Session, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(session.csrf.encode(), (presented or "").encode())
