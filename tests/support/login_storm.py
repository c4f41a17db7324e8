"""A storm of wrong admin logins from another process (so the measuring process stays quiet).

python -m tests.support.login_storm PORT COUNT -> prints {"answers": [...], "refused_busy": n}
Each of COUNT clients guesses from its own address; one refused as busy (429) waits about the
Retry-After it was given and guesses again from a new address, until its guess was checked.
"""

from gevent import monkey

monkey.patch_all()

import http.client  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402


def wrong_login(port: int, address: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request(
            "POST",
            "/admin/login",
            body="password=not-the-password",
            headers={"Content-Type": "application/x-www-form-urlencoded", "X-Forwarded-For": address},
        )
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def main() -> int:
    port, count = int(sys.argv[1]), int(sys.argv[2])
    addresses = (f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}" for n in itertools.count(1))
    answers, refused_busy = [], [0]

    def client():
        while True:
            status = wrong_login(port, next(addresses))
            if status != 429:
                answers.append(status)
                return
            refused_busy[0] += 1
            gevent.sleep(random.uniform(1.0, 3.0))  # after the Retry-After (1 s) it was given

    gevent.joinall([gevent.spawn(client) for _ in range(count)], raise_error=True)
    print(json.dumps({"answers": answers, "refused_busy": refused_busy[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
