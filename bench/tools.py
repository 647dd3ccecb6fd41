#!/usr/bin/env python3
"""Helpers for bench/load.sh, Python standard library only.

  tools.py wrk FILE                 -> "RPS P99_MS NON2XX SOCKET_ERRORS MB_PER_S REQUESTS"
                                     from wrk --latency output
  tools.py cpu PID                  user+system CPU time of PID so far, in seconds
  tools.py fill BASE N PREFIX       posts N distinct seed runs (jobId PREFIX + number),
                                     over 4 keep-alive connections; prints "N SECONDS"
  tools.py startup BIN RUNS         process start -> ready line and -> first 200 from
                                     /actuator/health, RUNS times; prints the ms of each
  tools.py rss PID                  VmRSS of PID, in bytes
  tools.py conns BIN N KIND         RSS growth of a fresh BIN per open connection, N of them:
                                     KIND fresh (nothing sent), idle (one request answered,
                                     then kept open), wait (an open GET /_mock/runs/{jobId}/wait),
                                     wait-after (the same wait after one other request) or
                                     wait-again (after a wait that timed out);
                                     prints "BYTES_PER_CONNECTION RSS_BEFORE RSS_AFTER"
  tools.py sigterm BIN KIND         seconds from SIGTERM to exit of a fresh BIN with one
                                     connection in state KIND (head: half a request
                                     head sent; body: a head and half its body); prints
                                     "SECONDS EXIT_CODE" (gives up after 60 s)
  tools.py sessions BIN N           a fresh BIN's RSS before N empty sessions, with them, and
                                     after they are all deleted, twice (keep-alive requests);
                                     prints "BYTES_PER_SESSION RSS_BEFORE RSS_WITH
                                     RSS_DELETED RSS_WITH_AGAIN RSS_DELETED_AGAIN"
  tools.py table RESULTS            the final table from the key=value lines in RESULTS
"""

import http.client
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED_PATH = os.path.join(ROOT, "tests", "fixtures", "seed-status-update.json")
SEED_ID = b'"jobId": "hhzitrwancwv"'
STATUS_PATH = "/job-launcher/launcher/status"

UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
SIZE = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def wrk(path):
    text = open(path).read()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)([KMG]?B)", text)
    requests = re.search(r"(\d+) requests in", text)
    if not rps:
        sys.exit(f"no Requests/sec in {path}:\n{text}")
    p99_ms = float(p99.group(1)) * UNITS_MS[p99.group(2)] if p99 else float("nan")
    mb = float(transfer.group(1)) * SIZE[transfer.group(2)] / 1024**2 if transfer else 0.0
    print(
        rps.group(1),
        f"{p99_ms:.3f}",
        non2xx.group(1) if non2xx else 0,
        sum(int(n) for n in errors.groups()) if errors else 0,
        f"{mb:.1f}",
        requests.group(1) if requests else 0,
    )


def cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    ticks = int(fields[11]) + int(fields[12])
    print(f"{ticks / os.sysconf('SC_CLK_TCK'):.2f}")


def fill(base, n, prefix, connections=4):
    seed = open(SEED_PATH, "rb").read()
    assert SEED_ID in seed, "the fixture's jobId moved"
    head, tail = seed.split(SEED_ID, 1)
    url = urllib.parse.urlsplit(base)
    headers = {"Content-Type": "application/json"}
    failures = []

    def worker(start):
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        for i in range(start, n, connections):
            body = head + b'"jobId": "' + f"{prefix}{i:07d}".encode() + b'"' + tail
            conn.request("POST", STATUS_PATH, body, headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                failures.append(response.status)
        conn.close()

    began = time.monotonic()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - began
    if failures:
        sys.exit(f"{len(failures)} of {n} posts failed, first status {failures[0]}")
    print(n, f"{took:.2f}")


def health_ok(port):
    """One GET /actuator/health on a fresh connection: True on a 200."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET /actuator/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            first = s.recv(64)
            return first.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def startup(binary, runs):
    ready_ms, first_ms = [], []
    for _ in range(runs):
        began = time.monotonic()
        process = subprocess.Popen(
            [binary, "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        try:
            line = process.stdout.readline().decode()
            ready = time.monotonic()
            match = re.search(r"listening on http://[^:]+:(\d+)", line)
            if not match:
                sys.exit(f"no ready line from {binary}: {line!r}")
            port = int(match.group(1))
            deadline = began + 10
            while not health_ok(port):
                if time.monotonic() > deadline:
                    sys.exit("no 200 from /actuator/health within 10 s")
            healthy = time.monotonic()
        finally:
            process.terminate()
            process.wait(timeout=10)
        ready_ms.append((ready - began) * 1e3)
        first_ms.append((healthy - began) * 1e3)
    print(" ".join(f"{x:.2f}" for x in ready_ms))
    print(" ".join(f"{x:.2f}" for x in first_ms))


def rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            print(int(line.split()[1]) * 1024)
            return
    sys.exit(f"no VmRSS for {pid}")


def spawn(binary, *args, env=None):
    """BIN --port 0 ARGS on loopback, with its readiness line read: (process, port)."""
    process = subprocess.Popen(
        [binary, "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": "warn", **(env or {})},
    )
    line = process.stdout.readline().decode()
    match = re.search(r"listening on http://[^:]+:(\d+)", line)
    if not match:
        process.kill()
        sys.exit(f"no ready line from {binary}: {line!r}")
    return process, int(match.group(1))


def rss_of(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    sys.exit(f"no VmRSS for {pid}")


def get(port, path):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def gauge(port, name):
    match = re.search(rf"^{name} (\d+)", get(port, "/metrics"), re.M)
    return int(match.group(1)) if match else None


def read_answer(s):
    """Reads one answer with a Content-Length off a keep-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("the connection closed before its answer")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    # A 204 has no body, and says no length.
    given = re.search(rb"(?i)content-length: *(\d+)", head)
    length = int(given.group(1)) if given else 0
    while len(body) < length:
        body += s.recv(4096)


def conns(binary, n, kind):
    """RSS growth per open connection of KIND, N of them, on a fresh BIN."""
    # The client and the server each hold N descriptors.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 100:
        if hard < n + 100:
            sys.exit(f"RLIMIT_NOFILE {hard} is too low for {n} connections")
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # Generous peer timeouts, so that none is closed while it is counted.
    env = {"JLM_HEADER_TIMEOUT": "10m", "JLM_IDLE_TIMEOUT": "10m", "JLM_MAX_CONNECTIONS": str(n + 100)}
    process, port = spawn(binary, env=env)
    try:
        # One request first, so that the start-up's allocations are in the baseline.
        get(port, "/actuator/health")
        time.sleep(0.5)
        before = rss_of(process.pid)
        sockets = []
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            if kind == "fresh":
                pass
            elif kind == "idle":
                s.sendall(b"GET /actuator/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                read_answer(s)
            elif kind in ("wait", "wait-after", "wait-again"):
                if kind == "wait-after":
                    s.sendall(b"GET /actuator/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    read_answer(s)
                elif kind == "wait-again":
                    s.sendall(f"GET /_mock/runs/bench-{i}/wait?timeout=1ms HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
                    read_answer(s)
                s.sendall(f"GET /_mock/runs/bench-{i}/wait?timeout=10m HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            else:
                sys.exit(f"unknown kind {kind}")
            sockets.append(s)
        if kind.startswith("wait"):
            deadline = time.monotonic() + 60
            while gauge(port, "jlm_waiters") != n:
                if time.monotonic() > deadline:
                    sys.exit(f"{n} waits were not all waiting within 60 s")
                time.sleep(0.1)
        time.sleep(0.5)
        after = rss_of(process.pid)
        print(f"{(after - before) / n:.0f}", before, after)
        for s in sockets:
            s.close()
    finally:
        process.kill()
        process.wait()


def request(s, method, path, body=b""):
    """One request on a keep-alive connection; its answer read."""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
    if body:
        head += "Content-Type: application/json\r\n"
    s.sendall(head.encode() + b"\r\n" + body)
    read_answer(s)


def sessions(binary, n):
    """RSS of a fresh BIN before N empty sessions, with them, and once they are deleted;
    twice, so that the second round shows whether what the first freed is used again."""
    process, port = spawn(binary, "--max-sessions", str(n))
    try:
        get(port, "/actuator/health")
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            # One made and deleted first, so that what any session needs once is in the
            # baseline.
            request(s, "POST", "/_mock/sessions", b'{"name":"warm-up"}')
            request(s, "DELETE", "/_mock/sessions/warm-up")
            time.sleep(0.5)
            readings = [rss_of(process.pid)]
            for _ in range(2):
                for i in range(n):
                    request(s, "POST", "/_mock/sessions", f'{{"name":"s{i}"}}'.encode())
                if gauge(port, "jlm_sessions") != n:
                    sys.exit(f"not {n} sessions live")
                time.sleep(0.5)
                readings.append(rss_of(process.pid))
                for i in range(n):
                    request(s, "DELETE", f"/_mock/sessions/s{i}")
                if gauge(port, "jlm_sessions") != 0:
                    sys.exit("sessions are left")
                time.sleep(0.5)
                readings.append(rss_of(process.pid))
        print(f"{(readings[1] - readings[0]) / n:.0f}", *readings)
    finally:
        process.kill()
        process.wait()


def sigterm(binary, kind):
    """Seconds from SIGTERM to exit with one stuck connection of KIND."""
    process, port = spawn(binary)
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        if kind == "head":
            s.sendall(b"POST /job-launcher/launcher/status HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
        elif kind == "body":
            body = b'{"jobId":"stuck","state":"running"}'
            s.sendall(b"POST /job-launcher/launcher/status HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
                      + b"\r\n\r\n" + body[:10])
        else:
            sys.exit(f"unknown kind {kind}")
        # The connection is accepted and read by now: a request on another one is answered.
        get(port, "/actuator/health")
        time.sleep(0.2)
        began = time.monotonic()
        process.terminate()
        try:
            code = process.wait(timeout=60)
            print(f"{time.monotonic() - began:.3f}", code)
        except subprocess.TimeoutExpired:
            print(">60", "none")
        s.close()
    finally:
        process.kill()
        process.wait()


def table(path):
    r = {}
    for line in open(path):
        key, _, value = line.rstrip("\n").partition("=")
        r[key] = value
    rounds = int(r["rounds"])

    def per_round(key):
        return [float(r[f"{key}.{i}"]) for i in range(1, rounds + 1)]

    svc, bare = per_round("svc_rps"), per_round("bare_rps")
    ratio = [s / b for s, b in zip(svc, bare)]
    sess = per_round("sess_rps") if "sess_rps.1" in r else None
    svc_p99, bare_p99 = per_round("svc_p99"), per_round("bare_p99")
    svc_cpu, bare_cpu = per_round("svc_cpu"), per_round("bare_cpu")
    med = statistics.median

    def spread(xs, fmt):
        return " ".join(fmt.format(x) for x in xs)

    rows = [
        ("POST status, new jobId: service req/s", f"{med(svc):,.0f}", spread(svc, "{:.0f}")),
        ("POST status, new jobId: bare req/s", f"{med(bare):,.0f}", spread(bare, "{:.0f}")),
        ("  ratio service/bare", f"{med(ratio):.3f}", spread(ratio, "{:.3f}")),
        ("  service p99 latency ms", f"{med(svc_p99):.2f}", spread(svc_p99, "{:.2f}")),
        ("  bare p99 latency ms", f"{med(bare_p99):.2f}", spread(bare_p99, "{:.2f}")),
        ("  service CPU us/request", f"{med(svc_cpu):.0f}", spread(svc_cpu, "{:.0f}")),
        ("  bare CPU us/request", f"{med(bare_cpu):.0f}", spread(bare_cpu, "{:.0f}")),
    ]
    if sess:
        in_session = [s / root for s, root in zip(sess, svc)]
        sess_p99 = per_round("sess_p99")
        rows += [
            ("POST status under a session req/s", f"{med(sess):,.0f}", spread(sess, "{:.0f}")),
            ("  ratio session/root", f"{med(in_session):.3f}", spread(in_session, "{:.3f}")),
            ("  session p99 latency ms", f"{med(sess_p99):.2f}", spread(sess_p99, "{:.2f}")),
        ]
    if "quiet_rps" in r:
        rows.append(
            ("  service, RUST_LOG=warn, req/s (1 run)", f"{float(r['quiet_rps']):,.0f}",
             f"p99 {float(r['quiet_p99']):.2f} ms; {float(r['quiet_cpu']):.0f} CPU us/req; "
             f"/median bare {float(r['quiet_rps']) / med(bare):.3f}")
        )
    rows += [
        ("GET /_mock/runs/{jobId} req/s", f"{float(r['run_rps']):,.0f}", f"p99 {float(r['run_p99']):.2f} ms; {float(r['run_cpu']):.0f} CPU us/req"),
        ("GET launcher/status, 10k runs req/s (-c2)", f"{float(r['list_rps']):,.1f}",
         f"p99 {float(r['list_p99']):.0f} ms; {float(r['list_cpu']) / 1e3:.0f} CPU ms/req; {float(r['list_mb']):.0f} MB/s; answer {int(r['list_bytes']) / 1e6:.1f} MB"),
        ("  filling 10k runs (Python, 4 conns)", f"{float(r['fill10k_s']):.1f} s", ""),
        ("RSS per stored run, bytes", f"{(int(r['rss_after']) - int(r['rss_before'])) / int(r['rss_runs']):,.0f}",
         f"{int(r['rss_before']) / 2**20:.1f} -> {int(r['rss_after']) / 2**20:.1f} MiB for {int(r['rss_runs']):,} runs "
         f"({int(r['rss_fill_n']) / float(r['rss_fill_s']):,.0f} posts/s)"),
    ]
    ready = [float(x) for x in r["ready_ms"].split()]
    first = [float(x) for x in r["first200_ms"].split()]
    rows += [
        (f"start -> ready line ms ({len(ready)} runs)", f"{med(ready):.1f}", f"max {max(ready):.1f}"),
        ("start -> first 200 /actuator/health ms", f"{med(first):.1f}", f"max {max(first):.1f}"),
    ]
    if "conns" in r:
        n = int(r["conns"])
        rows += [
            (f"RSS per open wait, bytes ({n:,})", f"{int(r['conn_wait']):,}", "GET /_mock/runs/{jobId}/wait, one per connection"),
            (f"  the same after another request ({n:,})", f"{int(r['conn_wait-after']):,}", "served by hyper: the connection has its buffers"),
            (f"RSS per idle kept-alive connection ({n:,})", f"{int(r['conn_idle']):,}", "one request answered, then open"),
            (f"RSS per connection that sent nothing ({n:,})", f"{int(r['conn_fresh']):,}", ""),
        ]
    if "session_rss" in r:
        per, *rss = (int(x) for x in r["session_rss"].split())
        mib = " -> ".join(f"{x / 2**20:.1f}" for x in rss)
        rows.append(
            (f"RSS per empty session, bytes ({int(r['sessions']):,})", f"{per:,}",
             f"MiB: {mib} (before, made, deleted, made again, deleted again)")
        )
    bad = [k for k in r if k.startswith("bad.")]
    w0 = max(len(a) for a, _, _ in rows)
    w1 = max(len(b) for _, b, _ in rows)
    print(f"| {'measure':<{w0}} | {'median':>{w1}} | per round / detail")
    print(f"|-{'-' * w0}-|-{'-' * w1}-|-------------------")
    for a, b, c in rows:
        print(f"| {a:<{w0}} | {b:>{w1}} | {c}")
    print(f"({r['setup']})")
    for k in bad:
        print(f"WARNING {k[4:]}: {r[k]}")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "wrk":
        wrk(args[0])
    elif cmd == "fill":
        fill(args[0], int(args[1]), args[2])
    elif cmd == "startup":
        startup(args[0], int(args[1]))
    elif cmd == "cpu":
        cpu(int(args[0]))
    elif cmd == "rss":
        rss(int(args[0]))
    elif cmd == "conns":
        conns(args[0], int(args[1]), args[2])
    elif cmd == "sigterm":
        sigterm(args[0], args[1])
    elif cmd == "sessions":
        sessions(args[0], int(args[1]))
    elif cmd == "table":
        table(args[0])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
