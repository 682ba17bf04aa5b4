#!/usr/bin/env bash
# Siaga Relay installer.
#
#   ./install.sh --dev            development / CI: .venv with the package editable + test tools,
#                                 Debian packages the tests need (mosquitto, chromium, openssl, direwolf, sox). Idempotent.
#   sudo ./install.sh             a village post (Raspberry Pi OS Bookworm, arm64/armhf) or a center:
#                                 user "siaga" (group dialout), venv in /opt/siaga, /etc/siaga/siaga.toml
#                                 from the example (never overwritten), state in /var/lib/siaga,
#                                 systemd units + udev rule installed, siaga.service enabled.
#   sudo ./install.sh --uninstall remove the program and units; keeps /etc/siaga and /var/lib/siaga
#   sudo ./install.sh --uninstall --purge   ... and delete config and data too
#
# Options: --root DIR   install into DIR as if it were / (for tests and image building; no services are
#                       started); --center  enable siaga-center.service instead of siaga.service;
#                       --python PY  the interpreter for the venv (default python3);
#                       --wheels DIR  install the Python dependencies offline from wheels in DIR (also
#                       $SIAGA_WHEELS): a post without a registry, or a container fed wheels built on a host.
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODE=system
ROOT=""
PURGE=0
ROLE=post
PYTHON="${PYTHON:-python3}"
WHEELS="${SIAGA_WHEELS:-}"

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "==> $*"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --dev) MODE=dev ;;
        --uninstall) MODE=uninstall ;;
        --purge) PURGE=1 ;;
        --root) ROOT="${2:?--root needs a directory}"; shift ;;
        --root=*) ROOT="${1#--root=}" ;;
        --center) ROLE=center ;;
        --python) PYTHON="${2:?--python needs an interpreter}"; shift ;;
        --wheels) WHEELS="${2:?--wheels needs a directory}"; shift ;;
        --wheels=*) WHEELS="${1#--wheels=}" ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "Python 3.11 or newer is needed ($PYTHON is $("$PYTHON" --version 2>&1))"

apt_install() {
    # Install Debian packages that are missing; "apt-get update" once, only when something is needed.
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "needs root to install ${missing[*]} (run: sudo apt-get install ${missing[*]})"
    say "installing Debian packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

dev_install() {
    if command -v apt-get >/dev/null 2>&1; then
        # mosquitto: the tests start their own brokers; chromium: dashboard browser tests;
        # openssl: TLS test certificates; python3-venv: the venv itself; systemd: systemd-analyze verify
        # direwolf + sox: the TNC tests make audio (gen_packets, sox), decode it with direwolf and atest
        apt_install mosquitto mosquitto-clients chromium chromium-driver openssl ca-certificates systemd \
            direwolf sox
        # The package starts a system-wide broker on 1883; the tests never use it.
        # Debian's python3 needs python3-venv for "python3 -m venv" (ensurepip)
        "$PYTHON" -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
    else
        command -v mosquitto >/dev/null || die "mosquitto is missing and apt-get is not available"
    fi
    if [ ! -x "$SRC/.venv/bin/python" ]; then
        say "creating $SRC/.venv"
        "$PYTHON" -m venv "$SRC/.venv"
    fi
    "$SRC/.venv/bin/python" -m pip install -q --upgrade pip
    say "installing siaga-relay (editable) with test tools"
    "$SRC/.venv/bin/python" -m pip install -q -e "$SRC[test]"
    say "done: $SRC/.venv/bin/siaga"
}

user_add() {
    # A system user for the daemon; dialout gives it the USB serial radio.
    if [ -n "$ROOT" ]; then
        if [ -f "$ROOT/etc/passwd" ]; then
            grep -q '^siaga:' "$ROOT/etc/passwd" || useradd --prefix "$ROOT" --system --home-dir /var/lib/siaga \
                --no-create-home --shell /usr/sbin/nologin --groups dialout siaga
        else
            say "no $ROOT/etc/passwd: skipping the siaga user (create it when the image boots)"
        fi
    else
        id siaga >/dev/null 2>&1 || useradd --system --home-dir /var/lib/siaga --no-create-home \
            --shell /usr/sbin/nologin siaga
        getent group dialout >/dev/null && usermod -a -G dialout siaga
    fi
}

siaga_ids() {
    # uid:gid of siaga inside ROOT (numeric: ROOT's passwd may differ from the host's)
    local passwd="$ROOT/etc/passwd"
    [ -f "$passwd" ] && awk -F: '$1=="siaga"{print $3":"$4}' "$passwd"
}

system_install() {
    [ "$(id -u)" -eq 0 ] || die "system install needs root (sudo ./install.sh), or use --dev"
    if [ -z "$ROOT" ] && command -v apt-get >/dev/null 2>&1; then
        "$PYTHON" -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
    fi
    say "installing into ${ROOT:-/}"
    install -d -m 0755 "$ROOT/opt" "$ROOT/etc/siaga" "$ROOT/etc/systemd/system" "$ROOT/etc/udev/rules.d" \
        "$ROOT/usr/local/bin"
    user_add
    if [ ! -x "$ROOT/opt/siaga/bin/python" ]; then
        "$PYTHON" -m venv "$ROOT/opt/siaga"
    fi
    local offline=()
    if [ -n "$WHEELS" ]; then
        [ -d "$WHEELS" ] || die "--wheels $WHEELS is not a directory"
        # --no-index reaches the isolated build of $SRC too: its setuptools/wheel come from $WHEELS
        offline=(--no-index --find-links "$WHEELS")
        say "installing offline from the wheels in $WHEELS"
    else
        "$ROOT/opt/siaga/bin/python" -m pip install -q --upgrade pip
    fi
    "$ROOT/opt/siaga/bin/python" -m pip install -q --upgrade "${offline[@]}" "$SRC"
    ln -sf /opt/siaga/bin/siaga "$ROOT/usr/local/bin/siaga"
    if [ -e "$ROOT/etc/siaga/siaga.toml" ]; then
        say "keeping existing /etc/siaga/siaga.toml"
    else
        install -m 0640 "$SRC/systemd/siaga.example.toml" "$ROOT/etc/siaga/siaga.toml"
        say "wrote /etc/siaga/siaga.toml from the example: set node.post_id, then: siaga config check"
    fi
    install -d -m 0750 "$ROOT/var/lib/siaga"
    local ids
    ids="$(siaga_ids || true)"
    if [ -n "$ids" ]; then
        chown "$ids" "$ROOT/var/lib/siaga"
        chown "root:${ids#*:}" "$ROOT/etc/siaga/siaga.toml"
    fi
    for unit in siaga.service siaga-center.service; do
        [ -f "$SRC/systemd/$unit" ] && install -m 0644 "$SRC/systemd/$unit" "$ROOT/etc/systemd/system/$unit"
    done
    direwolf_install
    if [ -f "$SRC/systemd/99-meshtastic.rules" ]; then
        install -m 0644 "$SRC/systemd/99-meshtastic.rules" "$ROOT/etc/udev/rules.d/99-meshtastic.rules"
    fi
    local unit=siaga.service
    [ "$ROLE" = center ] && unit=siaga-center.service
    if [ -n "$ROOT" ]; then
        systemctl --root="$ROOT" enable "$unit" >/dev/null 2>&1 \
            || ln -sf "/etc/systemd/system/$unit" "$ROOT/etc/systemd/system/multi-user.target.wants/$unit" 2>/dev/null \
            || { install -d "$ROOT/etc/systemd/system/multi-user.target.wants" \
                 && ln -sf "/etc/systemd/system/$unit" "$ROOT/etc/systemd/system/multi-user.target.wants/$unit"; }
    elif [ -d /run/systemd/system ]; then
        udevadm control --reload-rules 2>/dev/null || true
        systemctl daemon-reload
        systemctl enable "$unit"
        say "enabled $unit; start it with: systemctl start $unit (after editing /etc/siaga/siaga.toml)"
    else
        systemctl enable "$unit" >/dev/null 2>&1 || say "systemd is not running here: enable $unit yourself"
    fi
    say "done. Check the config with: siaga config check"
}

direwolf_install() {
    # A post whose config has [radio.tnc] with host: direwolf from Debian, its config written once from the
    # post's config (never over an operator's edits), and a unit ordered before siaga.service.
    local conf="$ROOT/etc/siaga/direwolf.conf" generated
    generated="$("$ROOT/opt/siaga/bin/siaga" --config "$ROOT/etc/siaga/siaga.toml" config direwolf 2>/dev/null)" \
        || return 0
    if [ -z "$ROOT" ] && command -v apt-get >/dev/null 2>&1; then
        apt_install direwolf
    fi
    if [ -e "$conf" ]; then
        say "keeping existing /etc/siaga/direwolf.conf"
    else
        printf '%s\n' "$generated" > "$conf"
        chmod 0644 "$conf"
        say "wrote /etc/siaga/direwolf.conf from [radio.tnc]: set ADEVICE to the USB soundcard (arecord -l)"
    fi
    install -m 0644 "$SRC/systemd/siaga-direwolf.service" "$ROOT/etc/systemd/system/siaga-direwolf.service"
    if [ -n "$ROOT" ]; then
        install -d "$ROOT/etc/systemd/system/multi-user.target.wants"
        ln -sf /etc/systemd/system/siaga-direwolf.service \
            "$ROOT/etc/systemd/system/multi-user.target.wants/siaga-direwolf.service"
    elif [ -d /run/systemd/system ]; then
        systemctl daemon-reload
        systemctl enable siaga-direwolf.service
    fi
}

system_uninstall() {
    [ "$(id -u)" -eq 0 ] || die "uninstall needs root"
    for unit in siaga.service siaga-center.service siaga-direwolf.service; do
        if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then
            systemctl disable --now "$unit" >/dev/null 2>&1 || true
        fi
        rm -f "$ROOT/etc/systemd/system/$unit" "$ROOT/etc/systemd/system/multi-user.target.wants/$unit"
    done
    rm -f "$ROOT/etc/udev/rules.d/99-meshtastic.rules" "$ROOT/usr/local/bin/siaga"
    # without it systemd keeps the removed units loaded ("systemctl status" still finds them)
    if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then
        systemctl daemon-reload
    fi
    rm -rf "$ROOT/opt/siaga"
    if [ "$PURGE" -eq 1 ]; then
        rm -rf "$ROOT/etc/siaga" "$ROOT/var/lib/siaga"  # direwolf.conf lives in /etc/siaga too
        say "removed program, config and data"
    else
        say "removed the program; kept /etc/siaga and /var/lib/siaga (use --purge to delete them)"
    fi
}

case "$MODE" in
    dev) dev_install ;;
    system) system_install ;;
    uninstall) system_uninstall ;;
esac
