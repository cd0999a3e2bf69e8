"""Account administration for hospital IT, on the database the app uses ($CXR_DATABASE_URL).

    python -m records.users add NAME --role radiologist|admin   (password from stdin)
    python -m records.users add EMAIL --role radiologist --sso  (single sign-on only)
    python -m records.users list
    python -m records.users disable NAME
    python -m records.users reset-password NAME                  (password from stdin)
    python -m records.users unlock NAME                          (lift sign-in delays)

Each change is written to the audit trail as done by the command line.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from records.accounts import (
    CLI_ACTOR,
    AccountError,
    add_account,
    list_accounts,
    reset_password,
    set_disabled,
    unlock,
)
from records.db import open_database
from records.roles import ROLES
from records.settings import load_settings


def read_password() -> str:
    """The first line of stdin: `echo "$PW" | ...` or typed at a prompt, never an argument."""
    if sys.stdin.isatty():
        return getpass.getpass("Password: ")
    return sys.stdin.readline().rstrip("\r\n")


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="python -m records.users", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = cli.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="create an account (password from stdin)")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--sso", action="store_true",
                     help="no password: the person signs in through single sign-on as NAME "
                     "(the e-mail the identity provider vouches for)")
    commands.add_parser("list", help="list the accounts")
    commands.add_parser("disable", help="disable an account").add_argument("name")
    commands.add_parser("enable", help="enable a disabled account").add_argument("name")
    commands.add_parser("reset-password", help="set a new password (from stdin) and unlock"
                        ).add_argument("name")
    commands.add_parser("unlock", help="lift the sign-in delays of an account").add_argument(
        "name")
    return cli


def main(argv: list[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    settings = load_settings()
    database = open_database(settings.database_url, settings.sqlite_busy_seconds)
    try:
        if arguments.command == "add":
            password = None if arguments.sso else read_password()
            add_account(database, CLI_ACTOR, arguments.name, password, arguments.role)
            print(f"Added {arguments.role} {arguments.name}.")
        elif arguments.command == "list":
            for row in list_accounts(database):
                state = "disabled" if row.disabled else "active"
                print(f"{row.username}\t{row.role}\t{state}\tcreated {row.created_at:%Y-%m-%d}")
        elif arguments.command in ("disable", "enable"):
            set_disabled(database, CLI_ACTOR, arguments.name, arguments.command == "disable")
            print(f"{arguments.command.capitalize()}d {arguments.name}.")
        elif arguments.command == "unlock":
            unlock(database, CLI_ACTOR, arguments.name)
            print(f"Lifted every sign-in delay of {arguments.name}.")
        else:
            reset_password(database, CLI_ACTOR, arguments.name, read_password())
            print(f"New password set for {arguments.name}; any lockout is lifted.")
    except AccountError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
