"""Runs the measurements of bench/run.sh and writes BENCHMARKS.md.

bench/run.sh prepares everything: the builds, the mock on 127.0.0.1:443, the SoftHSM2
token and the mount namespace that resolves rolesanywhere.us-east-1.amazonaws.com to
127.0.0.1. It then runs this script, which is not meant to be run on its own.
"""

import argparse
import datetime
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

PKI = "tests/vectors/pki"
HOST = "rolesanywhere.us-east-1.amazonaws.com"
ARN_PREFIX = "arn:aws:rolesanywhere:us-east-1:123456789012:"
RSA_ANCHOR = ARN_PREFIX + "trust-anchor/11111111-2222-3333-4444-555555555555"
EC_ANCHOR = ARN_PREFIX + "trust-anchor/22222222-3333-4444-5555-666666666666"
PROFILE = ARN_PREFIX + "profile/66666666-7777-8888-9999-000000000000"
ROLE = "arn:aws:iam::123456789012:role/ExampleRole"
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--idle-seconds", type=int, required=True)
    parser.add_argument("--sizes", required=True)
    parser.add_argument("--agent", required=True)
    parser.add_argument("--agent-static", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--token-dir", required=True)
    parser.add_argument("--refresh-cost", required=True)
    parser.add_argument("--output-dirs", nargs="+", required=True)
    parser.add_argument("--report", required=True)
    return parser.parse_args()


def run_checked(command, env, expect):
    """Runs a command, fails unless it exits 0 with `expect` in its output, and returns
    the wall time in seconds from spawn to exit."""
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0 or expect not in result.stdout:
        raise SystemExit(
            f"measure.py: {command[0]} failed with status {result.returncode}:\n"
            f"{result.stderr[-2000:]}"
        )
    return wall


def run_once(command, env, expect='"AccessKeyId"'):
    """Runs one client twice and returns (wall seconds, peak RSS in KiB).

    The wall time comes from a plain run. The peak RSS comes from a second run under
    `/usr/bin/time -f %M`, because a child forked from this Python process would carry
    Python's resident size into its ru_maxrss until it calls exec.
    """
    wall = run_checked(command, env, expect)
    with tempfile.NamedTemporaryFile(mode="r") as rss:
        run_checked(["/usr/bin/time", "-f", "%M", "-o", rss.name, *command], env, expect)
        peak = int(rss.read().split()[-1])
    return wall, peak


def clients(args):
    """Returns (name, command, extra environment) for every credential-process client."""
    identity = ["--profile-arn", PROFILE, "--role-arn", ROLE]
    rsa = [f"{PKI}/rsa/leaf.pem", f"{PKI}/rsa/chain.pem"]
    ec = [f"{PKI}/ec/leaf.pem", f"{PKI}/ec/chain.pem"]
    pin = f"{args.token_dir}/pin"
    softhsm = {"SOFTHSM2_CONF": f"{args.token_dir}/token/softhsm2.conf"}
    agent = [args.agent, "credential-process", "--ca-bundle", args.ca] + identity
    static = [args.agent_static, "credential-process", "--ca-bundle", args.ca] + identity
    peer = ["needroleshere", "credential-process", "--region", "us-east-1",
            "--session-duration", "3600"] + identity
    python = [sys.executable, "bench/rolesanywhere_session.py"]
    return [
        ("ra-agent, RSA PEM key",
         agent + ["--certificate", rsa[0], "--private-key", f"{PKI}/rsa/leaf.key",
                  "--intermediates", rsa[1], "--trust-anchor-arn", RSA_ANCHOR], {}),
        ("ra-agent, EC P-256 PEM key",
         agent + ["--certificate", ec[0], "--private-key", f"{PKI}/ec/leaf.key",
                  "--intermediates", ec[1], "--trust-anchor-arn", EC_ANCHOR], {}),
        ("ra-agent static musl, RSA PEM key",
         static + ["--certificate", rsa[0], "--private-key", f"{PKI}/rsa/leaf.key",
                   "--intermediates", rsa[1], "--trust-anchor-arn", RSA_ANCHOR], {}),
        ("ra-agent static musl, EC P-256 PEM key",
         static + ["--certificate", ec[0], "--private-key", f"{PKI}/ec/leaf.key",
                   "--intermediates", ec[1], "--trust-anchor-arn", EC_ANCHOR], {}),
        # The same two runs trusting only the test CA, without the system CA bundle that
        # the agent otherwise reads on every start (SSL_CERT_FILE replaces it).
        ("ra-agent, RSA PEM key, SSL_CERT_FILE=CA",
         agent + ["--certificate", rsa[0], "--private-key", f"{PKI}/rsa/leaf.key",
                  "--intermediates", rsa[1], "--trust-anchor-arn", RSA_ANCHOR],
         {"SSL_CERT_FILE": args.ca}),
        ("ra-agent static musl, RSA PEM key, SSL_CERT_FILE=CA",
         static + ["--certificate", rsa[0], "--private-key", f"{PKI}/rsa/leaf.key",
                   "--intermediates", rsa[1], "--trust-anchor-arn", RSA_ANCHOR],
         {"SSL_CERT_FILE": args.ca}),
        ("ra-agent, RSA key in SoftHSM2",
         agent + ["--certificate",
                  f"pkcs11:token=ra-test;object=rsa-cert;type=cert?pin-source={pin}",
                  "--pkcs11-lib", SOFTHSM_MODULE, "--trust-anchor-arn", RSA_ANCHOR], softhsm),
        ("ra-agent, EC P-256 key in SoftHSM2",
         agent + ["--certificate",
                  f"pkcs11:token=ra-test;object=ec256;type=cert?pin-source={pin}",
                  "--intermediates", ec[1], "--pkcs11-lib", SOFTHSM_MODULE,
                  "--trust-anchor-arn", EC_ANCHOR], softhsm),
        # needroleshere reads RSA keys only in PKCS#1 and EC keys only in SEC1 form.
        ("needroleshere 0.4.0, RSA PEM key",
         peer + ["--certificate", rsa[0], "--private-key", f"{PKI}/rsa/leaf.pkcs1.key",
                 "--intermediates", rsa[1], "--trust-anchor-arn", RSA_ANCHOR],
         {"SSL_CERT_FILE": args.ca}),
        ("needroleshere 0.4.0, EC P-256 PEM key",
         peer + ["--certificate", ec[0], "--private-key", f"{PKI}/ec/leaf.sec1.key",
                 "--intermediates", ec[1], "--trust-anchor-arn", EC_ANCHOR],
         {"SSL_CERT_FILE": args.ca}),
        ("iam-rolesanywhere-session (Python), RSA PEM key",
         python + [rsa[0], f"{PKI}/rsa/leaf.key", rsa[1], RSA_ANCHOR, PROFILE, ROLE,
                   HOST, args.ca], {}),
    ]


def starts(args):
    """Returns (name, command, expected output) for the process start of each client."""
    return [
        ("ra-agent version", [args.agent, "version"], "ra-agent"),
        ("ra-agent static musl version", [args.agent_static, "version"], "ra-agent"),
        ("needroleshere --version", ["needroleshere", "--version"], "needroleshere"),
        ("python3 -c 'import iam_rolesanywhere_session'",
         [sys.executable, "-c", "import iam_rolesanywhere_session; print('imported')"],
         "imported"),
    ]


def measure_starts(args):
    results = {}
    for name, command, expect in starts(args):
        runs = [run_once(command, os.environ, expect) for _ in range(args.runs)]
        results[name] = (statistics.median(w for w, _ in runs),
                         statistics.median(r for _, r in runs))
    return results


def measure_clients(args):
    entries = clients(args)
    results = {name: ([], []) for name, _, _ in entries}
    for name, command, extra in entries:
        run_once(command, {**os.environ, **extra})  # warm-up: page cache, token files
    # Round robin, so slow phases of a shared machine spread over every client.
    for _ in range(args.runs):
        for name, command, extra in entries:
            wall, rss = run_once(command, {**os.environ, **extra})
            results[name][0].append(wall)
            results[name][1].append(rss)
    return entries, {
        name: (statistics.median(walls), statistics.median(rss), min(walls), max(rss))
        for name, (walls, rss) in results.items()
    }


class NotifyListener:
    """A datagram socket in place of systemd's NOTIFY_SOCKET; records the messages."""

    def __init__(self, path):
        self.path = path
        self.messages = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        threading.Thread(target=self._receive, daemon=True).start()

    def _receive(self):
        while True:
            self.messages.append((time.monotonic(), self.sock.recv(4096).decode()))

    def wait_for(self, text, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if any(text in message for _, message in self.messages):
                return
            time.sleep(0.05)
        raise SystemExit(f"measure.py: ra-agent update sent no {text} in {seconds} s")


def process_sample(pid):
    """Returns (CPU seconds, VmRSS KiB, VmHWM KiB, threads) of a process from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime, fields 14 and 15
    status = {}
    with open(f"/proc/{pid}/status") as text:
        for line in text:
            key, _, value = line.partition(":")
            status[key] = value.split()
    return cpu, int(status["VmRSS"][0]), int(status["VmHWM"][0]), int(status["Threads"][0])


def measure_idle(args, agent, watchdog_usec):
    """Starts `ra-agent update`, waits for READY=1, then measures it idle twice: plainly
    over idle_seconds for CPU and memory, and under `strace -c -f` for the system calls,
    each of which marks a wake-up."""
    work = tempfile.mkdtemp(dir=args.token_dir)
    notify = NotifyListener(f"{work}/notify.sock")
    env = {**os.environ, "AWS_SHARED_CREDENTIALS_FILE": f"{work}/credentials",
           "NOTIFY_SOCKET": notify.path}
    if watchdog_usec:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    command = [agent, "update", "--ca-bundle", args.ca,
               "--certificate", f"{PKI}/rsa/leaf.pem", "--private-key", f"{PKI}/rsa/leaf.key",
               "--intermediates", f"{PKI}/rsa/chain.pem", "--trust-anchor-arn", RSA_ANCHOR,
               "--profile-arn", PROFILE, "--role-arn", ROLE]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        notify.wait_for("READY=1", 30)
        time.sleep(1)
        cpu0, _, _, _ = process_sample(process.pid)
        time.sleep(args.idle_seconds)
        cpu1, rss, hwm, threads = process_sample(process.pid)

        trace = f"{work}/strace"
        tracer = subprocess.Popen(["strace", "-c", "-f", "-o", trace, "-p", str(process.pid)],
                                  stderr=subprocess.DEVNULL)
        traced_from = time.monotonic()
        time.sleep(args.idle_seconds)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=30)
        traced_to = time.monotonic()
        calls = parse_strace_summary(trace)
        pings = sum(1 for at, message in notify.messages
                    if "WATCHDOG=1" in message and traced_from <= at <= traced_to)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    return {
        "cpu_seconds": cpu1 - cpu0,
        "rss_kib": rss,
        "hwm_kib": hwm,
        "threads": threads,
        "calls": calls,
        "watchdog_pings": pings,
    }


def parse_strace_summary(path):
    """Returns {syscall: count} from an `strace -c` summary."""
    calls = {}
    with open(path) as summary:
        for line in summary:
            fields = line.split()
            # Columns: % time, seconds, usecs/call, calls, [errors,] syscall. The header
            # and the "total" row are skipped.
            if len(fields) >= 5 and fields[3].isdigit() and fields[-1] != "total":
                calls[fields[-1]] = int(fields[3])
    return calls


def measure_refresh_cost(args):
    env = {**os.environ, "SOFTHSM2_CONF": f"{args.token_dir}/token/softhsm2.conf"}
    output = subprocess.run(
        [args.refresh_cost, PKI, f"{args.token_dir}/pin", SOFTHSM_MODULE, *args.output_dirs],
        env=env, check=True, capture_output=True, text=True).stdout
    return [line.split("\t") for line in output.splitlines()]


def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break

    def command_output(*command):
        return subprocess.run(command, capture_output=True, text=True).stdout.strip()

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": command_output("nproc"),
        "cpu": model,
        "kernel": platform.release(),
        "rustc": command_output("rustc", "--version"),
        # BENCH_COMMIT names the commit of a tree exported without .git (git archive).
        "commit": os.environ.get("BENCH_COMMIT")
        or command_output("git", "rev-parse", "--short", "HEAD"),
        "python": platform.python_version(),
    }


def main():
    args = parse_args()
    sizes = [line.rstrip("\n").split("\t") for line in open(args.sizes)]
    entries, clients_result = measure_clients(args)
    start_result = measure_starts(args)
    idle = [
        ("glibc build, no watchdog", measure_idle(args, args.agent, None)),
        ("glibc build, WATCHDOG_USEC=10 s", measure_idle(args, args.agent, 10_000_000)),
        ("static musl build, WATCHDOG_USEC=10 s",
         measure_idle(args, args.agent_static, 10_000_000)),
    ]
    refresh = measure_refresh_cost(args)
    info = machine()
    from report import write_report  # bench/report.py, beside this file

    write_report(args, info, sizes, entries, clients_result, start_result, idle, refresh)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
