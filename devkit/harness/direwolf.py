"""A real direwolf without a radio, for tests and the bench (../shared/RADIO_TNC.md, verified on direwolf 1.6).

Receive: audio made here (``gen_packets`` for APRS packets, ``sox`` tones for touch-tone keys) is written to
direwolf's stdin (``ADEVICE stdin``), which decodes it and hands the frames to KISS clients over TCP or,
with ``serial=True``, over the pseudo-terminal of ``direwolf -p``.  Transmit: direwolf keys what a client
sends into an ALSA file device (a private ``$HOME/.asoundrc``), and :meth:`Direwolf.transmitted` decodes
that audio with ``atest``, so a test sees the post's acks as a station's radio would.

Traps this avoids: device names over 29 characters (a short ALSA name), ``KISSPORT`` above 49151 (silently
8001: :func:`kiss_port` picks below), direwolf exiting when stdin closes (the pipe stays open until
:meth:`Direwolf.stop`), the ``/tmp/kisstnc`` symlink every ``-p`` instance rewrites (the pty is read from
direwolf's own log instead).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import wave
from pathlib import Path

RATE = 44100
#: One touch-tone key: 0.1 s of the two tones, then 0.1 s of silence (what a handheld's keypad sends).
DTMF_TONES = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "A": (697, 1633),
    "4": (770, 1209), "5": (770, 1336), "6": (770, 1477), "B": (770, 1633),
    "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "C": (852, 1633),
    "*": (941, 1209), "0": (941, 1336), "#": (941, 1477), "D": (941, 1633),
}  # fmt: skip
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
_ATEST_LINE_RE = re.compile(r"^\[\d+\] (\S+>\S+?:.*)$")


def available() -> str | None:
    """None when direwolf, gen_packets, atest and sox are installed, else what is missing."""
    missing = [tool for tool in ("direwolf", "gen_packets", "atest", "sox") if shutil.which(tool) is None]
    return f"{', '.join(missing)} missing (./install.sh --dev installs direwolf and sox)" if missing else None


def kiss_port() -> int:
    """A free TCP port below 49152 (direwolf turns a higher KISSPORT into 8001 without a word)."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 49152)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below 49152")


def packet_audio(tnc2: str) -> bytes:
    """Raw 16-bit mono audio of one packet in TNC2 text (``SRC>DEST,PATH:info``), made by gen_packets."""
    # gen_packets seeks back to finish the WAV header: it needs a file, not a pipe
    with tempfile.TemporaryDirectory(prefix="siaga-genpk-") as tmp:
        wav_path = Path(tmp) / "packet.wav"
        subprocess.run(
            ["gen_packets", "-r", str(RATE), "-o", str(wav_path), "-"],
            input=tnc2.encode("latin-1"),
            capture_output=True,
            check=True,
        )
        with wave.open(str(wav_path)) as wav:
            if wav.getframerate() != RATE or wav.getsampwidth() != 2 or wav.getnchannels() != 1:
                raise RuntimeError("gen_packets made audio of another format")
            return wav.readframes(wav.getnframes())


def dtmf_audio(keys: str) -> bytes:
    """Raw audio of touch-tone keys, each made with sox."""
    out = bytearray()
    for key in keys:
        low, high = DTMF_TONES[key]
        out += subprocess.run(
            ["sox", "-n", "-r", str(RATE), "-b", "16", "-c", "1", "-e", "signed", "-t", "raw", "-",
             "synth", "0.1", "sin", str(low), "sin", str(high), "vol", "0.4"],
            capture_output=True,
            check=True,
        ).stdout  # fmt: skip
        out += silence(0.1)
    return bytes(out)


def silence(seconds: float) -> bytes:
    return b"\x00\x00" * int(RATE * seconds)


class Direwolf:
    """One direwolf process in ``workdir``: KISS on TCP ``port`` (or a pty with ``serial=True``)."""

    def __init__(self, workdir: Path, *, mycall: str = "YB9POS", serial: bool = False, port: int | None = None):
        self.workdir = workdir
        self.mycall = mycall
        self.serial = serial
        self.port = 0 if serial else (port or kiss_port())
        self.proc: subprocess.Popen[bytes] | None = None
        self.pty: str | None = None
        self.tx_raw = workdir / "tx.raw"
        self.log_path = workdir / "direwolf.log"
        self.starts = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> Direwolf:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # ALSA reads $HOME/.asoundrc: a home of our own keeps the file device private to this direwolf
        (self.workdir / ".asoundrc").write_text(
            f'pcm.siagatx {{ type file slave.pcm null file "{self.tx_raw}" format raw }}\n'
        )
        conf = self.workdir / "direwolf.conf"
        conf.write_text(
            "ADEVICE stdin siagatx\nARATE 44100\nCHANNEL 0\n"
            f"MYCALL {self.mycall}\nMODEM 1200\nDTMF\nAGWPORT 0\nKISSPORT {self.port}\n"
        )
        self.starts += 1
        mark = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        args = ["direwolf", "-t", "0", *(["-p"] if self.serial else []), "-c", str(conf), "-"]
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=dict(os.environ, HOME=str(self.workdir)),
            start_new_session=True,
        )
        log.close()
        ready = r"Virtual KISS TNC is available on (/dev/pts/\d+)" if self.serial else r"Ready to accept KISS TCP"
        found = self.wait_log(ready, timeout, since=mark)
        if found is None:
            self.kill()
            raise RuntimeError(f"direwolf did not start: {self.log_tail()}")
        if self.serial:
            self.pty = found.group(1)
        return self

    def log_text(self, since: int = 0) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(since)
                return _ANSI_RE.sub("", f.read().decode("utf-8", errors="replace"))
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = 1500) -> str:
        return self.log_text()[-n:]

    def wait_log(self, pattern: str, timeout: float, since: int = 0) -> re.Match[str] | None:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            found = regex.search(self.log_text(since))
            if found:
                return found
            if self.proc is not None and self.proc.poll() is not None:
                return None
            time.sleep(0.05)
        return None

    def feed(self, audio: bytes) -> None:
        """Audio into direwolf's "soundcard"; a little silence after it lets the decoder finish the frame."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(audio + silence(0.3))
        self.proc.stdin.flush()

    def send_packet(self, tnc2: str) -> None:
        self.feed(packet_audio(tnc2))

    def key_dtmf(self, keys: str) -> None:
        self.feed(dtmf_audio(keys))

    def transmitted(self) -> list[str]:
        """Every packet direwolf has keyed so far, decoded from its audio by atest (TNC2 lines)."""
        if not self.tx_raw.exists() or self.tx_raw.stat().st_size == 0:
            return []
        wav = self.workdir / "tx.wav"
        raw = self.tx_raw.read_bytes()
        raw = raw[: len(raw) // 2 * 2]
        with wave.open(str(wav), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(RATE)
            out.writeframes(raw + silence(0.5))
        result = subprocess.run(["atest", str(wav)], capture_output=True, text=True, errors="replace", check=False)
        lines = []
        for line in _ANSI_RE.sub("", result.stdout).splitlines():
            found = _ATEST_LINE_RE.match(line.strip())
            if found:
                lines.append(found.group(1))
        return lines

    def kill(self) -> None:
        """SIGKILL, the way a crashed TNC goes: no goodbye to its clients."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._close_stdin()

    def stop(self) -> None:
        if self.proc is None:
            return
        self._close_stdin()  # direwolf exits at the end of its input
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.kill()

    def _close_stdin(self) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
