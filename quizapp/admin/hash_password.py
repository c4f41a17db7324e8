"""Print a werkzeug password hash for ADMIN_PASSWORD_HASH: `python -m quizapp.admin.hash_password`."""

from __future__ import annotations

import getpass
import sys

from werkzeug.security import generate_password_hash

MIN_LENGTH = 12


def main() -> int:
    if sys.stdin.isatty():
        password = getpass.getpass("Admin password: ")
        if getpass.getpass("Again: ") != password:
            print("The two passwords differ.", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < MIN_LENGTH:
        print(f"Use at least {MIN_LENGTH} characters.", file=sys.stderr)
        return 1
    print(generate_password_hash(password))
    return 0


if __name__ == "__main__":
    sys.exit(main())
