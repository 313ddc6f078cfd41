#!/usr/bin/env python3
"""benches/cluster_chart.py: draw docs/cluster.png from benches/cluster.sh's results.

Usage: cluster_chart.py RESULTS_JSONL OUT_PNG [MACHINE_TXT]
(normally through `benches/cluster.sh --chart`, which passes $OUT/results.jsonl,
docs/cluster.png and $OUT/machine.txt, and runs it with $PYTHON).

Two panels in the style of docs/benchmarks.png (benches/compare's plot): deliveries/s
and p99 latency of each configuration (single, c1, c2, c4) at each publish rate, the
median of the repeats as the bar, min–max of the repeats as a whisker. The footnote
says how many cores the machine had (from MACHINE_TXT's "N cores"), that herald-bench,
redis-server and herald all share them, and that the latency includes herald-bench's
own reading. Needs matplotlib; nothing
else in the project does, so it is not a CI dependency.
"""
import json
import re
import statistics
import sys


def main():
    if len(sys.argv) not in (3, 4):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        sys.exit(2)
    results, out_png = sys.argv[1], sys.argv[2]
    machine = open(sys.argv[3]).read() if len(sys.argv) == 4 else ""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("matplotlib missing (python3 -m venv V && V/bin/pip install matplotlib, "
              "then PYTHON=V/bin/python): no chart", file=sys.stderr)
        sys.exit(1)

    rows = [json.loads(l) for l in open(results) if l.strip()]
    scale = [r for r in rows if r.get("kind") == "scale" and "error" not in r]
    if not scale:
        print(f"no scaling runs in {results}: no chart", file=sys.stderr)
        sys.exit(1)
    names = {"single": "1 process, no --cluster", "c1": "1 process, --cluster",
             "c2": "2 processes, --cluster", "c4": "4 processes, --cluster"}
    configs = [c for c in names if any(r["config"] == c for r in scale)]
    rates = sorted({r["rate"] for r in scale})

    def series(key):
        """config -> (medians, lower whisker, upper whisker), one per rate (nan if absent)."""
        out = {}
        for c in configs:
            med, lo, hi = [], [], []
            for rate in rates:
                xs = [r[key] for r in scale if r["config"] == c and r["rate"] == rate]
                m = statistics.median(xs) if xs else float("nan")
                med.append(m)
                lo.append(m - min(xs) if xs else 0)
                hi.append(max(xs) - m if xs else 0)
            out[c] = (med, lo, hi)
        return out

    runs = sorted({sum(1 for r in scale if r["config"] == c and r["rate"] == rate)
                   for c in configs for rate in rates})
    runs_txt = "/".join(str(n) for n in runs)
    cores = re.search(r"(\d+) cores", machine)
    cores_txt = f"{cores.group(1)} cores" if cores else "the same cores"
    conns = statistics.median(r["connections"] for r in scale)
    channels = re.search(r" -c (\d+) ", scale[0].get("cmd", ""))
    what = (f"{conns:,.0f} {scale[0].get('protocol', '')} subscribers"
            + (f" on {channels.group(1)} channels" if channels else ""))

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / len(configs)
    x = range(len(rates))
    for i, (panel, key) in enumerate([(a, "deliveries_per_s"), (b, "p99_ms")]):
        for j, c in enumerate(configs):
            med, lo, hi = series(key)[c]
            panel.bar([k + j * width for k in x], med, width, yerr=[lo, hi],
                      error_kw={"elinewidth": 0.8, "capsize": 2}, label=names[c])
        panel.set_xticks([k + width * (len(configs) - 1) / 2 for k in x],
                         [f"{r:,} publishes/s" for r in rates])
    # What a lossless run delivers: each publication to every subscriber of its channel.
    exp = [statistics.median(r["expected"] / r["duration_s"] for r in scale if r["rate"] == rate)
           for rate in rates]
    a.hlines(exp, [k - width / 2 for k in x], [k + 0.8 - width / 2 for k in x], colors="black",
             linestyles="dashed", linewidth=1, zorder=3, label="expected (every subscriber)")
    a.set_title("deliveries/s")
    a.legend(fontsize="small")
    b.set_yscale("log")
    b.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    b.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    b.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    b.set_title("p99 latency (ms, log scale)")
    fig.suptitle(f"herald over one redis-server on one machine: {what}; "
                 f"median of {runs_txt} runs, whiskers min–max", fontsize="medium")
    fig.text(0.5, 0.045, f"herald, redis-server and the load generator (herald-bench) all share "
             f"{cores_txt}: more processes divide the cores, they do not add any",
             ha="center", fontsize="small", style="italic")
    fig.text(0.5, 0.01, "latency runs from the publisher's send to herald-bench's read, so it includes "
             "the time deliveries wait for herald-bench to read them", ha="center",
             fontsize="small", style="italic")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(out_png, dpi=100)
    print(f"wrote {out_png}", file=sys.stderr)


if __name__ == "__main__":
    main()
