"""Reads valgrind lackey's --trace-mem output on stdin and prints, for each
burst of activity (a wake-up of the agent; bursts are told apart by a
quiet gap), how many instructions ran and how many distinct cache lines
(64 B) and pages (4 KiB) of code and of data it touched. Used by
bench/touch.sh; a measurement, not a test."""
import os
import select
import sys

GAP = float(os.environ.get("GAP", "0.5"))


def main():
    fd = sys.stdin.fileno()
    pending = b""
    burst = {"n": 0, "il": set(), "dl": set(), "ip": set(), "dp": set()}
    count = 0

    def flush():
        nonlocal burst, count
        if burst["n"]:
            count += 1
            print(
                f"burst {count} instructions {burst['n']} code-lines {len(burst['il'])} "
                f"data-lines {len(burst['dl'])} code-pages {len(burst['ip'])} data-pages {len(burst['dp'])}",
                flush=True,
            )
        burst = {"n": 0, "il": set(), "dl": set(), "ip": set(), "dp": set()}

    while True:
        ready, _, _ = select.select([fd], [], [], GAP)
        if not ready:
            flush()
            continue
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            flush()
            return
        pending += chunk
        *lines, pending = pending.split(b"\n")
        il, dl, ip, dp = burst["il"], burst["dl"], burst["ip"], burst["dp"]
        for line in lines:
            # "I  0401a2,3" / " L 1ffefff0,8" / " S ..." / " M ..."
            if len(line) < 4:
                continue
            try:
                addr, size = line[3:].split(b",")
                start = int(addr, 16)
                end = start + max(int(size), 1) - 1
            except ValueError:
                continue
            if line[:1] == b"I":
                burst["n"] += 1
                il.add(start >> 6)
                il.add(end >> 6)
                ip.add(start >> 12)
            else:
                dl.add(start >> 6)
                dl.add(end >> 6)
                dp.add(start >> 12)
                dp.add(end >> 12)


def summary(name, skip, take):
    """Medians of bursts skip+1 .. skip+take read from stdin."""
    rows = []
    for line in sys.stdin:
        f = line.split()
        if f and f[0] == "burst" and skip < int(f[1]) <= skip + take:
            rows.append([int(x) for x in f[3::2]])
    if not rows:
        print(f"{name:40} no cycles")
        return
    med = [sorted(col)[len(col) // 2] for col in zip(*rows)]
    print(f"{name:40} {med[0]:12d} {med[1]:11d} {med[2]:11d} {med[3]:11d} {med[4]:11d}")


if len(sys.argv) == 5 and sys.argv[1] == "--summary":
    summary(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
else:
    main()
