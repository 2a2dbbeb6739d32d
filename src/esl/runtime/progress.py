"""Progress lines for long loops (rate and ETA at a sane interval, and a final total) and the training curve."""

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


class MetricsLog:
    """The training curve behind `metrics.csv`: one row every `every` iterations (and at the last), holding the
    iteration, the learning rate of the first parameter group (the backbone's), each loss term's mean over the
    rows' interval and the images per second (both domains, all processes). At most ~1000 rows whatever the length.

    Kept in the resumable state, so a resumed run's curve is the whole run's (its images/s are the resumed attempt's).
    """

    def __init__(self, iters: int, images_per_iter: int, every: int | None = None):
        self.iters, self.images_per_iter = int(iters), int(images_per_iter)
        self.every = int(every) if every else max(1, -(-self.iters // 1000))
        self.rows: list[dict] = []
        self._sums: dict[str, float] = {}
        self._n = 0
        self._t0 = time.perf_counter()

    def add(self, iteration: int, lr: float, terms: dict) -> None:
        """Record the terms of `iteration` (1-based: the iterations done)."""
        for k, v in terms.items():
            self._sums[k] = self._sums.get(k, 0.0) + float(v)
        self._n += 1
        if iteration % self.every and iteration != self.iters:
            return
        now = time.perf_counter()
        row = {"iteration": iteration, "lr": lr}
        row |= {f"loss_{k}": v / self._n for k, v in self._sums.items()}
        row["images_per_s"] = self._n * self.images_per_iter / max(now - self._t0, 1e-9)
        self.rows.append(row)
        self._sums, self._n, self._t0 = {}, 0, now

    def state_dict(self) -> dict:
        return {"rows": list(self.rows), "sums": dict(self._sums), "n": self._n}

    def load_state_dict(self, state: dict) -> None:
        self.rows, self._sums, self._n = list(state["rows"]), dict(state["sums"]), int(state["n"])
        self._t0 = time.perf_counter()
