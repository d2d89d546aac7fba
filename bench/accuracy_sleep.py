"""Accuracy on callables whose cost does not depend on the CPU's speed: time.sleep(d).

The CPU-bound callables of bench/accuracy.py are at the mercy of this machine's speed phases
(30% apart), so their 1% comparison is at the noise limit. A sleep costs the same whatever the
CPU does: the plugin's median (pytest_llmperf.measure.run, default settings) should match a plain
perf_counter loop's median. Plain and plugin alternate, 7 pairs per duration.

    python bench/accuracy_sleep.py
"""

from __future__ import annotations

import statistics
import time

from pytest_llmperf import measure


def plain_median(fn, arg, rounds: int) -> float:
    fn(arg)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    print(f"{'sleep':>8} {'plain median':>14} {'plugin median':>14} {'difference':>11}  per pair")
    worst = 0.0
    for delay in (0.0005, 0.002, 0.01):
        diffs, plains, plugins = [], [], []
        for _ in range(7):
            p = plain_median(time.sleep, delay, rounds=max(20, int(0.5 / delay)))
            m = statistics.median(measure.run(time.sleep, (delay,)).samples)
            plains.append(p)
            plugins.append(m)
            diffs.append(m / p - 1.0)
        d = statistics.median(diffs)
        worst = max(worst, abs(d))
        print(f"{delay * 1e3:>6.1f}ms {statistics.median(plains) * 1e6:>12.1f}us {statistics.median(plugins) * 1e6:>12.1f}us "
              f"{d * 100:>+10.2f}%  [" + ", ".join(f"{x * 100:+.2f}%" for x in diffs) + "]")
    print(("PASS" if worst <= 0.01 else "FAIL") + f"  every median within 1% of the plain loop's (worst {worst * 100:.2f}%)")


if __name__ == "__main__":
    main()
