"""Who may reach a page dreamvid serves: one rule for every front end (``dreamvid ui``, ``dreamvid live``).

**A page others can reach has a login.** A ``--host`` that is not a loopback address (and, for the UI, ``--share``'s
public link) needs ``--auth USER:PASS`` (or ``$DREAMVID_UI_AUTH``, which keeps the password out of the process
list). The UI hands the login to gradio; the live page checks it on every request (HTTP Basic). Pure: no gradio,
nothing started; each refusal is one line (:class:`~dreamvid.errors.ConfigError`).
"""

from __future__ import annotations

import ipaddress
import socket

from .errors import ConfigError

__all__ = ["AUTH_ENV", "check_access", "is_loopback"]

#: The environment variable ``--auth`` is read from when it is not given (``dreamvid ui`` and ``dreamvid live``).
AUTH_ENV = "DREAMVID_UI_AUTH"


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback address (this machine only)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


def check_access(*, host: str, share: bool = False, auth: str | None) -> tuple[str, str] | None:
    """The login ``(user, password)`` from ``--auth USER:PASS``, or None; :class:`ConfigError` if it is malformed,
    or missing where the page is open to others (``share``, or a ``host`` that is not a loopback address)."""
    login = None
    if auth is not None:
        user, sep, password = auth.partition(":")
        if not (sep and user.strip() and password):
            raise ConfigError("--auth takes USER:PASS, a user name and a password separated by ':'")
        login = (user.strip(), password)
    if login is None and (share or not is_loopback(host)):
        why = "--share makes a public link" if share else f"--host {host} opens the page to the network"
        raise ConfigError(f"{why}: give the page a login with --auth USER:PASS (or ${AUTH_ENV})")
    return login
