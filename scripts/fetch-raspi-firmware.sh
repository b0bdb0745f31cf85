#!/bin/sh
# fetch-raspi-firmware.sh: puts the Raspberry Pi GPU firmware (bootcode.bin, start.elf,
# fixup.dat) from Debian's raspi-firmware package into DIR, without installing the package.
#
# Usage: scripts/fetch-raspi-firmware.sh DIR
#
# raspi-firmware lives in Debian's non-free-firmware component, which the stock sources do
# not list. As root the script adds that component for the machine's own Debian mirror and
# suite (/etc/apt/sources.list.d/raspi-firmware-non-free.sources, taken from debian.sources),
# runs `apt-get update`, then `apt-get download raspi-firmware` and `dpkg-deb -x` into a
# scratch directory. The files are kept in DIR, so later runs need neither root nor network.
# Exit status: 0 with the three files in DIR, 1 otherwise (with the reason on stderr).
set -eu

dir=${1:?usage: fetch-raspi-firmware.sh DIR}
files="bootcode.bin start.elf fixup.dat"
have_all() { for f in $files; do [ -s "$dir/$f" ] || return 1; done; }
if have_all; then exit 0; fi
mkdir -p "$dir"

if ! apt-cache show raspi-firmware >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "fetch-raspi-firmware: raspi-firmware is not in apt's lists; as root run:" >&2
        echo "  sudo $0 $dir   (adds Debian's non-free-firmware component to apt's sources)" >&2
        exit 1
    fi
    sources=/etc/apt/sources.list.d/raspi-firmware-non-free.sources
    uri=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
    suite=$(sed -n 's/^Suites: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1 | cut -d' ' -f1)
    [ -n "$uri" ] || uri=http://deb.debian.org/debian
    [ -n "$suite" ] || suite=$(. /etc/os-release && echo "$VERSION_CODENAME")
    printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: non-free-firmware\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$uri" "$suite" > "$sources"
    echo "fetch-raspi-firmware: added $sources ($uri $suite non-free-firmware)"
    apt-get update -q >/dev/null
fi

scratch=$(mktemp -d)
chmod 755 "$scratch"   # apt-get download drops to user _apt, which must write here
trap 'rm -rf "$scratch"' EXIT
(cd "$scratch" && apt-get download -q raspi-firmware >/dev/null)
dpkg-deb -x "$scratch"/raspi-firmware_*.deb "$scratch/root"
for f in $files; do
    found=$(find "$scratch/root" -name "$f" -type f | head -1)
    [ -n "$found" ] || { echo "fetch-raspi-firmware: $f is not in the package" >&2; exit 1; }
    cp "$found" "$dir/$f"
done
ls "$scratch"/raspi-firmware_*.deb | sed 's|.*/|fetch-raspi-firmware: from |'
