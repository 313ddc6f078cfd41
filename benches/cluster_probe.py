#!/usr/bin/env python3
"""benches/cluster_probe.py: summarise benches/cluster_probe.sh's samples of one run.

Usage: cluster_probe.py PROBE_FILE [DURATION [AFTER]]
The measured window is taken as the DURATION (5) seconds that end AFTER (2) seconds before
the last sample in which a herald-bench process was alive (herald-bench publishes for
warm-up + DURATION, then waits 2 s for the last deliveries). Prints, over that window:
the kernel queues (mean and max of the samples), the machine's runnable tasks, per
process what its threads ran and how long they waited runnable on a run queue
(schedstat: summed over a process's threads, time it had work and no core), and, by
Little's law, the mean time a byte delivered to herald-bench waits in its receive queues
(mean sub_recvq over the rate sub_rcvd grows at).
"""
import collections
import statistics
import sys


def main():
    path = sys.argv[1]
    duration = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
    after = float(sys.argv[3]) if len(sys.argv) > 3 else 2.0
    samples = []  # (t, {key: value}, {pid: (comm, threads, cpu ns, wait ns, slices)})
    for line in open(path):
        f = line.split()
        if not f:
            continue
        if f[0].startswith("t="):
            kv = dict(x.split("=", 1) for x in f if "=" in x)
            samples.append((float(kv.pop("t")), {k: float(v or 0) for k, v in kv.items()}, {}))
        elif f[0] == "task" and samples:
            comm, pid, threads = f[1], int(f[2]), int(f[3])
            cpu, wait, slices = (int(float(x)) for x in f[4:7])
            samples[-1][2][pid] = (comm, threads, cpu, wait, slices)
    bench = [t for t, _, procs in samples if any(p[0] == "herald-bench" for p in procs.values())]
    if not bench:
        sys.exit(f"{path}: no sample with herald-bench running")
    end = bench[-1] - after
    start = end - duration
    win = [s for s in samples if start <= s[0] <= end]
    if len(win) < 2:
        sys.exit(f"{path}: fewer than 2 samples in the window")
    span = win[-1][0] - win[0][0]
    print(f"{path}: {len(win)} samples over {span:.2f} s")
    for key in ["run", "sub_recvq", "sub_sendq", "bp_recvq", "bp_sendq", "pub_recvq"]:
        xs = [s[1].get(key, 0) for s in win]
        print(f"  {key:10} mean {statistics.mean(xs):>14,.0f}  max {max(xs):>14,.0f}")
    rcvd = (win[-1][1].get("sub_rcvd", 0) - win[0][1].get("sub_rcvd", 0)) / span
    if rcvd > 0:
        recvq = statistics.mean(s[1].get("sub_recvq", 0) for s in win)
        print(f"  herald-bench's sockets received {rcvd / 1e6:.1f} MB/s; mean wait of a byte in its "
              f"receive queues (Little's law) {recvq / rcvd * 1000:,.0f} ms")
    first, last = win[0][2], win[-1][2]
    by = collections.defaultdict(lambda: [0, 0, 0, 0, 0])  # comm: procs, threads, cpu, wait, slices
    print(f"  {'process':24} {'threads':>7} {'cpu s':>7} {'waited s':>8} {'waited/cpu':>10}")
    for pid in sorted(last):
        if pid not in first:
            continue
        comm, threads, cpu, wait, slices = last[pid]
        c, w, n = (cpu - first[pid][2]) / 1e9, (wait - first[pid][3]) / 1e9, slices - first[pid][4]
        print(f"  {comm + ' ' + str(pid):24} {threads:>7} {c:>7.2f} {w:>8.2f} {w / c if c else 0:>10.2f}")
        b = by[comm]
        b[0] += 1
        b[1] += threads
        b[2] += c
        b[3] += w
        b[4] += n
    for comm, (procs, threads, c, w, n) in sorted(by.items()):
        print(f"  all {comm:20} ({procs} processes, {threads} threads): cpu {c:.2f} s = {c / span:.2f} cores, "
              f"waited runnable {w:.2f} s = {w / span:.2f} threads, {n:,} timeslices, "
              f"{c / n * 1e6 if n else 0:,.0f} µs per slice")


if __name__ == "__main__":
    main()
