# Shared by scripts/test.sh and scripts/check-deploy.sh (sourced): installing what is missing.

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=
apt_install() {
  [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

# venv_with DIR REQUIREMENTS: a Python venv at DIR with REQUIREMENTS installed.
venv_with() {
  if [ ! -x "$1/bin/python" ]; then
    python3 -m venv "$1" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$1"; }
  fi
  "$1/bin/pip" install -q --disable-pip-version-check -r "$2"
}
