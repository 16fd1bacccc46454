#!/bin/bash
# provex image entrypoint: pick kernel headers for BCC, then run the command.
#
# BCC compiles provex's BPF programs against /lib/modules/$(uname -r)/build
# (and .../source). In the Pod, the host's /lib/modules and /usr/src are
# mounted read-only under /host and /lib/modules is a small emptyDir, so this
# script links, in order of preference:
#   1. headers already at /lib/modules/$(uname -r)/build (mounted directly);
#   2. the host's headers (/host/lib/modules/$kver/build, whose symlink usually
#      points into /usr/src, mapped to /host/usr/src);
#   3. nothing, when the kernel offers /sys/kernel/kheaders.tar.xz
#      (CONFIG_IKHEADERS): BCC unpacks it into /tmp itself;
#   4. the Debian headers baked into the image (the `make run` fallback of
#      scripts/setup-host.sh): provex's programs read no kernel structs, so a
#      version mismatch cannot mislead them; a warning names both versions.
# Every path can be overridden by an environment variable (tests use that).
set -euo pipefail

kver=${PROVEX_KERNEL_RELEASE:-$(uname -r)}
modules=${PROVEX_MODULES_DIR:-/lib/modules}
host_modules=${PROVEX_HOST_MODULES:-/host/lib/modules}
host_usr_src=${PROVEX_HOST_USR_SRC:-/host/usr/src}
baked=${PROVEX_BAKED_HEADERS:-/opt/provex/kernel-headers}
kheaders=${PROVEX_KHEADERS:-/sys/kernel/kheaders.tar.xz}
caps_python=${PROVEX_CAPS_PYTHON:-/opt/provex/bin/python3-caps}
venv=${PROVEX_VENV:-/opt/provex/venv}

json_str() {
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  printf '"%s"' "$s"
}

# log LEVEL MESSAGE [KEY VALUE]...: one JSON line on stderr, like the agent's own logs.
log() {
  local level=$1 msg=$2 line
  shift 2
  line="{\"ts\":\"$(date -u +%Y-%m-%dT%H:%M:%S.000Z)\",\"level\":\"$level\",\"logger\":\"provex.entrypoint\",\"msg\":$(json_str "$msg")"
  while [ "$#" -ge 2 ]; do
    line+=",$(json_str "$1"):$(json_str "$2")"
    shift 2
  done
  printf '%s}\n' "$line" >&2
}

# The container path of a host entry under $host_modules/$kver, or "".
host_path() {
  local p=$1 target
  if [ -L "$p" ]; then
    target=$(readlink "$p")
    case $target in
      /usr/src/*) printf '%s' "$host_usr_src/${target#/usr/src/}" ;;
      /lib/modules/*) printf '%s' "$host_modules/${target#/lib/modules/}" ;;
      /*) printf '' ;;  # elsewhere on the host: not mounted
      *) printf '%s' "$(dirname "$p")/$target" ;;
    esac
  elif [ -d "$p" ]; then
    printf '%s' "$p"
  fi
}

link_headers() {  # BUILD [SOURCE]
  mkdir -p "$modules/$kver"
  ln -sfn "$1" "$modules/$kver/build"
  if [ -n "${2:-}" ]; then
    ln -sfn "$2" "$modules/$kver/source"
  fi
}

choose_headers() {
  if [ -d "$modules/$kver/build/include" ]; then
    log info "kernel headers: found" source mounted kernel "$kver" build "$modules/$kver/build"
    return 0
  fi
  local build source
  build=$(host_path "$host_modules/$kver/build")
  source=$(host_path "$host_modules/$kver/source")
  if [ -n "$build" ] && [ -d "$build/include" ]; then
    [ -d "$source" ] || source=""
    link_headers "$build" "$source"
    log info "kernel headers: found" source host kernel "$kver" build "$build"
    return 0
  fi
  if [ -r "$kheaders" ]; then
    log info "kernel headers: found" source kheaders kernel "$kver" archive "$kheaders"
    return 0
  fi
  local arch tree common
  arch=${PROVEX_ARCH:-$(dpkg --print-architecture 2>/dev/null || echo amd64)}
  tree=$(find "$baked" -mindepth 1 -maxdepth 1 -type d -name "linux-headers-*-$arch" 2>/dev/null | sort -V | tail -n 1)
  common=${tree%-"$arch"}-common
  if [ -n "$tree" ] && [ -d "$tree/include" ] && [ -d "$common/include" ]; then
    link_headers "$tree" "$common"
    log warning "kernel headers: none for the running kernel; linked the image's distribution headers" \
      source image kernel "$kver" build "$tree" \
      why "provex's BPF programs read no kernel structs, so a layout mismatch cannot mislead them"
    return 0
  fi
  log error "kernel headers: none found" kernel "$kver" \
    tried "$modules/$kver/build, $host_modules/$kver/build, $kheaders, $baked" \
    fix "install linux-headers-$kver on the node, or mount /lib/modules and /usr/src (see helm/provex/README.md)"
  return 1
}

choose_headers || exit 1

if [ "$#" -eq 0 ]; then
  set -- provex run --config /etc/provex/provex.yaml
fi

# Non-root: Kubernetes sets no ambient capabilities, so the agent runs on the
# image's interpreter copy that carries file capabilities.
if [ "$1" = provex ] && [ "$(id -u)" != 0 ] && [ -x "$caps_python" ]; then
  shift
  site=$(find "$venv/lib" -mindepth 2 -maxdepth 2 -type d -name site-packages | head -n 1)
  log info "running as non-root with file capabilities" uid "$(id -u)" interpreter "$caps_python"
  PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" exec "$caps_python" -m exporter "$@"
fi
exec "$@"
