#!/bin/sh
# make image: the runtime image of deploy/Dockerfile, with podman or docker
# when one of them has a working engine. Otherwise it says why not and
# exits 0, leaving the collected root filesystem and its size (an estimate
# of the image's) behind.
#
#   scripts/image.sh BINARY [TAG]
set -eu
bin=${1:?usage: $0 BINARY [TAG]}
rootfs=build/image/rootfs
./scripts/image-rootfs.sh "$bin" "$rootfs"
version=$("$rootfs/lib64/ld-linux-x86-64.so.2" --library-path "$rootfs/lib" \
    "$rootfs/usr/local/bin/sluice" version | awk '{ print $2; exit }')
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
tag=${2:-sluice:$version}
bytes=$(du -sb "$rootfs" | awk '{ print $1 }')
echo "image: root filesystem $rootfs: $(find "$rootfs" -type f | wc -l) files, $bytes bytes" \
     "(the image's size, give or take the config file and metadata)"
why=""
for tool in podman docker; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        why="$why $tool: not installed;"
        continue
    fi
    if ! err=$("$tool" info 2>&1 >/dev/null); then
        why="$why $tool: no working engine ($(printf '%s' "$err" | grep -v '^$' | tail -1));"
        continue
    fi
    "$tool" build -f deploy/Dockerfile --build-arg VERSION="$version" \
        --build-arg REVISION="$revision" --build-arg CREATED="$created" -t "$tag" .
    echo "image: built $tag with $tool, $("$tool" image inspect --format '{{.Size}}' "$tag") bytes"
    exit 0
done
echo "image: cannot build the image here:$why"
echo "image: nothing built; $rootfs is what deploy/Dockerfile would copy"
exit 0
