"""Sum var/bench/route-cpu-*.json (written by bench/route_cpu.conf.py) into a per-route CPU table.

rm -f var/bench/route-cpu-*.json
BENCH_ROUTE_CPU=1 BENCH_QUICK=1 BENCH_QUICK_STEPS=500 make bench   # then:
python bench/route_cpu.py
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

STATE = Path(__file__).resolve().parent.parent / "var" / "bench"


def main(state: Path = STATE) -> None:
    routes = collections.defaultdict(lambda: [0, 0.0])
    total = hub = 0.0
    for path in Path(state).glob("route-cpu-*.json"):
        figures = json.loads(path.read_text())
        total += figures["total_cpu_s"]
        hub += figures["hub_cpu_s"]
        for key, (count, cpu) in figures["routes"].items():
            routes[key][0] += count
            routes[key][1] += cpu
    count = sum(n for n, _ in routes.values())
    in_requests = sum(c for _, c in routes.values())
    if not count:
        raise SystemExit("no route-cpu files: run the bench with BENCH_ROUTE_CPU=1 first")
    print(
        f"workers' CPU {total:.1f} s: in requests {in_requests:.1f} s ({in_requests / total:.0%}), "
        f"event loop {hub:.1f} s ({hub / total:.0%}); {count} requests, "
        f"{in_requests / count * 1000:.2f} ms each in the request, {total / count * 1000:.2f} ms all in"
    )
    print("| requests | CPU s | share | ms each | method route status admission |")
    print("| ---: | ---: | ---: | ---: | --- |")
    for key, (n, cpu) in sorted(routes.items(), key=lambda item: -item[1][1])[:20]:
        print(f"| {n} | {cpu:.2f} | {cpu / in_requests:.1%} | {cpu / n * 1000:.2f} | `{key}` |")


if __name__ == "__main__":
    main()
