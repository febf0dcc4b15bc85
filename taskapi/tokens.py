"""Issue and verify the JSON Web Tokens that carry a user's identity: HS256 with the shared
secret, and the asymmetric tokens of Better Auth's JWT plugin checked against its JWKS."""

import functools
import hashlib
import time
from typing import Any

import jwt

ISSUER = "taskapi"
LEEWAY_SECONDS = 60
MAX_USER_ID_LENGTH = 255
# What Better Auth's JWT plugin may sign with. Such a token is only ever checked against the
# key its `kid` names at BETTER_AUTH_JWKS_URL, and that key only with its own algorithm.
JWKS_ALGORITHMS = ["EdDSA", "ES256", "ES512", "RS256", "PS256"]
JWKS_TIMEOUT_SECONDS = 5
JWKS_CACHE_SECONDS = 300
# An unknown `kid` fetches the set again, but at most once in this many seconds after the last
# fetch, so tokens with made-up kids cannot turn every request into a call to the frontend.
JWKS_REFRESH_COOLDOWN_SECONDS = 10
# After a failed fetch, the next one waits this long (see JWKSClient).
JWKS_RETRY_SECONDS = 5
# The JWKS could not be read: urllib's errors that PyJWT does not wrap (a reset connection,
# a body that is not JSON) as well as those it does, and a set with no usable key.
JWKS_FAILURES = (jwt.PyJWKClientConnectionError, jwt.PyJWKSetError, OSError, ValueError)


class KeysUnavailable(Exception):
    """The frontend's JWKS is unreachable, too slow or unreadable: not the token's fault."""


class LivesTooLong(jwt.InvalidTokenError):
    """Valid for longer than the service allows: a token that leaks should not work for years."""


def issue_token(user_id: str, email: str, session_id: str, secret: str, expires_in: int) -> str:
    """An access token for one session (`sid`): it works until it expires or the session ends."""
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": user_id,
        "sid": session_id,
        "email": email,
        "iat": now,
        "exp": now + expires_in,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def hash_token(token: str) -> str:
    """How refresh and link tokens are stored: 256 random bits need no slow hash, and SHA-256
    cannot be turned back into the token."""
    return hashlib.sha256(token.encode()).hexdigest()


class JWKSClient(jwt.PyJWKClient):
    """One per process: caches the key set, and refetches it for an unknown `kid`.

    PyJWKClient fetches under a lock, so while the frontend hangs every request would wait out
    the timeout in turn, taking every thread. Instead, for JWKS_RETRY_SECONDS after a failed
    fetch the set is not fetched again: those requests answer 503 at once."""

    def __init__(self, url: str) -> None:
        super().__init__(
            url,
            lifespan=JWKS_CACHE_SECONDS,
            timeout=JWKS_TIMEOUT_SECONDS,
            cooldown_duration=JWKS_REFRESH_COOLDOWN_SECONDS,
            headers={"User-Agent": "taskapi"},
        )
        self.retry_at = 0.0

    def fetch_data(self) -> Any:
        if time.monotonic() < self.retry_at:
            raise jwt.PyJWKClientConnectionError("the last fetch failed moments ago")
        try:
            return super().fetch_data()
        except Exception:
            self.retry_at = time.monotonic() + JWKS_RETRY_SECONDS
            raise


def verify_token(
    token: str,
    secret: str,
    issuer: str | None,
    audience: str | None,
    jwks: jwt.PyJWKClient | None,
    max_lifetime: int,
) -> dict[str, Any]:
    """The claims of a valid token, or jwt.InvalidTokenError; KeysUnavailable when the JWKS
    is needed and cannot be read; LivesTooLong when it expires more than `max_lifetime`
    seconds after it was issued (or from now, if it does not say).

    A client sends the same token with every request until it expires, and checking it costs
    a fifth of a simple read's CPU, so tokens found valid are remembered: for those only the
    expiry is checked again. Invalid tokens are never remembered."""
    claims = verify_signed_token(token, secret, issuer, audience, jwks)
    now, expires = time.time(), claims["exp"]
    if expires <= now - LEEWAY_SECONDS:  # as PyJWT decides it
        raise jwt.ExpiredSignatureError("Signature has expired")
    issued = claims.get("iat", now)
    if expires - min(issued, now) > max_lifetime + LEEWAY_SECONDS:
        raise LivesTooLong("The token lives longer than this service allows")
    return claims


@functools.lru_cache(maxsize=4096)
def verify_signed_token(
    token: str,
    secret: str,
    issuer: str | None,
    audience: str | None,
    jwks: jwt.PyJWKClient | None,
) -> dict[str, Any]:
    """verify_token's full check: signature, algorithm, issuer, audience, required claims.

    HS256 tokens are checked with the shared secret alone, so no published key can serve as an
    HMAC secret. Tokens issued here carry no `aud`; every other token is checked against
    JWT_ISSUER and JWT_AUDIENCE when those are set (PyJWT checks them in a second decode)."""
    algorithm = jwt.get_unverified_header(token).get("alg")
    if jwks is not None and algorithm in JWKS_ALGORITHMS:
        key, algorithms = get_signing_key(jwks, token), JWKS_ALGORITHMS
    else:
        key, algorithms = secret, ["HS256"]
    options = {"require": ["exp"], "verify_aud": False}
    claims = jwt.decode(token, key, algorithms=algorithms, options=options, leeway=LEEWAY_SECONDS)
    issued_here = key is secret and claims.get("iss") == ISSUER
    if not issued_here and (issuer or audience):
        jwt.decode(
            token,
            key,
            algorithms=algorithms,
            options={"require": ["exp"]},
            leeway=LEEWAY_SECONDS,
            issuer=issuer,
            audience=audience,
        )
    for name in ("exp", "iat", "nbf"):  # PyJWT accepts numeric strings, which compare badly
        if name in claims and not is_number(claims[name]):
            raise jwt.InvalidTokenError(f"{name} must be a number")
    if get_user_id(claims) is None:
        raise jwt.MissingRequiredClaimError("sub")
    return claims


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def get_signing_key(jwks: jwt.PyJWKClient, token: str) -> jwt.PyJWK:
    """The published key the token's `kid` names; the PyJWK binds it to its own algorithm."""
    try:
        return jwks.get_signing_key_from_jwt(token)
    except JWKS_FAILURES as error:
        raise KeysUnavailable(str(error)) from error
    except jwt.PyJWKClientError as error:  # no published key has this kid, even after a refetch
        raise jwt.InvalidTokenError(str(error)) from error


def get_user_id(claims: dict[str, Any]) -> str | None:
    """`sub`, else `id`, else `user.id`: where Better Auth puts the id depends on the frontend.
    Only printable text: the id is stored, and PostgreSQL cannot store NUL."""
    user = claims.get("user")
    for value in (claims.get("sub"), claims.get("id"), isinstance(user, dict) and user.get("id")):
        if isinstance(value, str) and 0 < len(value) <= MAX_USER_ID_LENGTH:
            return value if value.isprintable() else None  # no NUL, no unpaired surrogates
    return None
