#!/bin/sh
# Collects the runtime image's root filesystem: the sluice binary, every
# shared library `ldd` lists for it, the dynamic loader, and /etc/passwd and
# /etc/group naming the unprivileged user 10001. deploy/Dockerfile copies the
# result into a FROM scratch image; test_image.py runs the binary from it
# with the collected loader and libraries only.
#
#   scripts/image-rootfs.sh BINARY DESTDIR
#
# Layout: DESTDIR/usr/local/bin/sluice, DESTDIR/lib/<each library>,
# DESTDIR/lib64/ld-linux-x86-64.so.2 (the binary's PT_INTERP path, so the
# kernel finds it), DESTDIR/etc/{passwd,group}. glibc's loader searches /lib
# by default, so the image needs no ld.so.cache.
set -eu
if [ $# -ne 2 ]; then
    echo "usage: $0 BINARY DESTDIR" >&2
    exit 1
fi
bin=$1
dest=$2
[ -x "$bin" ] || { echo "$0: $bin is not an executable (run make first)" >&2; exit 1; }
rm -rf "$dest"
mkdir -p "$dest/usr/local/bin" "$dest/lib" "$dest/etc"
cp -L "$bin" "$dest/usr/local/bin/sluice"
# The build keeps its debug information (-g); the image does not need it.
if command -v strip >/dev/null 2>&1; then
    strip --strip-debug "$dest/usr/local/bin/sluice"
fi
interp=$(readelf -l "$bin" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
[ -n "$interp" ] || { echo "$0: $bin has no program interpreter (static?)" >&2; exit 1; }
mkdir -p "$dest$(dirname "$interp")"
cp -L "$interp" "$dest$interp"
# "libfoo.so.1 => /lib/x86_64-linux-gnu/libfoo.so.1 (0x...)": copy the
# target under its soname. vdso lines have no path; the loader's line is
# handled above.
ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }' | while read -r name path; do
    cp -L "$path" "$dest/lib/$name"
done
if ldd "$bin" | grep -q 'not found'; then
    echo "$0: ldd cannot resolve every library of $bin:" >&2
    ldd "$bin" | grep 'not found' >&2
    exit 1
fi
printf 'sluice:x:10001:10001:sluice:/nonexistent:/sbin/nologin\n' > "$dest/etc/passwd"
printf 'sluice:x:10001:\n' > "$dest/etc/group"
