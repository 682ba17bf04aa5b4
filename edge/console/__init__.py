"""The post's operator console: an offline web page served by ``siaga run`` when ``[console] http`` is set.

For the officer on duty with a phone (mobile-first, Bahasa Indonesia): a new report heard by voice radio or
in person (the classifier's suggestion as it is typed), the post's queue (menunggu / terkirim / diterima 112
at the center's time), the post's status (the same facts as ``siaga status``: edge/status.py), and the
replies from 112, marked read.

Modules: ``server`` (:class:`ConsoleServer`, what edge/daemon.py starts; it imports the web stack only when
the console is on, so a post without it pays nothing), ``accounts`` (operator accounts in the post store,
sessions in memory, CSRF, login limiter), ``app`` (the Starlette app: routes, the session middleware, the
handlers), ``templates/`` and ``static/`` (everything the page needs, served by the post itself).
"""

from edge.console.server import ConsoleServer

__all__ = ["ConsoleServer"]
