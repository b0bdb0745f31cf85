#!/bin/sh
# ensure-deps.sh: checks that the tools the build and the tests need are installed.
#
# Usage: scripts/ensure-deps.sh [--need-qemu] [--need-image]
#   always        python3 (python3), make (make), the Swift toolchain
#   --need-qemu   qemu-system-x86_64 (qemu-system-x86), qemu-system-aarch64 (qemu-system-arm),
#                 qemu-img (qemu-utils)
#   --need-image  mcopy (mtools), mkfs.fat (dosfstools), sfdisk (fdisk), dtc
#                 (device-tree-compiler), for disk/SD images and the Pi's test DTB
#
# A missing Debian package is installed when running as root (`apt-get update` then
# `apt-get install -y PKGS`); otherwise the script stops at once, printing the command to run,
# and exits 1. The Swift toolchain is not a Debian package: it is looked for as
# /opt/swift/usr/bin/swiftc, then swiftc on PATH, and only reported when missing.
# Exit status: 0 when everything is there (after installing, as root), 1 otherwise, 2 on a
# usage error.

set -u

need_qemu=0
need_image=0
for arg in "$@"; do
    case "$arg" in
        --need-qemu) need_qemu=1 ;;
        --need-image) need_image=1 ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "ensure-deps.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
    esac
done

# "command package" pairs: the command proves the package is installed.
checks="python3 python3
make make"
if [ "$need_qemu" = 1 ]; then
    checks="$checks
qemu-system-x86_64 qemu-system-x86
qemu-system-aarch64 qemu-system-arm
qemu-img qemu-utils"
fi
if [ "$need_image" = 1 ]; then
    checks="$checks
mcopy mtools
mkfs.fat dosfstools
sfdisk fdisk
dtc device-tree-compiler"
fi

# Finds a command on PATH or in the sbin directories a non-root PATH often lacks.
have() {
    command -v "$1" >/dev/null 2>&1 && return 0
    for dir in /usr/sbin /sbin; do
        [ -x "$dir/$1" ] && return 0
    done
    return 1
}

missing_packages() {
    echo "$checks" | while read -r cmd pkg; do
        have "$cmd" || printf '%s ' "$pkg"
    done
}

have_swift() {
    [ -x /opt/swift/usr/bin/swiftc ] || command -v swiftc >/dev/null 2>&1
}

packages=$(missing_packages)
packages=${packages% }
if [ -n "$packages" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "ensure-deps.sh: installing: $packages"
        export DEBIAN_FRONTEND=noninteractive
        # shellcheck disable=SC2086  # one word per package
        if ! { apt-get update && apt-get install -y $packages; }; then
            echo "ensure-deps.sh: apt-get failed installing: $packages" >&2
            exit 1
        fi
        still=$(missing_packages)
        if [ -n "$still" ]; then
            echo "ensure-deps.sh: still missing after apt-get install: ${still% }" >&2
            exit 1
        fi
    else
        echo "ensure-deps.sh: missing Debian packages: $packages" >&2
        echo "Run:" >&2
        echo "    sudo apt-get install -y $packages" >&2
        exit 1
    fi
fi

if ! have_swift; then
    echo "ensure-deps.sh: the Swift toolchain is missing: neither /opt/swift/usr/bin/swiftc nor" \
         "swiftc on PATH. Install a Swift 6 toolchain (with Embedded Swift) under /opt/swift." >&2
    exit 1
fi
exit 0
