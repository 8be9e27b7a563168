"""The analyst's solve with full inference against statsmodels OLS on the pooled plaintext.

Side by side in one run, on the same in-memory data, at each feature count:
  * hefed: ``hefed.solve(stats)`` then the full inference record (``model.inference()`` and
    params, bse, tvalues, pvalues, conf_int(), rsquared, fvalue, llf, aic, bic, condition_number),
    from exact statistics built once outside the timing (``statistics_from_arrays``);
  * statsmodels: ``sm.OLS(y, sm.add_constant(X)).fit()`` and the same attributes (the fit and
    the summary quantities, not the summary() text), with one and with two BLAS threads
    (threadpoolctl).

The runs are interleaved (each repeat runs every path once, the order alternating between
repeats) and the best and median of each path are reported; the ratio is hefed's best over the
best statsmodels fit (one or two threads, whichever is faster).

Each hefed solve runs in a worker process (one per feature count, its statistics built and a
small warm-up solve run before any timing, as statsmodels gets a warm-up fit) and is stopped
after ``--timeout`` seconds: it is then reported as "> timeout" and the remaining repeats at
that size are skipped.

The data are emission-like synthetic columns on different scales (pressures and temperatures
around 1e3, flows around 1e1, ratios around 1e-2, 0/1 plant indicators), a few of them
strongly correlated through a shared load factor, rounded to sensor precision, plus noise.

Also reported: the largest relative difference of params and bse between hefed and statsmodels
(statsmodels solves in float64, so this is informational), and the size of
``json.dumps(model.to_dict())`` in bytes.

Usage:  python benchmarks/bench_solve.py [--features 20,60,100,300] [--rows 20000] [--repeat 3] [--seed 0]
                                         [--timeout 300]
To measure another version of the library, put an export of its ``hefed`` package first on the path:
        git archive <commit> hefed | tar -x -C /tmp/old && PYTHONPATH=/tmp/old python benchmarks/bench_solve.py
(the table's header names the hefed package that was measured).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np

#: How long a worker may take to build its statistics before the first solve (not timed).
_SETUP_TIMEOUT = 600.0


def make_data(rows: int, features: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Emission-like columns: the same ``(rows, features, seed)`` give the same arrays in every process."""
    rng = np.random.default_rng(seed)
    load = rng.normal(size=rows)  # the shared driver of the correlated columns (turbine load)
    ambient = rng.normal(size=rows)  # ambient conditions
    # (name, location, scale, decimals, correlation with load): cycled through to reach `features`.
    templates = [
        ("amb_pressure", 1013.0, 6.0, 2, 0.0),
        ("inlet_temp", 1080.0, 15.0, 2, 0.9),  # correlated with load
        ("after_temp", 550.0, 8.0, 2, -0.7),
        ("exhaust_dp", 25.0, 4.0, 3, 0.5),
        ("amb_temp", 17.0, 7.0, 2, 0.0),
        ("humidity", 78.0, 14.0, 1, 0.0),
        ("o2_ratio", 0.14, 0.01, 5, 0.3),  # around 1e-2
        ("fuel_ratio", 0.045, 0.004, 6, 0.95),  # around 1e-2, strongly correlated with load
        ("energy_yield", 134.0, 15.0, 2, 0.97),  # strongly correlated with load
        ("plant", 0.0, 0.0, 0, 0.0),  # 0/1 indicator
    ]
    X = np.empty((rows, features))
    names = []
    for j in range(features):
        name, loc, scale, decimals, rho = templates[j % len(templates)]
        names.append(f"{name}_{j:03d}")
        if name == "plant":
            X[:, j] = (rng.random(rows) < rng.uniform(0.1, 0.5)).astype(np.float64)
            continue
        base = ambient if name.startswith("amb") else load
        own = rng.normal(size=rows)
        shift = loc * rng.uniform(-0.05, 0.05)  # copies of a template differ a little
        X[:, j] = np.round(loc + shift + scale * (rho * base + math.sqrt(1 - rho * rho) * own), decimals)
    spread = X.std(axis=0)
    spread[spread == 0] = 1.0
    beta = rng.normal(size=features) / spread  # every column moves the target by a similar amount
    y = np.round(55.0 + (X - X.mean(axis=0)) @ beta + 3.0 * load + rng.normal(scale=2.0, size=rows), 4)
    return X, y, names


def touch(result: Any) -> list[Any]:
    """Force every inference quantity the benchmark times (hefed and statsmodels share these names)."""
    return [result.params, result.bse, result.tvalues, result.pvalues, result.conf_int(), result.rsquared,
            result.fvalue, result.llf, result.aic, result.bic, result.condition_number]


# --- the hefed worker (a separate process, so a slow solve can be stopped) -------------------------

def worker(rows: int, features: int, seed: int) -> None:
    """Build the statistics, say "ready", then time one solve + inference per "go" line on stdin."""
    import scipy.stats  # noqa: F401  (imported before any timing, as in the statsmodels process)

    import hefed
    from hefed.stats import statistics_from_arrays

    small = statistics_from_arrays(*make_data(200, 3, seed), "nox")
    touch(hefed.solve(small).inference())  # warm-up: the first solve in a process pays for lazy imports
    X, y, names = make_data(rows, features, seed)
    stats = statistics_from_arrays(X, y, names, "nox")
    out = sys.stdout
    out.write(json.dumps({"ready": True, "hefed": os.path.dirname(hefed.__file__)}) + "\n")
    out.flush()
    first = True
    for line in sys.stdin:
        if line.strip() != "go":
            break
        try:
            start = time.perf_counter()
            model = hefed.solve(stats)
            r = model.inference()
            touch(r)
            seconds = time.perf_counter() - start
        except Exception as exc:  # reported by the parent, which stops
            out.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
            out.flush()
            return
        reply: dict[str, Any] = {"seconds": seconds}
        if first:  # outside the timing: what the agreement and the file size need
            reply["params"] = [float(v) for v in r.params]
            reply["bse"] = [float(v) for v in r.bse]
            reply["json_bytes"] = len(json.dumps(model.to_dict()))
            first = False
        out.write(json.dumps(reply) + "\n")
        out.flush()


class Worker:
    """The parent's handle on one worker process."""

    def __init__(self, rows: int, features: int, seed: int) -> None:
        command = [sys.executable, os.path.abspath(__file__), "--worker",
                   "--rows", str(rows), "--features", str(features), "--seed", str(seed)]
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        ready = self._read(_SETUP_TIMEOUT)
        if ready is None or not ready.get("ready"):
            self.close()
            raise RuntimeError(f"the hefed worker for {features} features did not start")
        self.location = ready["hefed"]

    def _read(self, timeout: float) -> dict[str, Any] | None:
        assert self.proc.stdout is not None
        readable, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not readable:
            return None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the hefed worker exited without a reply")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def solve(self, timeout: float) -> dict[str, Any] | None:
        """One timed solve + inference, or None when it took longer than ``timeout`` (the worker is then stopped)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        reply = self._read(timeout)
        if reply is None:
            self.close()
        elif "error" in reply:
            self.close()
            raise RuntimeError(f"hefed failed: {reply['error']}")
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


# --- the parent ----------------------------------------------------------------------------------

def fit_statsmodels(X: np.ndarray, y: np.ndarray, threads: int) -> tuple[float, Any]:
    import statsmodels.api as sm
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads, user_api="blas"):
        start = time.perf_counter()
        result = sm.OLS(y, sm.add_constant(X, has_constant="add")).fit()
        touch(result)
        return time.perf_counter() - start, result


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    scale = np.maximum(np.abs(b), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(a - b) / scale))


def seconds_text(value: float, timeout: float) -> str:
    return f"> {timeout:g}" if math.isinf(value) else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", default="20,60,100,300", help="comma-separated feature counts")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each path; best and median reported")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one hefed solve may take")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.rows, int(args.features), args.seed)
        return
    sizes = [int(f) for f in args.features.split(",") if f.strip()]

    rows_out = []
    location = "?"
    for d in sizes:
        X, y, _ = make_data(args.rows, d, args.seed)
        fit_statsmodels(X, y, 1)  # warm-up: statsmodels' first fit pays for lazy imports
        runs: dict[str, list[float]] = {"hefed": [], "sm1": [], "sm2": []}
        sm_ref: Any = None
        first: dict[str, Any] | None = None
        started = Worker(args.rows, d, args.seed)
        location = started.location
        work: Worker | None = started
        try:
            for i in range(args.repeat):
                order = ["sm1", "sm2", "hefed"] if i % 2 == 0 else ["hefed", "sm2", "sm1"]
                for path in order:
                    if path == "hefed":
                        if work is None:
                            continue  # timed out earlier at this size
                        reply = work.solve(args.timeout)
                        if reply is None:
                            runs["hefed"].append(math.inf)
                            work = None
                            continue
                        runs["hefed"].append(reply["seconds"])
                        first = first or reply
                    else:
                        seconds, sm_ref = fit_statsmodels(X, y, 1 if path == "sm1" else 2)
                        runs[path].append(seconds)
        finally:
            if work is not None:
                work.close()

        best = {path: min(t) for path, t in runs.items()}
        median = {path: statistics.median(t) for path, t in runs.items()}
        sm_best = min(best["sm1"], best["sm2"])
        if first is not None:
            d_params = f"{rel_diff(np.array(first['params']), np.asarray(sm_ref.params)):.1e}"
            d_bse = f"{rel_diff(np.array(first['bse']), np.asarray(sm_ref.bse)):.1e}"
            size = f"{first['json_bytes']:,}"
        else:
            d_params = d_bse = size = "n/a"
        ratio = "n/a" if math.isinf(best["hefed"]) else f"{best['hefed'] / sm_best:.1f}"
        rows_out.append([
            str(d), seconds_text(best["hefed"], args.timeout), seconds_text(median["hefed"], args.timeout),
            f"{best['sm1']:.3f}", f"{median['sm1']:.3f}", f"{best['sm2']:.3f}", f"{median['sm2']:.3f}",
            ratio, d_params, d_bse, size,
        ])
        print(f"  {d} features done: hefed runs {', '.join(seconds_text(t, args.timeout) for t in runs['hefed'])}",
              file=sys.stderr, flush=True)

    print(f"{args.rows} rows, {args.repeat} interleaved repeat(s), seed {args.seed}, timeout {args.timeout:g} s, "
          f"{os.cpu_count()} cores; hefed from {location}")
    print()
    header = ["features", "hefed best s", "hefed median s", "sm 1-thr best s", "sm 1-thr median s",
              "sm 2-thr best s", "sm 2-thr median s", "hefed / best sm", "max rel diff params",
              "max rel diff bse", "model.json bytes"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---:" for _ in header) + "|")
    for row in rows_out:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
