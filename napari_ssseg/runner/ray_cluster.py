"""Connecting to a Ray cluster, or starting a small private one on this machine.

Ray is imported only here and only when a connection is asked for, so the command line and
the plugin start without it. Usage statistics are switched off before Ray is imported, and
a local cluster starts without the dashboard and with a small object store.

On a machine whose network must not be used, Ray belongs in a network namespace whose only
interface is loopback (``unshare -n``; see ``docs/cluster.md``): Ray's processes otherwise
talk over the machine's own address even when told to use 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from napari_ssseg.errors import SsSegError

LOCAL_OBJECT_STORE_BYTES = 200 * 1024 * 1024
"""Object store of a local cluster: a job ships its volumes once, a few MB to a few 100 MB."""

INSTALL_HINT = "install it with: pip install 'napari-ssseg[cluster]'"

AUTH_MODE_VARIABLE = "RAY_AUTH_MODE"
TOKEN_HINT = (
    f" (if the cluster uses token authentication, Ray's default, set {AUTH_MODE_VARIABLE}=token "
    "here; see docs/cluster.md)"
)
"""Ray turns token authentication on by itself only for a cluster it finds without an
address: to a given address (``host:port`` or ``ray://``) it sends the token only with
``RAY_AUTH_MODE=token``, and without it fails after retrying, saying nothing of tokens."""

REACH_TIMEOUT_S = 5.0
"""How long to try a TCP connection to a given cluster address before giving up: ``ray.init``
itself keeps retrying an address nobody listens on for minutes."""


CLIENT_INIT_ATTEMPTS = 3
"""Ray Client starts a server process on the head for each client; on a loaded head that
start can fail ("Initialization failure from server"), and a new connection usually works."""
CLIENT_INIT_BACKOFF_S = 5.0
CLIENT_INIT_TIMEOUT_S = 120.0
"""How long one Ray Client ``ray.init`` may wait for the head's answer before its connection
is closed and a new one tried: when the server the head starts for a client dies as it
starts, the client can otherwise wait for ever (seen with Ray 2.60 on a loaded machine)."""
CLIENT_CLOSE_TIMEOUT_S = 30.0
"""How long closing a connection that got no answer may take before giving up on it."""
CLIENT_MARK_WAIT_S = 1.0
"""How long Ray's disconnect gets to mark the connection as shutting down before its channel
is closed (closed earlier, Ray would take the broken stream for a reason to reconnect)."""


class ClusterError(SsSegError):
    """Ray is missing or the cluster cannot be reached."""


@dataclass(frozen=True)
class ClusterSettings:
    """Where to run.

    Attributes:
        address: a Ray cluster address (``ray://host:10001``, ``host:6379`` or ``auto``), or
            None to start a private local cluster with ``local_cpus`` CPUs.
        local_cpus: CPUs of a private local cluster.
    """

    address: str | None = None
    local_cpus: int = 2


def import_ray() -> ModuleType:
    """Ray, imported with usage statistics off; a clear error when it is not installed."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise ClusterError(f"the Ray back-end needs Ray; {INSTALL_HINT}") from None
    return ray


def connect(settings: ClusterSettings) -> bool:
    """Connect this process to the cluster unless it already is; returns whether a new
    private local cluster was started here (then :func:`disconnect` should end it)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    options: dict = {"logging_level": "warning", "log_to_driver": False}
    try:
        if settings.address is None:
            ray.init(
                num_cpus=max(1, settings.local_cpus),
                include_dashboard=False,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                **options,
            )
            return True
        if settings.address.startswith("ray://"):
            # No probe here: the Ray Client server fails the next client after a bare TCP
            # connection, and it answers an unreachable address within seconds by itself.
            with_client_retries(
                lambda: ray.init(address=settings.address), close=close_client_connection
            )
        else:
            check_reachable(settings.address)
            ray.init(address=settings.address, **options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = settings.address or "a local cluster"
        first = connection_error_line(str(error)) or type(error).__name__
        hint = ""
        if settings.address is not None and AUTH_MODE_VARIABLE not in os.environ:
            hint = TOKEN_HINT
        raise ClusterError(f"cannot reach the Ray cluster at {where}: {first}{hint}") from None
    return False


def with_client_retries(
    init: Callable[[], object],
    close: Callable[[], object],
    attempts: int = CLIENT_INIT_ATTEMPTS,
    backoff_s: float = CLIENT_INIT_BACKOFF_S,
    timeout_s: float = CLIENT_INIT_TIMEOUT_S,
) -> None:
    """Call ``init`` (a Ray Client ``ray.init``) again, after a pause that doubles each time,
    when the head failed to start the server for this client or gave no answer within
    ``timeout_s`` (then ``close`` ends the waiting connection first); other errors at once."""
    for attempt in range(attempts):
        try:
            call_within(init, close, timeout_s)
            return
        except ConnectionAbortedError as error:
            if "Initialization failure from server" not in str(error) or attempt == attempts - 1:
                raise
        except ClientInitTimeout:
            if attempt == attempts - 1:
                raise
        time.sleep(backoff_s * 2**attempt)


class ClientInitTimeout(ConnectionError):
    """A Ray Client ``ray.init`` got no answer from the head in time."""


def call_within(init: Callable[[], object], close: Callable[[], object], timeout_s: float) -> None:
    """Run ``init`` in a thread and wait for it at most ``timeout_s``; past that, ``close`` the
    connection it waits on (which makes it return) and raise :class:`ClientInitTimeout`, or
    :class:`ClusterError` when even the close does not end it."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            init()
        except BaseException as error:  # handed to the caller's thread
            failure.append(error)

    thread = threading.Thread(target=run, name="ray-client-init", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not thread.is_alive():
        if failure:
            raise failure[0]
        return
    closing = threading.Thread(target=close, name="ray-client-close", daemon=True)
    closing.start()
    thread.join(CLIENT_CLOSE_TIMEOUT_S)
    if thread.is_alive():
        raise ClusterError(
            f"the Ray cluster gave no answer within {timeout_s:g} s and the connection "
            "could not be closed (see ray_client_server*.err in the head's session logs)"
        )
    raise ClientInitTimeout(f"no answer from the Ray Client server within {timeout_s:g} s")


def close_client_connection() -> None:
    """Close the Ray Client connection being set up: a ``ray.init`` waiting on it returns
    with an error (``ray.shutdown`` reaches only a connection already set up).

    Ray's own disconnect marks the connection as shutting down at once, then waits for its
    data stream, which ends only when the server answers; closing the channel ends it now.
    """
    from ray.util.client import ray as client

    context = client.get_context()
    worker = context.client_worker
    if worker is None:
        return
    disconnecting = threading.Thread(target=context.disconnect, name="ray-client-disconnect")
    disconnecting.daemon = True
    disconnecting.start()
    disconnecting.join(CLIENT_MARK_WAIT_S)  # marked as shutting down: no reconnect follows
    channel = worker.channel
    if channel is not None:
        channel.close()
    disconnecting.join(CLIENT_CLOSE_TIMEOUT_S)


def connection_error_line(text: str) -> str:
    """One line for a failed ``ray.init``: the message's first line, followed, when it ends in
    a colon (Ray Client's "Initialization failure from server:"), by what comes next; when
    that is a traceback the server sent back, by its last line, the exception itself."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    first = lines[0]
    if first.endswith(":") and len(lines) > 1:
        rest = lines[1:]
        detail = rest[-1] if rest[0].startswith("Traceback") else rest[0]
        first = f"{first} {detail}"
    return first


def check_reachable(address: str, timeout: float = REACH_TIMEOUT_S) -> None:
    """Raise :class:`ClusterError` unless something accepts TCP connections at ``address``
    (``ray://host:port`` or ``host:port``; ``auto`` and other forms are left to Ray)."""
    target = address.removeprefix("ray://")
    host, colon, port = target.rpartition(":")
    if not colon or not port.isdigit() or not host:
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ClusterError(
            f"cannot reach the Ray cluster at {address}: {reason} (is the head node running, "
            "and is this its address and port?)"
        ) from None


def disconnect() -> None:
    """Leave the cluster (and end it when it was a private local one)."""
    ray = import_ray()
    if ray.is_initialized():
        ray.shutdown()


def first_line(error: BaseException) -> str:
    """One readable line for an error that came back from Ray (its cause when it has one)."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        error = cause
    text = str(error).strip()
    line = text.splitlines()[0] if text else ""
    if isinstance(error, SsSegError) and line:
        return line  # already says what is wrong, in the user's terms
    name = type(error).__name__
    return f"{name}: {line}" if line else name
