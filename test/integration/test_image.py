"""The runtime image (issue 14), checked offline: deploy/Dockerfile is a
FROM scratch image of the root filesystem scripts/image-rootfs.sh collects.
No container engine is needed: the collection runs into a temporary
directory and the binary is started from it with the collected loader and
libraries only, which is all the image would have."""
import os
import re
import shutil
import subprocess

import pytest

from helpers import find_sluice_bin

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCKERFILE = os.path.join(REPO, "deploy", "Dockerfile")
COLLECT = os.path.join(REPO, "scripts", "image-rootfs.sh")
LOADER = "lib64/ld-linux-x86-64.so.2"


def binary():
    rel = os.path.join(REPO, "build", "sluice")  # what make image uses
    return rel if os.access(rel, os.X_OK) else find_sluice_bin()


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("image") / "rootfs")
    subprocess.run([COLLECT, binary(), d], check=True, timeout=60)
    return d


def run_in(rootfs, *args):
    """The binary with the rootfs's loader and libraries, nothing else."""
    return subprocess.run([os.path.join(rootfs, LOADER), "--library-path",
                           os.path.join(rootfs, "lib"), os.path.join(rootfs, "usr/local/bin/sluice")]
                          + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=20, text=True, env={})


def test_rootfs_holds_the_binary_its_libraries_and_a_user(rootfs):
    files = sorted(os.path.relpath(os.path.join(dp, f), rootfs)
                   for dp, _, fs in os.walk(rootfs) for f in fs)
    ldd = subprocess.run(["ldd", binary()], stdout=subprocess.PIPE, text=True, check=True).stdout
    libs = sorted("lib/" + m.group(1) for m in re.finditer(r"^\s*(\S+) => /", ldd, re.M))
    assert libs and "lib/libc.so.6" in libs
    assert files == sorted(["usr/local/bin/sluice", LOADER, "etc/passwd", "etc/group"] + libs)
    assert "sluice:x:10001:10001:" in open(os.path.join(rootfs, "etc/passwd")).read()
    size = sum(os.path.getsize(os.path.join(rootfs, f)) for f in files)
    assert size < 64 << 20, "%d bytes" % size  # binary + libc, OpenSSL, nghttp2, libev, libyaml


def test_binary_starts_from_the_rootfs_alone(rootfs):
    p = run_in(rootfs, "--version")
    assert p.returncode == 0, p.stderr
    assert re.match(r"sluice \d+\.\d+\.\d+ \(commit \S+; nghttp2 [\d.]+, OpenSSL ", p.stdout), p.stdout
    # The image's CMD configuration loads too (libyaml, OpenSSL at work).
    p = run_in(rootfs, "check", "-c", os.path.join(REPO, "deploy", "examples", "sluice.yaml"))
    assert p.returncode == 0, p.stderr


def test_dockerfile_is_scratch_non_root_and_labelled():
    text = open(DOCKERFILE).read()
    code = [l for l in text.splitlines() if l.strip() and not l.lstrip().startswith("#")]
    froms = [l for l in code if l.startswith("FROM ")]
    assert froms == ["FROM scratch"], froms  # nothing is pulled from a registry
    assert "USER 10001:10001" in code
    for key, arg in (("version", "VERSION"), ("revision", "REVISION")):
        assert re.search(r'org\.opencontainers\.image\.%s="\$\{%s\}"' % (key, arg), text), key
        assert "ARG %s" % arg in text
    # Every COPY source is the collected rootfs or a file in the repository,
    # and the build context's ignore file lets it in.
    ignore = open(DOCKERFILE + ".dockerignore").read().split()
    for l in code:
        if l.startswith("COPY "):
            src = l.split()[1]
            assert src == "build/image/rootfs/" or os.path.exists(os.path.join(REPO, src)), src
            assert "!" + src in ignore, src
    assert 'ENTRYPOINT ["/usr/local/bin/sluice"]' in code


def podman_works():
    """Why podman cannot build here, or None when it can."""
    try:
        p = subprocess.run(["podman", "info"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True, timeout=60)
    except FileNotFoundError:
        return "podman is not installed"
    except subprocess.TimeoutExpired:
        return "podman info timed out"
    return None if p.returncode == 0 else "podman info failed: %s" % p.stderr.strip()[-200:]


def test_make_image_builds_with_podman(tmp_path):
    """`make image` for real: scripts/image.sh builds deploy/Dockerfile with
    podman, and the image's own filesystem (podman export, no container is
    run: this machine's cgroups let crun start nothing) holds the binary,
    its libraries and the configuration its CMD names, runnable as uid
    10001 from that filesystem alone (chroot)."""
    why = podman_works()
    if why:
        pytest.skip("make image not checked with an engine: " + why)
    tag = "localhost/sluice-test:%d" % os.getpid()
    p = subprocess.run([os.path.join(REPO, "scripts", "image.sh"), binary(), tag], cwd=REPO,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert p.returncode == 0, p.stdout
    m = re.search(r"image: built %s with podman, (\d+) bytes" % re.escape(tag), p.stdout)
    assert m, p.stdout
    assert int(m.group(1)) < 64 << 20
    container = None
    try:
        meta = subprocess.run(["podman", "image", "inspect", tag, "--format",
                               "{{.Config.User}}|{{json .Config.Entrypoint}}|{{json .Config.Cmd}}|"
                               "{{index .Config.Labels \"org.opencontainers.image.revision\"}}"],
                              stdout=subprocess.PIPE, text=True, check=True, timeout=60).stdout
        user, entry, cmd, revision = meta.strip().split("|")
        assert user == "10001:10001"
        assert entry == '["/usr/local/bin/sluice"]'
        assert cmd == '["run","-c","/etc/sluice/sluice.yaml"]'
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, stdout=subprocess.PIPE,
                              text=True).stdout.strip()
        assert revision == (head or "unknown")
        container = subprocess.run(["podman", "create", tag], stdout=subprocess.PIPE, text=True,
                                   check=True, timeout=60).stdout.strip()
        tar = str(tmp_path / "image.tar")
        subprocess.run(["podman", "export", "-o", tar, container], check=True, timeout=120)
        root = tmp_path / "fs"
        root.mkdir()
        subprocess.run(["tar", "-xf", tar, "-C", str(root)], check=True, timeout=60)
        assert (root / "etc/sluice/sluice.yaml").is_file()
        assert not (root / "bin/sh").exists()  # nothing but what sluice needs
        if os.geteuid() != 0:
            pytest.skip("image built and inspected; running it by chroot needs root")
        chroot = shutil.which("chroot", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
        assert chroot, "coreutils' chroot not found"

        def run(*args):
            return subprocess.run([chroot, "--userspec=10001:10001", str(root),
                                   "/usr/local/bin/sluice"] + list(args), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, timeout=30, env={})
        r = run("--version")
        assert r.returncode == 0, r.stderr
        assert re.match(r"sluice \d+\.\d+\.\d+ \(commit ", r.stdout), r.stdout
        r = run("check", "-c", "/etc/sluice/sluice.yaml")  # the CMD's configuration loads
        assert r.returncode == 0, r.stderr
    finally:
        if container:
            subprocess.run(["podman", "rm", "-f", container], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60)
        subprocess.run(["podman", "rmi", "-f", tag], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)
