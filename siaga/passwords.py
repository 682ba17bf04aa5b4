"""Password hashing and the login failure limiter: what the center's staff accounts and the post's operator
console share (each keeps its own accounts, sessions and wording).

* Hashes: ``hashlib.scrypt`` (N=2^14, r=8, p=1) with a 16-byte random salt, stored as
  ``scrypt$N$r$p$salt$hash`` (base64) so the cost can be raised later without breaking old hashes.
* :class:`LoginLimiter`: failed logins counted per key (account name, client address) in a sliding window;
  past the limit a login is refused without even checking the password (scrypt costs CPU: on a Pi a
  guesser must not be able to keep a core busy).
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def hash_password(password: str, *, n: int = SCRYPT_N) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(digest_b64)
        digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


#: Verified against when the account does not exist, so a wrong name costs as long as a wrong password.
DUMMY_HASH = hash_password(secrets.token_hex(16))


class LoginLimiter:
    """Sliding-window failure counter per key.  In process memory: a restart forgets, which still bounds
    guessing to ``max_failures`` per window per key."""

    def __init__(
        self, max_failures: int = 5, window_s: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def _now(self) -> float:
        return float(self._clock())

    def retry_after(self, *keys: str) -> int | None:
        """Seconds until a login may be tried again for these keys; None when it may be tried now."""
        now = self._now()
        with self._lock:
            for key in keys:
                window = self._failures.get(key)
                if not window:
                    continue
                while window and window[0] <= now - self.window_s:
                    window.popleft()
                if len(window) >= self.max_failures:
                    return max(1, int(window[0] + self.window_s - now))
        return None

    def failed(self, *keys: str) -> None:
        now = self._now()
        with self._lock:
            for key in keys:
                self._failures.setdefault(key, collections.deque()).append(now)
            if len(self._failures) > 10_000:
                # an address sweep must not grow memory without bound: drop the stalest keys
                for key in sorted(self._failures, key=lambda k: self._failures[k][-1] if self._failures[k] else 0)[
                    :5000
                ]:
                    del self._failures[key]

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)
