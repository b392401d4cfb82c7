"""Who may use the console: users with hashed passwords and a role, sessions, CSRF.

The users file (``[web] users``, default ROOT/web-users.toml, mode 0600; `mediasvc users`
edits it)::

    [users.frontdesk]
    role = "viewer"                 # viewer: read everything; operator: also act
    password = "scrypt$16384$8$1$<salt>$<hash>"

Passwords are hashed with scrypt (hashlib, RFC 7914; a memory-hard function, so a stolen file
costs an attacker dearly per guess) and a random salt per user. On the first start without a
file the console creates one with an ``admin`` operator and a random password written to
ROOT/run/console-admin-password (0600) for the administrator to read and change.

Browsers sign in on /login and get a session cookie (signed, HttpOnly, SameSite=Strict, Secure
under TLS) that names the user and a fingerprint of their password hash, so changing a
password or removing a user ends their sessions. Programs use HTTP Basic authentication.

CSRF (every POST): a cross-site Origin is refused; a request authenticated by the session
cookie must carry the session's token (form field ``csrf`` or header ``X-CSRF-Token``); one
authenticated by Basic must be JSON, which a cross-site form cannot send without a CORS
preflight that the console never answers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request

from mediasvc.durable import atomic_write
from mediasvc.errors import ConfigError, UsageError
from mediasvc.service.config import ServiceConfig

ROLES = ("viewer", "operator")
NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,32}")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # 16 MiB, ~50 ms here (RFC 7914 section 2)


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            dklen=32)
    return "$".join(("scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()))


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n),
                             r=int(r), p=int(p), dklen=len(want), maxmem=2**26)
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(got, want)


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password: str  # the stored hash

    @property
    def operator(self) -> bool:
        return self.role == "operator"

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.password.encode()).hexdigest()[:16]


def read_users(path: Path) -> dict[str, User]:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(path, "", "", f"cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", "", f"not valid TOML: {exc}") from exc
    users: dict[str, User] = {}
    for name, entry in (data.get("users") or {}).items():
        if not NAME_RE.fullmatch(name) or not isinstance(entry, dict):
            raise ConfigError(path, f"users.{name}", entry, "a user name is 1-32 of "
                              "A-Z a-z 0-9 . _ - and holds a table")
        role, pw = entry.get("role"), entry.get("password")
        if role not in ROLES:
            raise ConfigError(path, f"users.{name}.role", role, "must be viewer or operator")
        if not isinstance(pw, str) or not pw.startswith("scrypt$"):
            raise ConfigError(path, f"users.{name}.password", "...", "must be a scrypt hash "
                              "(set it with `mediasvc users passwd`)")
        users[name] = User(name, role, pw)
    return users


def write_users(path: Path, users: dict[str, User]) -> None:
    lines = ["# mediasvc console users (`mediasvc users add|passwd|remove|list`)", ""]
    for u in sorted(users.values(), key=lambda u: u.name):
        lines += [f"[users.{u.name}]", f'role = "{u.role}"', f'password = "{u.password}"', ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, "\n".join(lines).encode(), mode=0o600)


def set_user(path: Path, name: str, role: str | None, password: str) -> User:
    """Add a user or change one's password (and role); the file is created if needed."""
    if not NAME_RE.fullmatch(name):
        raise UsageError(f"user name {name!r}: 1-32 of A-Z a-z 0-9 . _ -")
    users = read_users(path) if path.exists() else {}
    old = users.get(name)
    role = role or (old.role if old else "viewer")
    if role not in ROLES:
        raise UsageError(f"role {role!r}: must be viewer or operator")
    if len(password) < 8:
        raise UsageError("a password has at least 8 characters")
    users[name] = User(name, role, hash_password(password))
    write_users(path, users)
    return users[name]


def first_admin(users_file: Path, run: Path) -> Path | None:
    """First start without a users file: an ``admin`` operator with a random password,
    written to run/console-admin-password (0600). Returns that file when it was made."""
    if users_file.exists():
        return None
    password = secrets.token_urlsafe(12)
    set_user(users_file, "admin", "operator", password)
    note = run / "console-admin-password"
    atomic_write(note, (password + "\n").encode(), mode=0o600)
    return note


def secret_key(run: Path) -> str:
    """The key that signs session cookies (run/console-secret, 0600, made once)."""
    path = run / "console-secret"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_hex(32)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, key.encode(), mode=0o600)
        return key


class Users:
    """The users file, read again when it changes (`mediasvc users` while the console runs)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, User] = {}
        self._checked: dict[tuple[str, str], bool] = {}  # (user, sha256 of try) -> ok
        self._lock = threading.Lock()
        self._dummy = hash_password(secrets.token_hex(8))  # for unknown names

    def get(self, name: str) -> User | None:
        with self._lock:
            try:
                st = self.path.stat()
                stamp = (st.st_mtime_ns, st.st_size)
            except OSError:
                stamp = None
            if stamp != self._stamp:
                self._users = read_users(self.path) if stamp else {}
                self._stamp = stamp
                self._checked.clear()
            return self._users.get(name)

    def check(self, name: str, password: str) -> User | None:
        user = self.get(name)
        if user is None:
            verify_password(password, self._dummy)  # as long as a wrong password takes
            return None
        # Basic authentication sends the password with every request: remember a verified
        # one (by its SHA-256) rather than paying scrypt each time.
        key = (user.fingerprint + name, hashlib.sha256(password.encode()).hexdigest())
        ok = self._checked.get(key)
        if ok is None:
            ok = verify_password(password, user.password)
            if len(self._checked) > 1000:
                self._checked.clear()
            self._checked[key] = ok
        return user if ok else None


# -- requests ---------------------------------------------------------------------------------

def login(request: Request, user: User) -> None:
    request.session.clear()
    request.session.update({"user": user.name, "fp": user.fingerprint,
                            "csrf": secrets.token_urlsafe(24)})


def csrf_token(request: Request) -> str:
    """The session's CSRF token (an anonymous session gets one too, for the login form)."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(24)
        request.session["csrf"] = token
    return token


def current_user(request: Request) -> User | None:
    """The user of this request (session cookie, or HTTP Basic), or None."""
    users: Users = request.app.state.users
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            name, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError, binascii.Error):
            return None
        request.state.auth = "basic"
        return users.check(name, password)
    who = request.session.get("user")
    if not isinstance(who, str):
        return None
    user = users.get(who)
    if user is None or request.session.get("fp") != user.fingerprint:
        return None
    request.state.auth = "session"
    return user


def api_user(request: Request, role: str = "viewer") -> User:
    user = current_user(request)
    if user is None:
        raise HTTPException(401, "authentication required",
                            headers={"WWW-Authenticate": 'Basic realm="mediasvc"'})
    if role == "operator":
        need_operator(user)
    return user


def need_operator(user: User) -> None:
    if not user.operator:
        raise HTTPException(403, f"user {user.name} is a {user.role}; this needs an operator")


def config(request: Request) -> ServiceConfig:
    """The service configuration the console was started with."""
    cfg: ServiceConfig = request.app.state.cfg
    return cfg


async def check_csrf(request: Request) -> None:
    """Refuse a state-changing request that may come from another site (see the module doc)."""
    origin = request.headers.get("origin")
    if origin is not None and origin != _own_origin(request):
        raise HTTPException(403, "cross-site request refused (Origin does not match)")
    if getattr(request.state, "auth", None) == "basic":
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise HTTPException(403, "requests authenticated by Basic must be JSON "
                                "(Content-Type: application/json)")
        return
    sent: str | None = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get("csrf")
        sent = value if isinstance(value, str) else None
    want = request.session.get("csrf")
    if not sent or not isinstance(want, str) or not hmac.compare_digest(sent, want):
        raise HTTPException(403, "CSRF token missing or wrong (reload the page)")


def _own_origin(request: Request) -> str:
    host = request.headers.get("host", "")
    return f"{request.url.scheme}://{host}"


def session_info(request: Request) -> dict[str, Any]:
    user = current_user(request)
    return {"user": user, "csrf": csrf_token(request)}
