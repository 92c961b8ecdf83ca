"""Blocklist entries past their `expires` (issue 12, "Expiry that cannot fool
on-call"): `sluice check` warns (exit 0) or, with --strict, fails (exit 1)
with FILE:LINE:COL of the entry; explain (CLI and GET /explain) says the
entry expired instead of a silent allow; the start-up log warns per expired
entry (bounded); the reload log line counts active and expired entries."""

import datetime
import json
import re

import pytest

from admission_helpers import admission_config, device_headers
from helpers import run_cli, to_yaml

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def stamp(delta):
    return (NOW + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


PAST = stamp(datetime.timedelta(days=-2, hours=-1))
FUTURE = stamp(datetime.timedelta(days=30))

# Line 5 / column 7 of the blocklist below is the first entry's `name:` key.
BLOCKLIST_YAML = """\
blocklist:
  firmware:
    - name: bad-3.8
      class: airtame-hub
      versions: ">=3.8.0-b3 <3.8.1"
      reason: "INC-2041"
      expires: "%s"
    - name: live-4
      versions: "=4.0.0"
      expires: "%s"
""" % (PAST, FUTURE)


def config_text(tmp_path, blocklist_yaml=BLOCKLIST_YAML):
    """A complete configuration whose blocklist is the last section, so
    the entries' lines are known; returns (path, line of the first entry)."""
    cfg = admission_config()
    for listener in cfg["listeners"]:
        listener["address"] = "127.0.0.1:18970"
    cfg["upstreams"]["identity"]["address"] = "127.0.0.1:18971"
    del cfg["admin"]
    head = to_yaml(cfg)
    path = tmp_path / "sluice.yaml"
    path.write_text(head + blocklist_yaml)
    return str(path), head.count("\n") + 3


def test_check_warns_about_expired_entry_and_exits_0(tmp_path, sluice_bin):
    path, line = config_text(tmp_path)
    p = run_cli(["check", "-c", path], binary=sluice_bin)
    assert p.returncode == 0, p.stderr
    warn = [l for l in p.stderr.splitlines() if "warning:" in l]
    assert warn == ["%s:%d:7: warning: blocklist entry 'bad-3.8' expired at %s (2 days ago): "
                    "it no longer blocks anything" % (path, line, PAST)], p.stderr
    assert "live-4" not in p.stderr  # not expired: nothing to say
    assert p.stderr.splitlines()[-1] == "%s: ok" % path


def test_check_strict_makes_expired_entry_an_error(tmp_path, sluice_bin):
    path, line = config_text(tmp_path)
    p = run_cli(["check", "--strict", "-c", path], binary=sluice_bin)
    assert p.returncode == 1, p.stderr
    assert re.search(r"^%s:%d:7: error: blocklist entry 'bad-3.8' expired at %s .*no longer "
                     r"blocks anything$" % (re.escape(path), line, PAST), p.stderr, re.M), p.stderr
    assert ": ok" not in p.stderr
    # Nothing expired: --strict passes.
    fresh, _ = config_text(tmp_path, BLOCKLIST_YAML.replace(PAST, FUTURE))
    p = run_cli(["check", "--strict", "-c", fresh], binary=sluice_bin)
    assert p.returncode == 0 and "warning" not in p.stderr and "error" not in p.stderr, p.stderr


def test_check_unnamed_entry_in_dropin_is_named_by_versions(tmp_path, sluice_bin):
    path, _ = config_text(tmp_path, "include: conf.d\n")
    (tmp_path / "conf.d").mkdir()
    dropin = tmp_path / "conf.d" / "emergency.yaml"
    dropin.write_text('blocklist:\n  firmware:\n    - versions: "<2"\n      expires: "%s"\n'
                      % PAST)
    p = run_cli(["check", "-c", path], binary=sluice_bin)
    assert p.returncode == 0, p.stderr
    assert ("%s:3:7: warning: blocklist entry for versions '<2' expired at %s"
            % (dropin, PAST)) in p.stderr, p.stderr


def test_cli_explain_says_expired(tmp_path, sluice_bin):
    path, _ = config_text(tmp_path)
    args = ["explain", "-c", path, "--header", "x-device-class: airtame-hub",
            "--header", "x-firmware-version: 3.8.0", "/v1/connect"]
    p = run_cli(args, binary=sluice_bin)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["verdict"]["admit"] is True
    bl = doc["policies"][0]
    assert (bl["policy"], bl["verdict"]) == ("blocklist/firmware", "allow")
    assert "'bad-3.8' expired at %s" % PAST in bl["why"], bl
    # A request no entry would match still says so.
    p = run_cli(args[:-2] + ["x-firmware-version: 3.9.0", "/v1/connect"], binary=sluice_bin)
    assert json.loads(p.stdout)["policies"][0]["why"] == "no entry matches"


def expired_blocklist(n, live=1):
    entries = [{"name": "gone-%02d" % i, "versions": "=1.%d.0" % i, "expires": PAST}
               for i in range(n)]
    entries += [{"name": "live-%d" % i, "versions": "=4.%d.0" % i, "expires": FUTURE}
                for i in range(live)]
    return {"firmware": entries}


@pytest.mark.timeout(30)
def test_admin_explain_startup_warnings_and_reload_counts(start_sluice):
    s = start_sluice(admission_config(blocklist=expired_blocklist(2)))
    status, _, body = s.admin_get("/explain?path=/&header=x-firmware-version:1.1.0")
    assert status == 200, body
    doc = json.loads(body)
    assert doc["verdict"]["admit"] is True
    assert "'gone-01' expired at %s" % PAST in doc["policies"][0]["why"], doc
    warns = s.wait_log(lambda l: l["msg"] == "blocklist entry expired" and "gone-01" in l["detail"],
                       what="start-up warning")
    assert re.match(r".*sluice\.yaml:\d+:\d+$", warns["where"]), warns
    assert len([l for l in s.logs() if l["msg"] == "blocklist entry expired"]) == 2

    s.write_config(admission_config(blocklist=expired_blocklist(3, live=2)))  # the watcher reloads
    line = s.wait_log(lambda l: l["msg"] == "configuration reloaded", what="reload log line")
    assert line["blocklist_entries"] == "3->5"
    assert (line["blocklist_active"], line["blocklist_expired"]) == (2, 3), line


@pytest.mark.timeout(30)
def test_startup_warnings_are_bounded(start_sluice):
    s = start_sluice(admission_config(blocklist=expired_blocklist(13)))
    more = s.wait_log(lambda l: l["msg"] == "more blocklist entries expired", what="the count")
    assert more["count"] == 3  # a number, like every count
    assert len([l for l in s.logs() if l["msg"] == "blocklist entry expired"]) == 10
