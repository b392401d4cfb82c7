"""`mediasvc users list|add|passwd|remove`: the users of the web console ([web] users file).

A password is read from standard input when it is not a terminal (one line), else asked for
twice without echo. Sessions of a user whose password changed, or who was removed, end at
their next request.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from mediasvc.cli.serve import add_config_args
from mediasvc.errors import UsageError
from mediasvc.service.config import load_service_config


def register(sub: Any) -> None:
    parser = sub.add_parser("users", help="users of the web console (viewer, operator)")
    usub = parser.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    p = usub.add_parser("list", help="the users and their roles")
    add_config_args(p)
    for name, text in (("add", "add a user (password from stdin or asked for)"),
                       ("passwd", "change a user's password (and role with --role)"),
                       ("remove", "remove a user")):
        p = usub.add_parser(name, help=text)
        add_config_args(p)
        p.add_argument("name")
        if name != "remove":
            p.add_argument("--role", choices=("viewer", "operator"),
                           default="viewer" if name == "add" else None)
    parser.set_defaults(func=run)


def _password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise UsageError("the two passwords differ")
    return first


def run(args: argparse.Namespace) -> int:
    from mediasvc.web.auth import read_users, set_user, write_users

    cfg = load_service_config(args.config, args.root)
    path = cfg.web.users
    users = read_users(path) if path.exists() else {}
    cmd = args.users_command
    if cmd == "list":
        for u in sorted(users.values(), key=lambda u: u.name):
            print(f"{u.name}\t{u.role}")
        return 0
    if cmd == "remove":
        if args.name not in users:
            raise UsageError(f"no user {args.name!r} in {path}")
        del users[args.name]
        write_users(path, users)
        print(f"removed {args.name} from {path}")
        return 0
    if cmd == "add" and args.name in users:
        raise UsageError(f"user {args.name!r} exists (change the password: users passwd)")
    if cmd == "passwd" and args.name not in users:
        raise UsageError(f"no user {args.name!r} in {path} (add one: users add)")
    user = set_user(path, args.name, args.role, _password())
    print(f"{'added' if cmd == 'add' else 'changed'} {user.name} ({user.role}) in {path}")
    return 0
