#!/bin/sh
# Installs the Debian packages the test suite needs, when this user can (root, or sudo without a
# password); otherwise prints, per package, what to install. Never fails the calling make target:
# tests whose package is missing are skipped with that reason (CI sets EDGEKILN_REQUIRE_SYSTEM=1,
# which turns those skips into failures).
#   openssh-server openssh-client  a real sshd on 127.0.0.1 as the loopback "device" (deploy tests)
#   qemu-user-static               an emulated Raspberry Pi userland (validate --emulate tests)
#   qemu-user                      the dynamic qemu-aarch64, which loads TCG plugins (emulated instruction counts)
#   chromium                       headless Chromium: the report page opened in a real browser
set -u
missing=""
for pkg in "$@"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing="$missing $pkg"
done
[ -z "$missing" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "system packages:$missing are missing and this is not a Debian/Ubuntu host (no apt-get):" \
         "the tests that need them will be skipped"
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "system packages:$missing are missing and cannot be installed without root:" \
         "run 'sudo apt-get install$missing', or the tests that need them will be skipped"
    exit 0
fi
echo "installing system packages:$missing"
$SUDO apt-get update -qq || echo "apt-get update failed; trying the package lists already present"
# shellcheck disable=SC2086  # one word per package
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null \
    || echo "apt-get could not install$missing: the tests that need them will be skipped"
exit 0
