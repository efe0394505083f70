#!/usr/bin/python3
"""Shares and per-call costs from a `perf record --call-graph` profile of one process.

  bench/perf_shares.py OUT.data CALLS [HZ=2000] [--match REGEX ...]

Prints the samples, then for each leaf library (DSO) the sampled CPU per call in µs (samples /
HZ / CALLS: with `perf record -F HZ -p PID`, one sample per 1/HZ s of on-CPU time of the
process), and for each --match REGEX the inclusive share: the fraction of samples whose call
chain has a frame matching it (e.g. 'UsageStore::Record'). CALLS: the calls the profiled
interval covered (bench/profile_call.sh: the driver's rate times 3).
"""
import argparse
import collections
import re
import subprocess


def samples(path):
    """Each sample's frames, leaf first, as (symbol, dso)."""
    perf = subprocess.run(["perf", "script", "-i", path, "-F", "comm,ip,sym,dso"],
                          capture_output=True, text=True, errors="replace", check=True)
    frames, started = [], False
    for line in perf.stdout.splitlines() + [""]:
        if not line.strip():
            if started:
                yield frames
            frames, started = [], False
        elif not line[0].isspace():
            started = True
        else:
            parts = line.strip().split(None, 1)
            text = parts[1] if len(parts) > 1 else "?"
            m = re.match(r"(.*?)\s*\(([^()]*)\)$", text)
            sym, dso = (m.group(1), m.group(2).rsplit("/", 1)[-1]) if m else (text, "?")
            frames.append((re.sub(r"\+0x[0-9a-f]+$", "", sym), dso))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("calls", type=float)
    ap.add_argument("hz", type=float, nargs="?", default=2000)
    ap.add_argument("--match", action="append", default=[])
    args = ap.parse_args()
    total, by_dso, matched = 0, collections.Counter(), collections.Counter()
    for frames in samples(args.data):
        total += 1
        by_dso[frames[0][1] if frames else "?"] += 1
        chain = "\n".join(sym for sym, _ in frames)
        for pattern in args.match:
            if re.search(pattern, chain):
                matched[pattern] += 1
    if total == 0:
        raise SystemExit("no samples")
    per_call = 1e6 / args.hz / args.calls
    print(f"samples={total} cpu_us_per_call={total * per_call:.1f}")
    for dso, n in by_dso.most_common(12):
        print(f"  {dso:45s} {n * per_call:7.2f} µs/call")
    for pattern in args.match:
        print(f"  {100 * matched[pattern] / total:6.2f}%  {pattern}")


if __name__ == "__main__":
    main()
