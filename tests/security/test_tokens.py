"""Tokens done right: signatures, algorithms, lifetimes, issuer, audience, rotation, public keys."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from projectionist import ConfigurationError, Principal, TokenAuthority, Unauthenticated
from tests.security.servers import OLD_SECRET, SECRET, Api, Server, bearer, client_for, uid

ISSUER = "https://login.example.test/"
AUDIENCE = "shop-api"
NEW_SECRET = "security-tests-rotated-in-secret-0123456789abc"


@dataclass(frozen=True)
class KeyPair:
    algorithm: str
    private_pem: bytes
    public_pem: bytes


def key_pair(algorithm: str) -> KeyPair:
    """A fresh RSA (RS256) or P-256 (ES256) key pair, as an outside issuer would hold it."""
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if algorithm == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        private = ec.generate_private_key(ec.SECP256R1())
    private_pem = private.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    return KeyPair(algorithm, private_pem, public_pem)


@pytest.fixture(scope="module", params=["RS256", "ES256"])
def keys(request: pytest.FixtureRequest) -> KeyPair:
    return key_pair(request.param)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "outsider", "scope": "queries:*", "iat": now, "nbf": now, "exp": now + 600,
            "jti": uid("jti"), **overrides}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_signed_with(key: bytes, payload: dict[str, Any]) -> str:
    """An HS256 token whose HMAC key is `key` (PyJWT refuses to do this with a PEM key)."""
    signing_input = (b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "."
                     + b64(json.dumps(payload).encode()))
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def refusal(authority: TokenAuthority, token: str) -> str:
    with pytest.raises(Unauthenticated) as refused:
        authority.verify(token)
    return refused.value.detail


# The library: TokenAuthority


def test_unsigned_tokens_are_refused() -> None:
    authority = TokenAuthority([SECRET])
    for header in ({"alg": "none"}, {"alg": "None"}, {"alg": "NONE", "typ": "JWT"}, {}):
        token = (b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims()).encode())
                 + ".")
        assert "algorithm" in refusal(authority, token)
    assert "algorithm 'none' is not accepted" in refusal(
        authority, jwt.encode(claims(), None, algorithm="none"))


def test_an_hs256_token_signed_with_the_public_key_is_refused(keys: KeyPair) -> None:
    forged = hs256_signed_with(keys.public_pem, claims(scope="admin commands:* queries:*"))
    only_public = TokenAuthority(public_keys=[(keys.algorithm, keys.public_pem)])
    assert refusal(only_public, forged) == (
        f"the token's algorithm 'HS256' is not accepted here; use {keys.algorithm}")
    both = TokenAuthority([SECRET], public_keys=[(keys.algorithm, keys.public_pem)])
    assert refusal(both, forged) == "the token's signature does not match"


def test_a_token_claiming_another_public_key_algorithm_is_refused() -> None:
    rsa_keys, ec_keys = key_pair("RS256"), key_pair("ES256")
    authority = TokenAuthority(public_keys=[("ES256", ec_keys.public_pem)])
    token = jwt.encode(claims(), rsa_keys.private_pem, algorithm="RS256")
    assert "algorithm 'RS256' is not accepted here; use ES256" in refusal(authority, token)


def test_tokens_minted_elsewhere_verify_with_the_public_key(keys: KeyPair) -> None:
    authority = TokenAuthority(public_keys=[(keys.algorithm, keys.public_pem)])
    payload = claims(scope="customer queries:*", sub="c-42")
    principal = authority.verify(jwt.encode(payload, keys.private_pem, algorithm=keys.algorithm))
    assert principal.subject == "c-42"
    assert principal.scopes == {"customer", "queries:*"}
    assert principal.token_id == payload["jti"]

    stranger = key_pair(keys.algorithm)
    forged = jwt.encode(payload, stranger.private_pem, algorithm=keys.algorithm)
    assert refusal(authority, forged) == "the token's signature does not match"
    assert not authority.can_issue


@pytest.mark.parametrize(("offset_s", "accepted"), [(-3600, False), (-31, False), (-20, True)])
def test_expiry_allows_a_small_clock_skew(offset_s: int, accepted: bool) -> None:
    authority = TokenAuthority([SECRET])
    now = int(time.time())
    token = jwt.encode(claims(iat=now - 7200, nbf=now - 7200, exp=now + offset_s), SECRET,
                       algorithm="HS256")
    if accepted:
        assert authority.verify(token).subject == "outsider"
    else:
        assert refusal(authority, token) == "the token has expired"


@pytest.mark.parametrize(("offset_s", "accepted"), [(3600, False), (31, False), (20, True)])
def test_not_before_allows_a_small_clock_skew(offset_s: int, accepted: bool) -> None:
    authority = TokenAuthority([SECRET])
    now = int(time.time())
    token = jwt.encode(claims(iat=now, nbf=now + offset_s, exp=now + 7200), SECRET,
                       algorithm="HS256")
    if accepted:
        assert authority.verify(token).subject == "outsider"
    else:
        assert refusal(authority, token) == "the token is not valid yet (nbf or iat in the future)"


def test_a_token_issued_in_the_future_is_refused() -> None:
    now = int(time.time())
    token = jwt.encode(claims(iat=now + 3600, nbf=now, exp=now + 7200), SECRET, algorithm="HS256")
    assert "not valid yet" in refusal(TokenAuthority([SECRET]), token)


def test_issuer_and_audience_are_checked_when_configured() -> None:
    authority = TokenAuthority([SECRET], issuer=ISSUER, audience=AUDIENCE)
    good = claims(iss=ISSUER, aud=AUDIENCE)
    assert authority.verify(jwt.encode(good, SECRET, algorithm="HS256")).subject == "outsider"
    cases = {
        "the token is from another issuer": {**good, "iss": "https://evil.example.test/"},
        "the token is for another audience": {**good, "aud": "billing-api"},
        "the token lacks the 'iss' claim": {k: v for k, v in good.items() if k != "iss"},
        "the token lacks the 'aud' claim": {k: v for k, v in good.items() if k != "aud"},
    }
    for reason, payload in cases.items():
        assert refusal(authority, jwt.encode(payload, SECRET, algorithm="HS256")) == reason
    issued = authority.issue(["queries:*"])
    assert jwt.decode(issued, SECRET, algorithms=["HS256"], audience=AUDIENCE)["iss"] == ISSUER
    assert authority.verify(issued).subject == "user"


def test_without_issuer_and_audience_settings_those_claims_are_not_required() -> None:
    authority = TokenAuthority([SECRET])
    token = jwt.encode(claims(iss="anyone", aud="anything"), SECRET, algorithm="HS256")
    assert authority.verify(token).subject == "outsider"


def test_two_secrets_verify_tokens_of_either_and_the_first_signs() -> None:
    rotating = TokenAuthority([NEW_SECRET, SECRET])
    for secret in (NEW_SECRET, SECRET):
        token = TokenAuthority([secret]).issue(["queries:*"], subject=f"by-{secret[:8]}")
        assert rotating.verify(token).subject == f"by-{secret[:8]}"
    issued = rotating.issue(["queries:*"], subject="new")
    assert TokenAuthority([NEW_SECRET]).verify(issued).subject == "new"
    assert refusal(TokenAuthority([SECRET]), issued) == "the token's signature does not match"
    retired = TokenAuthority([NEW_SECRET])
    assert refusal(retired, TokenAuthority([SECRET]).issue(["queries:*"])) == (
        "the token's signature does not match")


def test_refusals_never_repeat_the_secret_or_the_token() -> None:
    authority = TokenAuthority([SECRET], issuer=ISSUER, audience=AUDIENCE)
    now = int(time.time())
    tokens = [
        jwt.encode(claims(exp=now - 3600), SECRET, algorithm="HS256"),
        jwt.encode(claims(iss=ISSUER, aud="other"), SECRET, algorithm="HS256"),
        jwt.encode(claims(iss=ISSUER, aud=AUDIENCE), OLD_SECRET, algorithm="HS256"),
        jwt.encode(claims(), SECRET * 2, algorithm="HS512"),
        jwt.encode(claims(), None, algorithm="none"),
        "not.a.jwt",
        "x" * 500,
    ]
    for token in tokens:
        detail = refusal(authority, token)
        assert SECRET not in detail and OLD_SECRET not in detail
        assert token not in detail
        assert all(part not in detail for part in token.split(".") if len(part) > 8)


# Over HTTP

SERVER_CASES = {
    "alg none": ("algorithm 'none' is not accepted",
                 lambda: jwt.encode(claims(), None, algorithm="none")),
    "expired": ("expired", lambda: jwt.encode(claims(exp=int(time.time()) - 3600), SECRET,
                                               algorithm="HS256")),
    "not yet valid": ("not valid yet", lambda: jwt.encode(
        claims(nbf=int(time.time()) + 3600, exp=int(time.time()) + 7200), SECRET,
        algorithm="HS256")),
    "unknown secret": ("signature does not match", lambda: TokenAuthority(
        [NEW_SECRET]).issue(["queries:*"])),
    "HS512": ("algorithm 'HS512' is not accepted", lambda: jwt.encode(claims(), SECRET * 2,
                                                                      algorithm="HS512")),
    "no expiry": ("lacks the 'exp' claim", lambda: jwt.encode(
        {k: v for k, v in claims().items() if k != "exp"}, SECRET, algorithm="HS256")),
    "not a JWT": ("not a valid JWT", lambda: "not-a-jwt"),
}


@pytest.mark.parametrize("case", sorted(SERVER_CASES))
def test_each_refused_token_is_a_401_naming_the_reason(api: Api, case: str) -> None:
    reason, make = SERVER_CASES[case]
    token = make()
    for response in (api.query("ProductCatalog", headers=bearer(token)),
                     api.command("RegisterProduct",
                                 {"sku": uid("sku"), "name": "n", "price_cents": 1},
                                 headers=bearer(token))):
        assert response.status_code == 401, response.text
        body = response.json()
        assert body["error"] == "unauthenticated"
        assert reason in body["detail"]
        assert token not in response.text
        assert SECRET not in response.text and OLD_SECRET not in response.text
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_the_server_accepts_tokens_of_both_configured_secrets(api: Api) -> None:
    for secret in (SECRET, OLD_SECRET):
        token = TokenAuthority([secret]).issue(["queries:*"], subject="rotating")
        response = api.query("ProductCatalog", headers=bearer(token))
        assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def keyed_server(keys: KeyPair, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A shop that verifies tokens with a public key, an issuer and an audience (env config)."""
    cwd = tmp_path_factory.mktemp(f"keyed-{keys.algorithm}")
    key_file = cwd / "issuer.pem"
    key_file.write_bytes(keys.public_pem)
    server = Server(cwd, env={
        "PROJECTIONIST_JWT_PUBLIC_KEY": str(key_file),
        "PROJECTIONIST_JWT_ALGORITHM": keys.algorithm,
        "PROJECTIONIST_JWT_ISSUER": ISSUER,
        "PROJECTIONIST_JWT_AUDIENCE": AUDIENCE,
    })
    try:
        yield server.wait_until_healthy()
    finally:
        server.stop()
    server.assert_no_server_errors()


def test_a_server_configured_with_a_public_key_verifies_tokens_minted_elsewhere(
        keyed_server: Server, keys: KeyPair) -> None:
    def token(**overrides: Any) -> str:
        payload = {**claims(iss=ISSUER, aud=AUDIENCE, scope="commands:* queries:*"), **overrides}
        return jwt.encode(payload, keys.private_pem, algorithm=keys.algorithm)

    stranger = key_pair(keys.algorithm)
    refused = {
        "signature does not match": jwt.encode(claims(iss=ISSUER, aud=AUDIENCE),
                                               stranger.private_pem, algorithm=keys.algorithm),
        "for another audience": token(aud="billing-api"),
        "from another issuer": token(iss="https://evil.example.test/"),
        "expired": token(exp=int(time.time()) - 3600),
        "algorithm 'HS256' is not accepted": hs256_signed_with(
            keys.public_pem, claims(iss=ISSUER, aud=AUDIENCE, scope="admin commands:*")),
        "algorithm 'none' is not accepted": jwt.encode(claims(iss=ISSUER, aud=AUDIENCE), None,
                                                       algorithm="none"),
        "algorithm 'HS256' is not accepted here": TokenAuthority([SECRET]).issue(["queries:*"]),
    }
    with client_for(keyed_server) as http:
        sku = uid("sku")
        response = http.post("/commands/RegisterProduct", headers=bearer(token()),
                             json={"sku": sku, "name": "minted elsewhere", "price_cents": 5})
        assert response.status_code == 200, response.text
        position = response.json()["position"]
        response = http.get("/queries/ProductCatalog", headers=bearer(token()),
                            params={"search": sku, "min_position": position})
        assert response.status_code == 200, response.text
        assert [item["sku"] for item in response.json()["data"]["items"]] == [sku]
        for reason, refused_token in refused.items():
            response = http.get("/queries/ProductCatalog", headers=bearer(refused_token))
            assert response.status_code == 401, (reason, response.text)
            assert reason in response.json()["detail"]
            assert refused_token not in response.text
    assert not (Path(keyed_server.cwd) / "projectionist.secret").exists()


# Where a secret comes from, and who may make one up

@pytest.fixture
def no_key_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PROJECTIONIST_SECRET", "PROJECTIONIST_JWT_PUBLIC_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_key_settings")
def test_an_authority_that_may_not_create_a_secret_refuses_naming_the_file(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        TokenAuthority.from_environment(tmp_path, create=False)
    assert str(tmp_path / "projectionist.secret") in refused.value.detail
    assert "PROJECTIONIST_SECRET" in refused.value.detail
    assert list(tmp_path.iterdir()) == []


@pytest.mark.usefixtures("no_key_settings")
def test_a_server_creates_the_secret_once_and_an_issuer_signs_with_it(tmp_path: Path) -> None:
    server = TokenAuthority.from_environment(tmp_path)
    kept = (tmp_path / "projectionist.secret").read_text().strip()
    assert len(kept.encode()) >= 32
    issuer = TokenAuthority.from_environment(tmp_path, create=False)
    assert server.verify(issuer.issue(["queries:*"], subject="cli")).subject == "cli"
    assert TokenAuthority.from_environment(tmp_path).verify(server.issue(["admin"])).is_admin


# Principals

@pytest.mark.parametrize("scopes", ["administrator", "admin", b"admin"],
                         ids=["administrator", "admin", "bytes"])
def test_a_principal_refuses_a_single_string_of_scopes(scopes: str | bytes) -> None:
    with pytest.raises(TypeError) as refused:
        Principal("alice", scopes)  # type: ignore[arg-type]
    assert repr(scopes) in str(refused.value)


@pytest.mark.parametrize("scopes", [None, 7, ["admin", 3], {"queries:*", None}],
                         ids=["none", "int", "int-member", "none-member"])
def test_a_principal_refuses_scopes_that_are_not_strings(scopes: object) -> None:
    with pytest.raises(TypeError, match="Principal scopes"):
        Principal("alice", scopes)  # type: ignore[arg-type]


@pytest.mark.parametrize("scopes", [["admin", "queries:*"], ("admin", "queries:*"),
                                    {"admin", "queries:*"}, iter(["admin", "queries:*"])],
                         ids=["list", "tuple", "set", "iterator"])
def test_a_principal_keeps_any_iterable_of_scopes_as_a_frozenset(scopes: Any) -> None:
    principal = Principal("alice", scopes)
    assert principal.scopes == frozenset({"admin", "queries:*"})
    assert isinstance(principal.scopes, frozenset)
    assert principal.is_admin and principal.may_query("Anything")
    assert not principal.may_command("Anything")


def test_a_principal_stays_frozen_and_slotted() -> None:
    principal = Principal("alice", frozenset({"queries:*"}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        principal.scopes = frozenset({"admin"})  # type: ignore[misc]
    assert not hasattr(principal, "__dict__")
    assert not Principal("bob", []).is_admin
