"""Progress lines for long loops: rate and ETA at a sane interval, and a final total."""

import sys
import time


class Progress:
    """Print `<what> i/n (x unit/s, ETA m:ss)` at most every `interval` seconds, and a total line on `done()`."""

    def __init__(self, what: str, total: int, unit: str = "it", interval: float = 10.0, stream=None):
        self.what, self.total, self.unit, self.interval = what, total, unit, interval
        self.stream = stream if stream is not None else sys.stderr
        self.start = self.last = time.perf_counter()
        self.count = 0

    def update(self, n: int = 1, extra: str = "") -> None:
        self.count += n
        now = time.perf_counter()
        if now - self.last >= self.interval or self.count == n:
            self.last = now
            rate = self.count / max(now - self.start, 1e-9)
            eta = (self.total - self.count) / rate if rate > 0 else float("inf")
            print(
                f"{self.what} {self.count}/{self.total} ({rate:.2f} {self.unit}/s, ETA {_fmt(eta)}){extra}",
                file=self.stream,
                flush=True,
            )

    def done(self, extra: str = "") -> float:
        elapsed = time.perf_counter() - self.start
        rate = self.count / max(elapsed, 1e-9)
        print(
            f"{self.what} done: {self.count} {self.unit} in {_fmt(elapsed)} ({rate:.2f} {self.unit}/s){extra}",
            file=self.stream,
            flush=True,
        )
        return elapsed


def _fmt(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"
