#!/usr/bin/env bash
# Install everything mediasvc and its tests need on a fresh Debian machine (run as root or
# with sudo): the real peers from Debian (DCMTK, dicom3tools, xorriso, genisoimage's isoinfo,
# Orthanc, systemd-analyze, Chromium and its WebDriver for the console's browser test) and the
# Python package with its test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
PKGS="dcmtk dicom3tools xorriso genisoimage orthanc systemd chromium chromium-driver openssl"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    for i in 1 2 3; do $SUDO apt-get update -qq && break || sleep 5; done
    for i in 1 2 3; do
        $SUDO apt-get install -y -qq --no-install-recommends $missing && break || sleep 5
    done
fi
# The Orthanc package starts a system instance on install; tests start their own on other ports.
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
# Bytecode for the editable install (pip compiles only what it copies): where
# PYTHONDONTWRITEBYTECODE is set, every start would otherwise compile the package again.
python3 -m compileall -q mediasvc >/dev/null
