"""The only module that imports paho-mqtt: one MQTT v5 connection to one broker, paho codes → SyncError.

:class:`MqttLink` is deliberately small: open (TCP/TLS + CONNECT, waits for CONNACK), subscribe (waits for
SUBACK, or hears it later through a callback), publish, ack, close.  It does not reconnect by itself: its
owner (the post's uplink, the center's receiver) decides when and to which broker URL, and opens a fresh
link each time.  Callbacks arrive on
paho's network thread through :class:`LinkHandler`; handlers must be quick (queue work, do not block).

Security: TLS verifies the broker's certificate and host name against ``ca_file`` (or the system CAs);
a client certificate is optional; the password comes from ``$SIAGA_MQTT_PASSWORD`` or ``password_file``
and is never logged.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from siaga.config import TlsMqttConfig, read_secret
from siaga.errors import ConfigError, SyncError

log = logging.getLogger(__name__)

PASSWORD_ENV = "SIAGA_MQTT_PASSWORD"
_DEFAULT_PORTS = {"mqtt": 1883, "tcp": 1883, "mqtts": 8883, "ssl": 8883, "ws": 80, "wss": 443}


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    url: str
    host: str
    port: int
    tls: bool
    websockets: bool
    path: str

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ConfigError("mqtt.url", url, "must be a URL like mqtts://host:8883")
        return cls(
            url=url,
            host=parts.hostname,
            port=parts.port or _DEFAULT_PORTS[scheme],
            tls=scheme in ("mqtts", "ssl", "wss"),
            websockets=scheme in ("ws", "wss"),
            path=parts.path or "/mqtt",
        )


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int


class LinkHandler(Protocol):
    def on_message(self, link: MqttLink, message: Message) -> None: ...

    def on_published(self, link: MqttLink, mid: int, ok: bool, reason: str) -> None: ...

    def on_disconnected(self, link: MqttLink, reason: str) -> None: ...


# What a link reports, as values: the uplink and the receiver queue them from paho's thread to their own
# (each names the link it came from, so an event of a link already replaced is recognised and ignored).
@dataclass(frozen=True, slots=True)
class LinkMessage:
    """A message arrived (not yet PUBACKed: the owner acks it once handled)."""

    link: MqttLink
    message: Message


@dataclass(frozen=True, slots=True)
class LinkPublished:
    """The broker answered a QoS 1 publish: ``ok`` False with paho's reason when it refused it."""

    link: MqttLink
    mid: int
    ok: bool
    reason: str


@dataclass(frozen=True, slots=True)
class LinkSubscribed:
    """The SUBACK of :meth:`MqttLink.subscribe_async`: the topics the broker refused (empty: all granted)."""

    link: MqttLink
    refused: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LinkDown:
    """The connection was lost."""

    link: MqttLink
    reason: str


class MqttLink:
    """One MQTT v5 connection with a persistent session (clean_start False, session expiry)."""

    def __init__(
        self,
        settings: TlsMqttConfig,
        broker: BrokerAddress,
        *,
        client_id: str,
        handler: LinkHandler,
        section: str = "mqtt",
        will: Will | None = None,
        session_expiry_s: int = 7 * 86400,
        manual_ack: bool = False,
        max_inflight: int = 20,
    ) -> None:
        self.broker = broker
        self.client_id = client_id
        self._settings = settings
        self._handler = handler
        self._section = section
        self._session_expiry_s = session_expiry_s
        self._connected = threading.Event()
        self._connack: threading.Event = threading.Event()
        self._connack_error: str | None = None
        self._lost_before_connack: str | None = None
        self._session_present = False
        self._suback: dict[int, list[ReasonCode]] = {}
        self._suback_waiters: dict[int, tuple[list[str], Callable[[list[str]], None]]] = {}
        self._suback_cv = threading.Condition()
        self._closed = False
        self._down_reported = False
        self._lock = threading.Lock()
        client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5,
            transport="websockets" if broker.websockets else "tcp",
            # reconnecting is our owner's decision (broker URL order, backoff, route changes)
            reconnect_on_failure=False,
            manual_ack=manual_ack,
        )
        client.max_inflight_messages_set(max(1, max_inflight))
        client.max_queued_messages_set(0)
        if broker.websockets:
            client.ws_set_options(path=broker.path)
        if settings.username:
            password = read_secret(settings.password_file, PASSWORD_ENV)
            client.username_pw_set(settings.username, password)
        if broker.tls:
            client.tls_set_context(self._tls_context())
        if will is not None:
            client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        self._client = client

    def _tls_context(self) -> ssl.SSLContext:
        s = self._settings
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(s.ca_file) if s.ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{self._section}.ca_file", str(s.ca_file), f"cannot be loaded: {exc}") from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
        if s.cert_file is not None:
            try:
                context.load_cert_chain(str(s.cert_file), str(s.key_file) if s.key_file else None)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"{self._section}.cert_file", str(s.cert_file), f"cannot be loaded with key_file: {exc}"
                ) from None
        return context

    # ------------------------------------------------------------------ lifecycle
    def open(self, timeout: float = 10.0) -> bool:
        """Connect and wait for CONNACK.  Returns whether the broker kept our session.

        Raises :class:`SyncError` naming the broker and the reason (refused, TLS, credentials...).
        """
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self._session_expiry_s
        self._client.connect_timeout = timeout
        try:
            rc = self._client.connect(
                self.broker.host,
                self.broker.port,
                keepalive=self._settings.keepalive_s,
                clean_start=False,
                properties=props,
            )
        except ssl.SSLCertVerificationError as exc:
            _close_sockets_of(exc)
            raise SyncError(f"{self.broker.url}: TLS certificate rejected: {exc.verify_message}") from None
        except ssl.SSLError as exc:
            _close_sockets_of(exc)
            raise SyncError(f"{self.broker.url}: TLS failed: {exc.reason or exc}") from None
        except (OSError, ValueError) as exc:
            _close_sockets_of(exc)
            raise SyncError(f"{self.broker.url}: cannot connect: {_os_reason(exc)}") from None
        _check_rc(rc, f"{self.broker.url}: connect")
        # paho leaves Nagle on: a small PUBACK or ack would wait for the peer's delayed ACK (~40 ms each)
        setsockopt = getattr(self._client.socket(), "setsockopt", None)
        if setsockopt is not None and not self.broker.websockets:
            try:
                setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self._client.loop_start()
        if not self._connack.wait(timeout):
            self.abort()
            raise SyncError(f"{self.broker.url}: no CONNACK within {timeout:g} s")
        if self._lost_before_connack is not None:
            self.abort()
            raise SyncError(f"{self.broker.url}: connection lost before CONNACK: {self._lost_before_connack}")
        if self._connack_error is not None:
            self.abort()
            raise SyncError(f"{self.broker.url}: broker refused the connection: {self._connack_error}")
        return self._session_present

    @property
    def connected(self) -> bool:
        return self._connected.is_set() and not self._closed

    def close(self, *, send_will: bool = False, timeout: float = 2.0) -> None:
        """Disconnect politely (DISCONNECT packet).  ``send_will`` asks the broker to publish our Last Will
        anyway (MQTT v5 reason 0x04), which is how a stopping post says ``offline``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._connected.is_set():
            code = ReasonCode(PacketTypes.DISCONNECT, identifier=0x04 if send_will else 0x00)
            self._client.disconnect(reasoncode=code)
            # a polite goodbye must not hang on a dead path: give the network thread ``timeout`` to finish
            waiter = threading.Thread(target=self._client.loop_stop, daemon=True)
            waiter.start()
            waiter.join(timeout)
            if waiter.is_alive():
                self._shutdown_socket()
                waiter.join()
            self._close_socket()
            return
        self._shutdown_socket()
        self._client.loop_stop()
        self._close_socket()

    def abort(self) -> None:
        """Drop the connection without DISCONNECT (the broker will publish our Last Will)."""
        with self._lock:
            self._closed = True
        self._shutdown_socket()
        self._client.loop_stop()
        self._close_socket()

    def _close_socket(self) -> None:
        # paho's network thread may stop (loop_stop) before it noticed the shut-down socket and closed it
        sock = self._client.socket()
        close = getattr(sock, "close", None)
        if close is not None:
            close()
        # paho wakes its loop through a loopback socket pair that only its __del__ closes; a link in a
        # reference cycle is collected in arbitrary order and the pair leaks (a ResourceWarning, two fds)
        for name in ("_sockpairR", "_sockpairW"):
            pair_end = getattr(self._client, name, None)
            if pair_end is not None:
                pair_end.close()
                setattr(self._client, name, None)

    def _shutdown_socket(self) -> None:
        sock = self._client.socket()
        shutdown = getattr(sock, "shutdown", None)
        if shutdown is not None:
            try:
                shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # ------------------------------------------------------------------ traffic
    def subscribe(self, topics: Sequence[tuple[str, int]], timeout: float = 10.0) -> None:
        """Subscribe and wait for SUBACK; a refused topic (ACL) raises SyncError."""
        try:
            rc, mid = self._client.subscribe(list(topics))
        except ValueError as exc:
            raise SyncError(f"subscribe: {exc}") from None
        _check_rc(rc, "subscribe")
        assert mid is not None
        with self._suback_cv:
            if not self._suback_cv.wait_for(lambda: mid in self._suback or self._closed, timeout):
                raise SyncError(f"{self.broker.url}: no SUBACK within {timeout:g} s")
            codes = self._suback.pop(mid, [])
        refused = [t for (t, _), c in zip(topics, codes, strict=False) if c.is_failure]
        if refused or len(codes) != len(topics):
            raise SyncError(f"{self.broker.url}: subscription refused for {refused or list(topics)}")

    def subscribe_async(
        self,
        topics: Sequence[tuple[str, int]],
        on_suback: Callable[[list[str]], None],
        *,
        retained_only_if_new: Collection[str] = (),
    ) -> int:
        """Send SUBSCRIBE without waiting: ``on_suback(refused_topics)`` is called on paho's thread when the
        SUBACK arrives (an empty list: every topic granted).  Nothing is called when the link dies first —
        the owner hears ``on_disconnected`` instead.

        The broker answers SUBSCRIBE in order with whatever it queued for a resumed session, so on a slow
        link the SUBACK may come after a long backlog: the owner handles messages meanwhile and judges the
        wait by progress, not by a fixed timeout.  Topics in ``retained_only_if_new`` use MQTT v5 retain
        handling 1: the broker sends their retained message only when the subscription did not exist yet —
        which is how an owner learns whether a resumed session really had its subscriptions."""
        entries = [
            (topic, SubscribeOptions(qos=qos, retainHandling=1 if topic in retained_only_if_new else 0))
            for topic, qos in topics
        ]
        names = [topic for topic, _ in topics]
        with self._suback_cv:
            try:
                rc, mid = self._client.subscribe(entries)
            except ValueError as exc:
                raise SyncError(f"subscribe: {exc}") from None
            _check_rc(rc, "subscribe")
            assert mid is not None
            # registered under the lock: paho's thread may read the SUBACK before subscribe() returns here
            self._suback_waiters[mid] = (names, on_suback)
        return int(mid)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> int:
        """Queue a publish; returns its mid (PUBACK arrives as ``on_published``).  Raises SyncError."""
        try:
            info = self._client.publish(topic, payload, qos=qos, retain=retain)
        except ValueError as exc:
            raise SyncError(f"publish: {exc}") from None
        _check_rc(info.rc, "publish")
        return int(info.mid)

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a received message (manual_ack mode): only after it is safely handled."""
        self._client.ack(mid, qos)

    # ------------------------------------------------------------------ paho callbacks (network thread)
    def _on_connect(self, _c: Any, _u: Any, flags: Any, reason: ReasonCode, _p: Any) -> None:
        if reason.is_failure:
            self._connack_error = str(reason)
        else:
            self._session_present = bool(flags.session_present)
            self._connected.set()
        self._connack.set()

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: ReasonCode, _p: Any) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if not self._connack.is_set():
            # reset or closed during the handshake (a link that refuses after accepting, a broker going down):
            # fail open() now rather than after its CONNACK timeout, or a short uplink window is missed
            self._lost_before_connack = str(reason)
            self._connack.set()
        with self._suback_cv:
            self._suback_cv.notify_all()
        if was_connected and not self._down_reported:
            self._down_reported = True
            self._handler.on_disconnected(self, str(reason))

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        self._handler.on_message(
            self, Message(msg.topic, bytes(msg.payload), int(msg.qos), bool(msg.retain), int(msg.mid))
        )

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        self._handler.on_published(self, mid, not reason.is_failure, str(reason))

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, codes: list[ReasonCode], _p: Any) -> None:
        with self._suback_cv:
            waiter = self._suback_waiters.pop(mid, None)
            if waiter is None:
                self._suback[mid] = list(codes)
                self._suback_cv.notify_all()
                return
        names, on_suback = waiter
        refused = [t for t, c in zip(names, codes, strict=False) if c.is_failure]
        if len(codes) != len(names):
            refused = names
        on_suback(refused)


def tcp_reachable(broker: BrokerAddress, timeout: float) -> bool:
    """Whether ``broker`` accepts a TCP connection (closed at once): a cheap look before switching to it."""
    try:
        with socket.create_connection((broker.host, broker.port), timeout=timeout):
            return True
    except OSError:
        return False


def open_first(
    urls: Sequence[str], make: Callable[[BrokerAddress], MqttLink], *, timeout: float = 10.0
) -> tuple[MqttLink, bool]:
    """Try broker URLs in order; return the first link that connects and its session_present flag."""
    errors = []
    for url in urls:
        link = make(BrokerAddress.parse(url))
        try:
            return link, link.open(timeout)
        except SyncError as exc:
            link.abort()
            errors.append(str(exc))
            log.debug("broker %s failed: %s", url, exc)
    raise SyncError("no broker reachable: " + "; ".join(errors))


def _close_sockets_of(exc: BaseException) -> None:
    """Close the socket a failed connect leaves behind.

    paho 2.2 does not close its TLS socket when the handshake fails (it is only referenced from the
    failing frames), so each refused attempt would leak a file descriptor until garbage collection — on a
    post retrying every few seconds for days, that adds up."""
    tb = exc.__traceback__
    while tb is not None:
        for value in list(tb.tb_frame.f_locals.values()):
            if isinstance(value, socket.socket):
                value.close()
        tb = tb.tb_next


def _check_rc(rc: int, action: str) -> None:
    if rc != paho.MQTT_ERR_SUCCESS:
        raise SyncError(f"{action} failed: {paho.error_string(rc)}")


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return f"name resolution failed ({exc.strerror})"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class _OneShot:
    """Handler for :func:`publish_once`: remembers which mids the broker acknowledged."""

    def __init__(self) -> None:
        self.done: dict[int, tuple[bool, str]] = {}
        self.cv = threading.Condition()

    def on_message(self, link: MqttLink, message: Message) -> None:
        pass

    def on_published(self, link: MqttLink, mid: int, ok: bool, reason: str) -> None:
        with self.cv:
            self.done[mid] = (ok, reason)
            self.cv.notify_all()

    def on_disconnected(self, link: MqttLink, reason: str) -> None:
        with self.cv:
            self.cv.notify_all()


def publish_once(
    settings: TlsMqttConfig,
    topic: str,
    payload: bytes,
    *,
    client_id: str,
    section: str = "mqtt",
    retain: bool = False,
    timeout: float = 10.0,
) -> str:
    """Connect (URLs in order), publish one QoS 1 message, wait for its PUBACK, disconnect.

    Returns the broker URL used; raises :class:`SyncError` when no broker took the message.
    """
    handler = _OneShot()

    def make(broker: BrokerAddress) -> MqttLink:
        return MqttLink(settings, broker, client_id=client_id, handler=handler, section=section, session_expiry_s=0)

    link, _ = open_first(settings.broker_urls, make, timeout=timeout)
    try:
        mid = link.publish(topic, payload, qos=1, retain=retain)
        with handler.cv:
            handler.cv.wait_for(lambda: mid in handler.done or not link.connected, timeout)
        ok, reason = handler.done.get(mid, (False, "no PUBACK"))
        if not ok:
            raise SyncError(f"{link.broker.url}: publish to {topic} not accepted: {reason}")
        return link.broker.url
    finally:
        link.close()
