"""pytest fixtures for the sluice integration tests.

  sluice_bin       path of the binary under test ($SLUICE_BIN, else build/san/sluice)
  upstream         a running upstream.py (function scope); .port .url() .stats() .seen(path)
  upstream_factory start more upstreams, or with options: upstream_factory("--idle-close-ms", "200")
  tls_cert         session scope; .ecdsa and .rsa CertPair(cert, key) for 127.0.0.1/localhost
  start_sluice     start_sluice(config=None, upstream=<fixture upstream>, workers=2, ...) -> Sluice,
                   started and ready; stopped (SIGTERM) and checked at teardown
  sluice           start_sluice() on base_config() against `upstream`

Every test is bounded in time: @pytest.mark.timeout(SECONDS) (default 120)
raises in the test after that long; a hard faulthandler dump + exit follows
if even that does not return.
"""

import faulthandler
import os
import signal
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import helpers  # noqa: E402
from helpers import Sluice, Upstream, base_config, find_sluice_bin, make_cert  # noqa: E402

DEFAULT_TIMEOUT = 120


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout(seconds): fail the test after this long")


class TestTimeout(Exception):
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    m = item.get_closest_marker("timeout")
    seconds = int(m.args[0]) if m else DEFAULT_TIMEOUT

    def on_alarm(signum, frame):
        raise TestTimeout("test exceeded its %d s time limit" % seconds)

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    # Last resort, if the exception is swallowed somewhere: dump stacks and exit.
    faulthandler.dump_traceback_later(seconds + 60, exit=True)
    try:
        yield
    finally:
        signal.alarm(0)
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="session")
def sluice_bin():
    path = find_sluice_bin()
    if not path or not os.access(path, os.X_OK):
        pytest.fail("sluice binary not found: set SLUICE_BIN or run `make build/san/sluice` (got %r)"
                    % path)
    return path


@pytest.fixture
def upstream_factory(tmp_path):
    started = []

    def factory(*args):
        u = Upstream(str(tmp_path), args=args).start()
        started.append(u)
        return u
    yield factory
    for u in started:
        u.stop()


@pytest.fixture
def upstream(upstream_factory):
    return upstream_factory()


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("certs"))

    class Certs:
        ecdsa = make_cert(d, "ecdsa")
        rsa = make_cert(d, "rsa")

        def __getitem__(self, kind):
            return getattr(self, kind)
    return Certs()


@pytest.fixture
def start_sluice(request, tmp_path, sluice_bin):
    """start_sluice(config=None, upstream=None, workers=2, args=(), wait_ready=True, name=None,
    env=None, subcommand="run")

    |config| defaults to base_config(); |upstream| defaults to the `upstream`
    fixture (pass False for none). Teardown stops every instance still
    running with SIGTERM and fails on a crash, a sanitizer report, invalid
    log lines or a non-zero exit code."""
    started = []

    def start(config=None, upstream=None, workers=2, args=(), wait_ready=True, name=None,
              env=None, subcommand="run"):
        if upstream is None:
            upstream = request.getfixturevalue("upstream")
        elif upstream is False:
            upstream = None
        workdir = os.path.join(str(tmp_path), name or "sluice%d" % len(started))
        s = Sluice(workdir, base_config() if config is None else config, upstream=upstream,
                   workers=workers, binary=sluice_bin, args=args, env=env, subcommand=subcommand)
        started.append(s)
        s.start(wait_ready=wait_ready)
        return s
    yield start
    problems = []
    for s in started:
        if s.proc is None or s.stopped:
            s.kill()
            continue
        try:
            if s.running():
                rc = s.stop()
                if rc != 0:
                    problems.append("sluice exited with %s on SIGTERM at teardown" % rc)
            else:
                s.stop()  # collects and checks stderr
        except AssertionError as e:
            problems.append(str(e))
        finally:
            s.kill()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def sluice(start_sluice):
    return start_sluice()


@pytest.fixture
def h2_client_factory():
    """h2_client_factory(port, **kw) -> helpers.H2Client; closed at teardown."""
    clients = []

    def make(port, **kw):
        c = helpers.H2Client(port, **kw)
        clients.append(c)
        return c
    yield make
    for c in clients:
        c.close()
