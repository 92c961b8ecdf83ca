"""What the binary is and what the process costs, on /metrics (issue 14):
sluice_build_info with the version and commit `sluice --version` prints, and
the process_* families Prometheus clients conventionally export, checked
against what the kernel says of the same process."""
import os
import re
import time

from helpers import base_config, run_cli


def _type_of(text, name):
    m = re.search(r"^# TYPE %s (\w+)$" % re.escape(name), text, re.M)
    return m.group(1) if m else None


def _sample(text, name):
    m = re.search(r"^%s(\{[^}]*\})? (\S+)$" % re.escape(name), text, re.M)
    assert m, "no %s in /metrics" % name
    return m.group(1) or "", float(m.group(2))


def test_build_info_matches_version(start_sluice, sluice_bin):
    before = time.time()
    s = start_sluice(base_config())
    text = s.metrics_text()
    labels, value = _sample(text, "sluice_build_info")
    assert value == 1
    out = run_cli(["--version"], binary=sluice_bin).stdout
    version, commit = re.match(r"sluice (\S+) \(commit (\S+);", out).groups()
    assert 'version="%s"' % version in labels, labels
    assert 'commit="%s"' % commit in labels, labels
    assert _type_of(text, "sluice_build_info") == "gauge"

    # Start time: the process read the same wall clock after this test did.
    _, start = _sample(text, "process_start_time_seconds")
    assert before <= start <= time.time()


def test_process_metrics_agree_with_the_kernel(start_sluice):
    s = start_sluice(base_config())
    text = s.metrics_text()
    assert _type_of(text, "process_cpu_seconds_total") == "counter"
    for g in ("process_resident_memory_bytes", "process_virtual_memory_bytes",
              "process_open_fds", "process_max_fds", "process_start_time_seconds"):
        assert _type_of(text, g) == "gauge", g
    pid = s.proc.pid
    _, cpu = _sample(text, "process_cpu_seconds_total")
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    cpu_now = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    # Sampled before this read; whole clock ticks, so an idle proxy may
    # still be at 0.
    assert 0 <= cpu <= cpu_now
    _, rss = _sample(text, "process_resident_memory_bytes")
    with open("/proc/%d/status" % pid) as f:
        vmrss = int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1)) * 1024
    # The same quantity read moments apart: within a factor of two covers
    # any allocation between the two reads on an idle proxy.
    assert vmrss / 2 <= rss <= vmrss * 2, (rss, vmrss)
    _, fds = _sample(text, "process_open_fds")
    n_fds = len(os.listdir("/proc/%d/fd" % pid))
    # Listeners, the admin socket, the scrape's own connection, eventfds:
    # the count moves by the one or two sockets of scrapes in between.
    assert abs(fds - n_fds) <= 2, (fds, n_fds)
    _, max_fds = _sample(text, "process_max_fds")
    with open("/proc/%d/limits" % pid) as f:
        soft = re.search(r"^Max open files\s+(\d+)", f.read(), re.M).group(1)
    assert max_fds == int(soft)

    # CPU only grows: a second scrape after some requests reads no less.
    for _ in range(20):
        s.metrics_text()
    _, cpu2 = _sample(s.metrics_text(), "process_cpu_seconds_total")
    assert cpu2 >= cpu


def test_started_line_has_typed_fields(start_sluice, sluice_bin):
    s = start_sluice(base_config(), workers=2)
    line = s.wait_log(lambda l: l.get("msg") == "started", what="started line")
    assert line["workers"] == 2  # a number, not "2"
    out = run_cli(["--version"], binary=sluice_bin).stdout
    assert "commit %s;" % line["commit"] in out
    assert line["config"].endswith(".yaml")
