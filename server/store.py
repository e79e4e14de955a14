"""What must survive a restart, in one embedded SQLite database in the hub's data directory.

Accounts (supervisors, agents, API tokens), sessions, every status event the agents sent (which is
also how duplicates are recognised after a reconnect), and alerts with their acknowledgements.
Secrets are stored only as hashes: passwords with scrypt, tokens with SHA-256 (they are long
random strings, so a fast hash is enough).

Calls are synchronous: each is a single indexed statement on a WAL database, well under a
millisecond, and they happen per status change or alert, never per audio chunk.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.events import Alert, AlertKind, Severity
from server.monitor import ROLE_DEFAULTS

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    display_name TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS api_tokens (
    token_hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS agents (
    agent_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    team TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS status_events (
    agent_id TEXT NOT NULL,
    session TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at REAL NOT NULL,
    state TEXT NOT NULL,
    payload TEXT NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (agent_id, session, seq)
);
CREATE INDEX IF NOT EXISTS status_by_agent_time ON status_events (agent_id, received_at);
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    call_id TEXT,
    severity TEXT NOT NULL,
    started_at REAL NOT NULL,
    offset_s REAL,
    duration_s REAL,
    detail TEXT NOT NULL,
    acked_by TEXT,
    acked_at REAL
);
CREATE INDEX IF NOT EXISTS alerts_by_time ON alerts (started_at);
CREATE INDEX IF NOT EXISTS alerts_by_call ON alerts (call_id);
CREATE INDEX IF NOT EXISTS alerts_by_agent ON alerts (agent_id, started_at);
CREATE TABLE IF NOT EXISTS monitor_sessions (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    display_name TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    call_id TEXT NOT NULL,
    mode TEXT NOT NULL,
    reason TEXT NOT NULL,
    spot_check INTEGER NOT NULL,
    hub TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    end_reason TEXT
);
CREATE INDEX IF NOT EXISTS monitor_by_time ON monitor_sessions (started_at);
-- the audit trail cannot be edited through the product: rows are never deleted, and the only
-- change a row ever takes is its end, once
CREATE TRIGGER IF NOT EXISTS monitor_sessions_keep BEFORE DELETE ON monitor_sessions
BEGIN SELECT RAISE(ABORT, 'the monitoring audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS monitor_sessions_end_once BEFORE UPDATE ON monitor_sessions
WHEN OLD.ended_at IS NOT NULL OR NEW.id IS NOT OLD.id OR NEW.username IS NOT OLD.username
  OR NEW.display_name IS NOT OLD.display_name OR NEW.agent_id IS NOT OLD.agent_id
  OR NEW.call_id IS NOT OLD.call_id OR NEW.mode IS NOT OLD.mode OR NEW.reason IS NOT OLD.reason
  OR NEW.spot_check IS NOT OLD.spot_check OR NEW.hub IS NOT OLD.hub
  OR NEW.started_at IS NOT OLD.started_at
BEGIN SELECT RAISE(ABORT, 'a monitoring session can only be ended, once'); END;
"""
# columns added after the first release, with their definitions (added on open when missing)
MIGRATIONS = {"users": {"permissions": "TEXT NOT NULL DEFAULT ''"}}

ROLES = ("admin", "supervisor")

# Tables whose rows are shared between hubs of one floor (see server/bus_redis.py), by key.
REPLICATED: dict[str, tuple[str, ...]] = {
    "users": ("username",),
    "agents": ("agent_id",),
    "api_tokens": ("token_hash",),
    "sessions": ("token_hash",),
    "status_events": ("agent_id", "session", "seq"),
    "monitor_sessions": ("id",),
}
RowListener = Callable[[str, dict[str, Any], bool], None]  # table, row (key if deleted), deleted
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    b64 = base64.b64encode
    return (f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}$"
            f"{b64(salt).decode()}${b64(digest).decode()}")


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    computed = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), dklen=32,
                              n=int(n), r=int(r), p=int(p))
    return hmac.compare_digest(computed, base64.b64decode(digest))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


@dataclass(frozen=True, slots=True)
class User:
    username: str
    role: str
    display_name: str
    permissions: frozenset[str] = frozenset()

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> User:
        return cls(row["username"], row["role"], row["display_name"],
                   frozenset(p for p in row["permissions"].split(",") if p))


@dataclass(frozen=True, slots=True)
class AgentAccount:
    agent_id: str
    name: str
    team: str


class StoreError(ValueError):
    pass


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        for table, columns in MIGRATIONS.items():
            have = {r["name"] for r in self._db.execute(f"PRAGMA table_info({table})")}
            for column, definition in columns.items():
                if column not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
                    if (table, column) == ("users", "permissions"):  # as if made today
                        for role, perms in ROLE_DEFAULTS.items():
                            self._db.execute("UPDATE users SET permissions=? WHERE role=?",
                                             (",".join(perms), role))
        self._listeners: list[RowListener] = []

    def close(self) -> None:
        self.commit()
        self._db.close()

    # -- replication ------------------------------------------------------------------------

    def on_row_change(self, listener: RowListener) -> None:
        """Call `listener(table, row, deleted)` after each change to a replicated table."""
        self._listeners.append(listener)

    def _changed(self, table: str, *key: Any, deleted: bool = False) -> None:
        if not self._listeners:
            return
        columns = REPLICATED[table]
        if deleted:
            row = dict(zip(columns, key, strict=True))
        else:
            where = " AND ".join(f"{c}=?" for c in columns)
            found = self._db.execute(f"SELECT * FROM {table} WHERE {where}", key).fetchone()
            if found is None:
                return
            row = dict(found)
        for listener in self._listeners:
            listener(table, row, deleted)

    def apply_row(self, table: str, row: dict[str, Any], deleted: bool = False) -> None:
        """Apply a row changed on another hub (no listener is told: it came from outside)."""
        columns = REPLICATED.get(table)
        if columns is None:
            raise StoreError(f"table {table!r} is not replicated")
        if deleted:
            where = " AND ".join(f"{c}=?" for c in columns)
            self._db.execute(f"DELETE FROM {table} WHERE {where}", [row[c] for c in columns])
            return
        names = list(row)
        if not set(columns) <= set(names) or not all(n.isidentifier() for n in names):
            raise StoreError(f"bad row for {table}")
        if table == "monitor_sessions":  # append-only: insert, or record the end once
            self._db.execute(
                "INSERT INTO monitor_sessions (" + ", ".join(names) + ") VALUES ("
                + ", ".join("?" * len(names)) + ") ON CONFLICT (id) DO UPDATE SET "
                "ended_at=excluded.ended_at, end_reason=excluded.end_reason "
                "WHERE monitor_sessions.ended_at IS NULL AND excluded.ended_at IS NOT NULL",
                [row[n] for n in names])
            return
        verb = "INSERT OR IGNORE" if table == "status_events" else "INSERT OR REPLACE"
        self._db.execute(f"{verb} INTO {table} ({', '.join(names)}) VALUES "
                         f"({', '.join('?' * len(names))})", [row[n] for n in names])

    def rows(self, table: str) -> list[dict[str, Any]]:
        """Every row of a replicated account table (to seed a shared store)."""
        if table not in REPLICATED or table == "status_events":
            raise StoreError(f"table {table!r} is not an account table")
        return [dict(r) for r in self._db.execute(f"SELECT * FROM {table}")]

    # -- accounts -----------------------------------------------------------------------------

    def add_user(self, username: str, password: str, role: str, display_name: str = "",
                 permissions: tuple[str, ...] | None = None) -> User:
        """Add a user; `permissions` default to the role's (see server/monitor.py)."""
        if role not in ROLES:
            raise StoreError(f"role must be one of {', '.join(ROLES)}")
        if not username or len(password) < 8:
            raise StoreError("username required; password must be at least 8 characters")
        perms = ROLE_DEFAULTS[role] if permissions is None else permissions
        try:
            self._db.execute(
                "INSERT INTO users (username, password_hash, role, display_name, created_at,"
                " permissions) VALUES (?, ?, ?, ?, ?, ?)",
                (username, hash_password(password), role, display_name or username, time.time(),
                 ",".join(perms)),
            )
        except sqlite3.IntegrityError:
            raise StoreError(f"user {username!r} already exists") from None
        self._changed("users", username)
        return User(username, role, display_name or username, frozenset(perms))

    def set_permissions(self, username: str, permissions: tuple[str, ...]) -> None:
        cur = self._db.execute("UPDATE users SET permissions=? WHERE username=?",
                               (",".join(permissions), username))
        if not cur.rowcount:
            raise StoreError(f"no user {username!r}")
        self._changed("users", username)

    def set_password(self, username: str, password: str) -> None:
        if len(password) < 8:
            raise StoreError("password must be at least 8 characters")
        cur = self._db.execute("UPDATE users SET password_hash=? WHERE username=?",
                               (hash_password(password), username))
        if not cur.rowcount:
            raise StoreError(f"no user {username!r}")
        self._changed("users", username)

    def check_password(self, username: str, password: str) -> User | None:
        row = self._db.execute("SELECT * FROM users WHERE username=?", (username,)).fetchone()
        if row is None:
            verify_password(password, hash_password("timing-equaliser"))
            return None
        if not verify_password(password, row["password_hash"]):
            return None
        return User.from_row(row)

    def users(self) -> list[User]:
        rows = self._db.execute("SELECT * FROM users ORDER BY username")
        return [User.from_row(r) for r in rows]

    def new_session(self, username: str, ttl_s: float) -> str:
        token = secrets.token_urlsafe(32)
        now = time.time()
        self._db.execute("DELETE FROM sessions WHERE expires_at < ?", (now,))
        self._db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?)",
                         (hash_token(token), username, now, now + ttl_s))
        self._changed("sessions", hash_token(token))
        return token

    def session_user(self, token: str) -> User | None:
        row = self._db.execute(
            "SELECT u.* FROM sessions s JOIN users u USING (username) "
            "WHERE s.token_hash=? AND s.expires_at > ?", (hash_token(token), time.time()),
        ).fetchone()
        return None if row is None else User.from_row(row)

    def end_session(self, token: str) -> None:
        self._db.execute("DELETE FROM sessions WHERE token_hash=?", (hash_token(token),))
        self._changed("sessions", hash_token(token), deleted=True)

    def add_api_token(self, name: str) -> str:
        token = new_token("fwt")
        self._db.execute("INSERT INTO api_tokens VALUES (?, ?, ?)",
                         (hash_token(token), name, time.time()))
        self._changed("api_tokens", hash_token(token))
        return token

    def api_token_name(self, token: str) -> str | None:
        row = self._db.execute("SELECT name FROM api_tokens WHERE token_hash=?",
                               (hash_token(token),)).fetchone()
        return None if row is None else row["name"]

    def add_agent(self, agent_id: str, name: str, team: str) -> str:
        """Create an agent (or give an existing one a new token); returns the token."""
        if not agent_id or len(agent_id) > 64 or not agent_id.replace("-", "").replace(
            "_", "").replace(".", "").isalnum():
            raise StoreError("agent id: 1–64 letters, digits, '-', '_' or '.'")
        token = new_token("fwa")
        self._db.execute(
            "INSERT INTO agents VALUES (?, ?, ?, ?, ?) ON CONFLICT(agent_id) DO UPDATE SET "
            "name=excluded.name, team=excluded.team, token_hash=excluded.token_hash",
            (agent_id, name or agent_id, team, hash_token(token), time.time()),
        )
        self._changed("agents", agent_id)
        return token

    def agent_for_token(self, agent_id: str, token: str) -> AgentAccount | None:
        row = self._db.execute("SELECT * FROM agents WHERE agent_id=?", (agent_id,)).fetchone()
        if row is None or not hmac.compare_digest(row["token_hash"], hash_token(token)):
            return None
        return AgentAccount(row["agent_id"], row["name"], row["team"])

    def agents(self) -> list[AgentAccount]:
        rows = self._db.execute("SELECT * FROM agents ORDER BY agent_id")
        return [AgentAccount(r["agent_id"], r["name"], r["team"]) for r in rows]

    # -- status events --------------------------------------------------------------------

    def last_seq(self, agent_id: str, session: str) -> int:
        row = self._db.execute(
            "SELECT MAX(seq) FROM status_events WHERE agent_id=? AND session=?",
            (agent_id, session),
        ).fetchone()
        return row[0] or 0

    def record_status(self, agent_id: str, session: str, seq: int, at: float, state: str,
                      payload: dict[str, Any], *, commit: bool = True) -> bool:
        """Store a reliable message; False if this (agent, session, seq) was already stored.

        With `commit=False` the row goes into a transaction left open for `commit()`, so that
        the messages stored in one turn of the event loop share one commit (a commit costs
        ~20 times an insert); whoever acknowledges them must wait for that commit."""
        if not commit and not self._db.in_transaction:
            self._db.execute("BEGIN")
        cur = self._db.execute(
            "INSERT OR IGNORE INTO status_events VALUES (?, ?, ?, ?, ?, ?, ?)",
            (agent_id, session, seq, at, state, json.dumps(payload), time.time()),
        )
        if cur.rowcount != 1:
            return False
        self._changed("status_events", agent_id, session, seq)
        return True

    def commit(self) -> None:
        """Commit what `record_status(commit=False)` left open (nothing if nothing is)."""
        if not self._db.in_transaction:
            return
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def status_history(self, agent_id: str, since: float, limit: int = 500) -> list[dict]:
        rows = self._db.execute(
            "SELECT at, state, payload, received_at FROM status_events "
            "WHERE agent_id=? AND received_at >= ? AND state != 'transcript' "
            "ORDER BY received_at, seq LIMIT ?", (agent_id, since, limit),
        )
        return [{"at": r["at"], "state": r["state"], **json.loads(r["payload"])} for r in rows]

    def latest_statuses(self) -> list[tuple[str, float, dict[str, Any]]]:
        """The newest status event of each agent (to rebuild tiles after a restart)."""
        rows = self._db.execute(
            "SELECT agent_id, at, payload FROM status_events e WHERE state != 'transcript' AND "
            "received_at = (SELECT MAX(received_at) FROM status_events x "
            "WHERE x.agent_id = e.agent_id AND x.state != 'transcript')"
        )
        return [(r["agent_id"], r["at"], json.loads(r["payload"])) for r in rows]

    def latest_status(self, agent_id: str) -> tuple[float, dict[str, Any]] | None:
        row = self._db.execute(
            "SELECT at, payload FROM status_events WHERE agent_id=? AND state != 'transcript' "
            "ORDER BY received_at DESC, rowid DESC LIMIT 1", (agent_id,)).fetchone()
        return None if row is None else (row["at"], json.loads(row["payload"]))

    def last_call(self, agent_id: str) -> dict[str, Any] | None:
        """The newest stored status that opened a call (its `call` object), if any."""
        row = self._db.execute(
            "SELECT payload FROM status_events WHERE agent_id=? AND state='on_call' "
            "AND payload LIKE '%\"call\"%' ORDER BY received_at DESC, seq DESC LIMIT 1",
            (agent_id,),
        ).fetchone()
        return None if row is None else json.loads(row["payload"])

    # -- alerts --------------------------------------------------------------------------------

    def save_alert(self, alert: Alert) -> None:
        self._db.execute(
            "INSERT INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE "
            "SET duration_s=COALESCE(excluded.duration_s, duration_s), detail=excluded.detail, "
            "acked_by=COALESCE(acked_by, excluded.acked_by), "
            "acked_at=COALESCE(acked_at, excluded.acked_at)",
            (alert.id, alert.kind.value, alert.agent_id, alert.call_id, alert.severity.value,
             alert.started_at, alert.offset_s, alert.duration_s, json.dumps(alert.detail),
             alert.acked_by, alert.acked_at),
        )

    def ack_alert(self, alert_id: str, by: str) -> Alert | None:
        self._db.execute(
            "UPDATE alerts SET acked_by=?, acked_at=? WHERE id=? AND acked_by IS NULL",
            (by, time.time(), alert_id),
        )
        return self.alert(alert_id)

    def alert(self, alert_id: str) -> Alert | None:
        row = self._db.execute("SELECT * FROM alerts WHERE id=?", (alert_id,)).fetchone()
        return None if row is None else _alert(row)

    def alerts(self, *, call_id: str | None = None, agent_id: str | None = None,
               since: float | None = None, kind: str | None = None, unacked: bool = False,
               limit: int = 500) -> list[Alert]:
        where, args = [], []
        for column, value in (("call_id", call_id), ("agent_id", agent_id), ("kind", kind)):
            if value is not None:
                where.append(f"{column}=?")
                args.append(value)
        if since is not None:
            where.append("started_at >= ?")
            args.append(since)
        if unacked:
            where.append("acked_by IS NULL")
        sql = "SELECT * FROM alerts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC, id LIMIT ?"
        return [_alert(r) for r in self._db.execute(sql, (*args, limit))]

    # -- monitoring audit trail -------------------------------------------------------------

    def monitor_started(self, row: dict[str, Any]) -> None:
        names = list(row)
        self._db.execute(f"INSERT INTO monitor_sessions ({', '.join(names)}) VALUES "
                         f"({', '.join('?' * len(names))})", [row[n] for n in names])
        self._changed("monitor_sessions", row["id"])

    def monitor_ended(self, session_id: str, ended_at: float, end_reason: str) -> None:
        self._db.execute("UPDATE monitor_sessions SET ended_at=?, end_reason=? "
                         "WHERE id=? AND ended_at IS NULL", (ended_at, end_reason, session_id))
        self._changed("monitor_sessions", session_id)

    def open_monitor_sessions(self, hub: str | None = None) -> list[dict[str, Any]]:
        """Sessions not ended yet (of one hub, or all)."""
        sql, args = "SELECT * FROM monitor_sessions WHERE ended_at IS NULL", []
        if hub is not None:
            sql += " AND hub=?"
            args.append(hub)
        return [dict(r) for r in self._db.execute(sql, args)]

    def monitor_session(self, session_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM monitor_sessions WHERE id=?",
                               (session_id,)).fetchone()
        return None if row is None else dict(row)

    def monitor_sessions(self, *, since: float = 0.0, agent_id: str | None = None,
                         limit: int = 500) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM monitor_sessions WHERE started_at >= ?", [since]
        if agent_id is not None:
            sql += " AND agent_id=?"
            args.append(agent_id)
        sql += " ORDER BY started_at DESC LIMIT ?"
        return [dict(r) for r in self._db.execute(sql, [*args, limit])]


def _alert(row: sqlite3.Row) -> Alert:
    return Alert(
        id=row["id"], kind=AlertKind(row["kind"]), agent_id=row["agent_id"],
        call_id=row["call_id"], severity=Severity(row["severity"]),
        started_at=row["started_at"], offset_s=row["offset_s"], duration_s=row["duration_s"],
        detail=json.loads(row["detail"]), acked_by=row["acked_by"], acked_at=row["acked_at"],
    )
