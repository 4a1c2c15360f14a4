"""The events URL of a JetStream feed: the cluster's servers, the stream and its replicas.

`nats://a:4222,b:4222,c:4222?stream=NAME&replicas=3` names three servers of one cluster: the
client connects to any of them and, when that one goes away, to another. Each server may also
be written in full (`nats://a:4222,nats://b:4222`), and `tls://` asks for TLS.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from ..errors import ConfigurationError

DEFAULT_STREAM = "PROJECTIONIST_EVENTS"
DEFAULT_PORT = 4222
MAX_REPLICAS = 5  # JetStream's own limit


@dataclass(frozen=True, slots=True)
class JetStreamAddress:
    """Where a JetStream feed lives, parsed from its events URL."""

    servers: tuple[str, ...]
    """Each server's URL, credentials included, as the NATS client takes them."""
    shown: str
    """The servers without credentials, for messages."""
    stream: str
    replicas: int
    """Copies of the stream the cluster keeps, when the relay creates it."""
    user: str | None = None
    """The servers' user (or token, without a password), for every server of the cluster:
    also those the client learns of from the cluster, which come without credentials."""
    password: str | None = None


def parse(url: str) -> JetStreamAddress:
    """The servers, stream and replicas of a nats:// or tls:// URL; ConfigurationError with
    the part at fault otherwise."""
    head, _, query = url.partition("?")
    scheme = head.partition("://")[0]
    if scheme not in ("nats", "tls"):
        raise ConfigurationError(f"an events URL starts with nats:// or tls://, not {url!r}")
    servers: list[str] = []
    shown: list[str] = []
    credentials: set[tuple[str, str | None]] = set()
    for piece in head.split(","):
        piece = piece.strip()
        parts = urlsplit(piece if "://" in piece else f"{scheme}://{piece}")
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            port = -1
        if parts.scheme not in ("nats", "tls") or not parts.hostname or port < 0:
            raise ConfigurationError(
                f"the server {piece!r} of the events URL {url!r} is not host:port (servers are"
                " separated by commas: nats://a:4222,b:4222)"
            )
        servers.append(urlunsplit((parts.scheme, parts.netloc, "", "", "")))
        if parts.username is not None:
            credentials.add((unquote(parts.username), _unquoted(parts.password)))
        shown.append(f"{parts.hostname}:{port}")
    if len(credentials) > 1:
        raise ConfigurationError(
            f"the servers of the events URL {scheme}://{','.join(shown)} give different"
            " credentials: the"
            " servers of one cluster take the same user and password"
        )
    user, password = next(iter(credentials), (None, None))
    options = parse_qs(query)
    stream = options.get("stream", [DEFAULT_STREAM])[0]
    if not stream or not all(c.isalnum() or c in "_-" for c in stream):
        raise ConfigurationError(
            f"the stream name {stream!r} may hold letters, digits, _ and - only"
        )
    replicas_text = options.get("replicas", ["1"])[0]
    if not replicas_text.isdigit() or not 1 <= int(replicas_text) <= MAX_REPLICAS:
        raise ConfigurationError(
            f"replicas={replicas_text!r} in the events URL {url!r}: a stream keeps 1 to"
            f" {MAX_REPLICAS} copies"
        )
    return JetStreamAddress(
        servers=tuple(servers),
        shown=f"{scheme}://{','.join(shown)}",
        stream=stream,
        replicas=int(replicas_text),
        user=user,
        password=password,
    )


def _unquoted(text: str | None) -> str | None:
    return None if text is None else unquote(text)
