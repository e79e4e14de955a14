"""`floorwatch` command line: run the hub, run the demo, manage accounts in the hub's store."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from server.config import ConfigError, Settings, load_settings
from server.monitor import PERMISSIONS, ROLE_DEFAULTS, parse_permissions
from server.store import Store, StoreError


def _settings(args: argparse.Namespace) -> Settings:
    server: dict[str, object] = {}
    for key in ("host", "port", "data_dir"):
        value = getattr(args, key, None)
        if value is not None:
            server[key] = str(value) if key == "data_dir" else value
    redis_url = getattr(args, "serve_redis", None) or args.redis
    redis = {"url": redis_url} if redis_url else {}
    return load_settings(args.config, os.environ, server=server, redis=redis)


@contextlib.contextmanager
def _store(args: argparse.Namespace) -> Iterator[Store]:
    """The hub's store; with Redis configured, account changes are shared with every hub."""
    settings = _settings(args)
    store = Store(settings.server.data_dir / "floorwatch.db")
    changes: list[tuple[str, dict, bool]] = []
    store.on_row_change(lambda table, row, deleted: changes.append((table, row, deleted)))
    try:
        yield store
    finally:
        store.close()
    if changes and settings.redis.url:
        from redis.exceptions import RedisError

        from server.bus_redis import publish_rows

        try:
            publish_rows(settings.redis.url, settings.redis.key_prefix, changes)
        except (RedisError, OSError) as exc:
            raise SystemExit(
                f"floorwatch: saved here, but not shared through Redis: {exc}") from None


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise SystemExit("passwords differ")
    return first


def cmd_serve(args: argparse.Namespace) -> None:
    from server.app import configure_logging, run

    settings = _settings(args)
    configure_logging(settings.server.log_level)
    run(settings)


def cmd_demo(args: argparse.Namespace) -> None:
    from server.demo import run_demo

    run_demo(args)


def _permissions(text: str) -> tuple[str, ...]:
    try:
        return parse_permissions(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_add_user(args: argparse.Namespace) -> None:
    password = _password(args)
    with _store(args) as store:
        user = store.add_user(args.username, password, args.role, args.name or "",
                              permissions=args.can)
    print(f"created {user.role} {user.username} "
          f"(may: {', '.join(sorted(user.permissions)) or 'watch the wall only'})")


def cmd_grant(args: argparse.Namespace) -> None:
    """Set exactly which monitoring permissions a user holds (an empty list removes all)."""
    with _store(args) as store:
        store.set_permissions(args.username, args.permissions)
    print(f"{args.username} may now: {', '.join(args.permissions) or 'watch the wall only'}")


def cmd_set_password(args: argparse.Namespace) -> None:
    password = _password(args)
    with _store(args) as store:
        store.set_password(args.username, password)
    print(f"password of {args.username} changed")


def cmd_add_agent(args: argparse.Namespace) -> None:
    with _store(args) as store:
        token = store.add_agent(args.agent_id, args.name or args.agent_id, args.team)
    print(f"agent {args.agent_id} (team {args.team}); its token, shown once:")
    print(token)


def cmd_add_api_token(args: argparse.Namespace) -> None:
    with _store(args) as store:
        token = store.add_api_token(args.name)
    print(f"API token {args.name!r}, shown once (use as 'Authorization: Bearer <token>'):")
    print(token)


def cmd_list(args: argparse.Namespace) -> None:
    with _store(args) as store:
        for user in store.users():
            print(f"user   {user.username:<20} {user.role:<11} {user.display_name:<20} "
                  f"{','.join(sorted(user.permissions)) or '-'}")
        for agent in store.agents():
            print(f"agent  {agent.agent_id:<20} {agent.team:<11} {agent.name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="floorwatch", description="floorwatch hub")
    parser.add_argument("--config", type=Path, default=os.environ.get("FLOORWATCH_CONFIG"),
                        help="TOML configuration file (default: $FLOORWATCH_CONFIG)")
    parser.add_argument("--data-dir", type=Path, help="overrides server.data_dir")
    parser.add_argument("--redis", metavar="URL",
                        help="share the floor through Redis (overrides redis.url)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the hub")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--redis", dest="serve_redis", metavar="URL",
                       help="several hubs serve one floor through this Redis")
    serve.set_defaults(func=cmd_serve)

    demo = sub.add_parser("demo", help="hub + a simulated floor, no other service needed")
    demo.add_argument("--agents", type=int, default=24)
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8740)
    demo.add_argument("--seed", type=int, default=1)
    demo.set_defaults(func=cmd_demo)

    for name, role, help_text in (("create-admin", "admin", "create an administrator"),
                                  ("add-supervisor", "supervisor", "create a supervisor")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("username")
        p.add_argument("--name", help="display name")
        p.add_argument("--password-stdin", action="store_true",
                       help="read the password from standard input")
        p.add_argument("--can", type=_permissions, metavar="PERMS",
                       help=f"comma-separated, of {', '.join(PERMISSIONS)} (default for the "
                            f"role: {','.join(ROLE_DEFAULTS[role])})")
        p.set_defaults(func=cmd_add_user, role=role)

    grant = sub.add_parser("grant", help="set a user's monitoring permissions "
                                         f"({', '.join(PERMISSIONS)})")
    grant.add_argument("username")
    grant.add_argument("permissions", type=_permissions,
                       help="comma-separated, e.g. listen,whisper; '' removes all")
    grant.set_defaults(func=cmd_grant)

    pw = sub.add_parser("set-password", help="change a user's password")
    pw.add_argument("username")
    pw.add_argument("--password-stdin", action="store_true")
    pw.set_defaults(func=cmd_set_password)

    agent = sub.add_parser("add-agent", help="create an agent (or renew its token); prints it")
    agent.add_argument("agent_id")
    agent.add_argument("--name")
    agent.add_argument("--team", default="default")
    agent.set_defaults(func=cmd_add_agent)

    token = sub.add_parser("add-api-token", help="create an API token for scripts; prints it")
    token.add_argument("name")
    token.set_defaults(func=cmd_add_api_token)

    sub.add_parser("list", help="list users and agents").set_defaults(func=cmd_list)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except ConfigError as exc:
        raise SystemExit(f"floorwatch: configuration error: {exc}") from None
    except StoreError as exc:
        raise SystemExit(f"floorwatch: {exc}") from None


if __name__ == "__main__":
    main()
