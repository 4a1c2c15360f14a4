"""Bearer tokens, scopes and the principal a request acts as.

Scopes follow docs/http.md: `commands:<Type>`, `commands:*`, `queries:<Type>`, `queries:*` and
`admin`. A command scope never allows a query and the reverse; `admin` covers operations only.
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt

from .errors import ConfigurationError, Unauthenticated

MIN_SECRET_BYTES = 32
ALL_SCOPES = ("admin", "commands:*", "queries:*")
READ_ONLY_SCOPES = ("queries:*",)
PUBLIC_KEY_ALGORITHMS = ("RS256", "ES256")
SECRET_FILE = "projectionist.secret"
"""The file a generated secret is kept in, beside a SQLite store or in the working directory."""
_VERIFIED_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as: the token's subject, scopes and claims.

    `scopes` may be given as any iterable of scope strings; it is kept as a frozenset. A single
    string is refused: read as a set, `"admin"` would be its letters.
    """

    subject: str | None
    scopes: frozenset[str]
    claims: Mapping[str, Any] = field(default_factory=dict)
    token_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "scopes", _scope_set(self.scopes))

    def has(self, scope: str) -> bool:
        return scope in self.scopes

    def may_command(self, type_name: str) -> bool:
        return "commands:*" in self.scopes or f"commands:{type_name}" in self.scopes

    def may_query(self, type_name: str) -> bool:
        return "queries:*" in self.scopes or f"queries:{type_name}" in self.scopes

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes


def _scope_set(scopes: object) -> frozenset[str]:
    """`scopes` as a frozenset of str; TypeError naming the value when it is not one."""
    if isinstance(scopes, str | bytes):
        raise TypeError(
            f"Principal scopes must be a collection of scope strings, not the"
            f" {type(scopes).__name__} {scopes!r:.80}; pass [{scopes!r:.80}] for one scope"
        )
    if not isinstance(scopes, Iterable):
        raise TypeError(
            f"Principal scopes must be an iterable of scope strings, not"
            f" {type(scopes).__name__} {scopes!r:.80}"
        )
    members = list(scopes)
    for member in members:
        if not isinstance(member, str):
            raise TypeError(
                f"Principal scopes must all be str; {member!r:.80} is a {type(member).__name__}"
            )
    return frozenset(members)


SYSTEM = Principal(subject="system", scopes=frozenset(ALL_SCOPES))
"""The principal of in-process calls that pass no token, and of `PROJECTIONIST_AUTH=off`."""


class TokenAuthority:
    """Issues HS256 tokens and verifies tokens signed with any configured key.

    Several secrets can be valid at once (the first one signs), for rotation. Public keys
    (RS256, ES256) verify tokens minted by another issuer. The algorithm is taken from the
    configured keys, never from the token: `alg: none` and algorithm confusion are refused.
    """

    algorithm = "HS256"

    def __init__(
        self,
        secrets_: Sequence[str | bytes] = (),
        *,
        public_keys: Sequence[tuple[str, str | bytes]] = (),
        issuer: str | None = None,
        audience: str | None = None,
        leeway_s: float = 30.0,
    ) -> None:
        if not secrets_ and not public_keys:
            raise ConfigurationError("a token authority needs at least one secret or public key")
        keys = [s.encode() if isinstance(s, str) else s for s in secrets_]
        for key in keys:
            if len(key) < MIN_SECRET_BYTES:
                raise ConfigurationError(
                    f"the token secret is {len(key)} bytes long; HS256 needs at least"
                    f" {MIN_SECRET_BYTES} (RFC 7518 section 3.2)"
                )
        self._keys: dict[str, list[Any]] = {}
        if keys:
            self._keys["HS256"] = list(keys)
        for algorithm, pem in public_keys:
            if algorithm not in PUBLIC_KEY_ALGORITHMS:
                raise ConfigurationError(
                    f"public keys verify {', '.join(PUBLIC_KEY_ALGORITHMS)}, not {algorithm}"
                )
            try:
                key = jwt.algorithms.get_default_algorithms()[algorithm].prepare_key(pem)
            except (ValueError, TypeError, jwt.InvalidKeyError) as error:
                raise ConfigurationError(
                    f"the {algorithm} public key is not usable: {error}"
                ) from None
            self._keys.setdefault(algorithm, []).append(key)
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s
        self._verified: dict[str, tuple[Principal, float]] = {}

    @property
    def can_issue(self) -> bool:
        return "HS256" in self._keys

    def issue(
        self,
        scopes: Iterable[str],
        *,
        subject: str = "user",
        ttl_s: float = 3600.0,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """A signed token with these scopes, valid for `ttl_s` seconds."""
        if not self.can_issue:
            raise ConfigurationError("this authority has no secret to sign tokens with")
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": subject,
            "scope": " ".join(scopes),
            "iat": now,
            "nbf": now,
            "exp": now + int(ttl_s),
            "jti": uuid.uuid4().hex,
        }
        if self.issuer:
            claims["iss"] = self.issuer
        if self.audience:
            claims["aud"] = self.audience
        claims.update(extra or {})
        return jwt.encode(claims, self._keys["HS256"][0], algorithm=self.algorithm)

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; Unauthenticated names why a token is refused.

        A verified token is remembered until it expires, so a client that sends the same
        token with every request pays for the signature check once.
        """
        cached = self._verified.get(token)
        if cached is not None and time.time() < cached[1]:
            return cached[0]
        principal = self._verify(token)
        expires = principal.claims.get("exp")
        if isinstance(expires, int | float):
            if len(self._verified) >= _VERIFIED_LIMIT:
                self._verified.clear()
            self._verified[token] = (principal, float(expires) + self.leeway_s)
        return principal

    def _verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthenticated("the token is not a valid JWT") from None
        algorithm = header.get("alg")
        keys = self._keys.get(algorithm) if isinstance(algorithm, str) else None
        if not keys:
            allowed = ", ".join(sorted(self._keys))
            raise Unauthenticated(
                f"the token's algorithm {str(algorithm)[:20]!r} is not accepted here; use {allowed}"
            )
        assert isinstance(algorithm, str)
        reason = "the token's signature does not match"
        for key in keys:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[algorithm],
                    leeway=self.leeway_s,
                    issuer=self.issuer,
                    audience=self.audience,
                    options={"require": ["exp", "sub"], "verify_aud": self.audience is not None},
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError:
                raise Unauthenticated("the token has expired") from None
            except jwt.ImmatureSignatureError:
                raise Unauthenticated(
                    "the token is not valid yet (nbf or iat in the future)"
                ) from None
            except jwt.MissingRequiredClaimError as error:
                raise Unauthenticated(f"the token lacks the {error.claim!r} claim") from None
            except jwt.InvalidAudienceError:
                raise Unauthenticated("the token is for another audience") from None
            except jwt.InvalidIssuerError:
                raise Unauthenticated("the token is from another issuer") from None
            except jwt.InvalidTokenError as error:
                raise Unauthenticated(f"the token is not valid: {error}") from None
            return _principal(claims)
        raise Unauthenticated(reason)

    @classmethod
    def from_environment(cls, secret_directory: Path, *, create: bool = True) -> TokenAuthority:
        """The authority configured by PROJECTIONIST_SECRET (comma-separated for rotation),
        PROJECTIONIST_JWT_PUBLIC_KEY (a PEM file), PROJECTIONIST_JWT_ALGORITHM (RS256 or ES256),
        PROJECTIONIST_JWT_ISSUER and PROJECTIONIST_JWT_AUDIENCE.

        Without either variable, the secret kept in `secret_directory` signs; with `create` it is
        generated when missing, else its absence is a ConfigurationError (see
        `load_or_create_secret`).
        """
        key_path = os.environ.get("PROJECTIONIST_JWT_PUBLIC_KEY")
        secrets_: list[str] = []
        if not key_path or os.environ.get("PROJECTIONIST_SECRET"):
            kept = load_or_create_secret(secret_directory, create=create)
            secrets_ = [s.strip() for s in kept.split(",") if s.strip()]
        public_keys: list[tuple[str, str | bytes]] = []
        if key_path:
            algorithm = os.environ.get("PROJECTIONIST_JWT_ALGORITHM", "RS256")
            try:
                public_keys.append((algorithm, Path(key_path).read_bytes()))
            except OSError as error:
                raise ConfigurationError(
                    f"PROJECTIONIST_JWT_PUBLIC_KEY {key_path!r} cannot be read: {error.strerror}"
                ) from None
        return cls(
            secrets_,
            public_keys=public_keys,
            issuer=os.environ.get("PROJECTIONIST_JWT_ISSUER") or None,
            audience=os.environ.get("PROJECTIONIST_JWT_AUDIENCE") or None,
        )


def _principal(claims: Mapping[str, Any]) -> Principal:
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise Unauthenticated("the token's 'scope' claim must be a space-separated string")
    subject = claims.get("sub")
    token_id = claims.get("jti")
    return Principal(
        subject=str(subject) if subject is not None else None,
        scopes=frozenset(scope.split()),
        claims=dict(claims),
        token_id=token_id if isinstance(token_id, str) else None,
    )


def principal_from_header(authority: TokenAuthority, header: str | None) -> Principal:
    """The principal of an `Authorization: Bearer <token>` header."""
    if not header:
        raise Unauthenticated("the request has no Authorization header; send 'Bearer <token>'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    return authority.verify(token.strip())


def secret_known(directory: Path) -> bool:
    """Whether the environment or a secret file in `directory` gives keys, none to generate."""
    return bool(
        os.environ.get("PROJECTIONIST_SECRET") is not None
        or os.environ.get("PROJECTIONIST_JWT_PUBLIC_KEY")
        or (directory / SECRET_FILE).exists()
    )


def load_or_create_secret(directory: Path, *, create: bool = True) -> str:
    """PROJECTIONIST_SECRET, or a secret generated once and kept in `directory`.

    With `create` false, a missing secret file is a ConfigurationError: a process that only
    issues tokens must sign with the server's secret, and one of its own would be refused.
    When only a public key is configured (PROJECTIONIST_JWT_PUBLIC_KEY), no secret is made.
    """
    configured = os.environ.get("PROJECTIONIST_SECRET")
    if configured is not None:
        for secret in configured.split(","):
            size = len(secret.strip().encode())
            if size < MIN_SECRET_BYTES:
                raise ConfigurationError(
                    f"PROJECTIONIST_SECRET holds a secret of {size} bytes; each must be at"
                    f" least {MIN_SECRET_BYTES} bytes (RFC 7518 section 3.2)"
                )
        return configured
    path = directory / SECRET_FILE
    if path.exists():
        return path.read_text().strip()
    if not create:
        raise ConfigurationError(
            f"no token secret is known: PROJECTIONIST_SECRET is not set and there is no {path};"
            " set PROJECTIONIST_SECRET to the server's secret"
        )
    secret = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first
        time.sleep(0.05)
        return path.read_text().strip()
    with os.fdopen(fd, "w") as file:
        file.write(secret + "\n")
    return secret


def auth_enabled() -> bool:
    """False only when PROJECTIONIST_AUTH=off (for development)."""
    return os.environ.get("PROJECTIONIST_AUTH", "on").strip().lower() not in ("off", "0", "false")
