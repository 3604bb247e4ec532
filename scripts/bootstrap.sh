#!/usr/bin/env bash
# Makes a fresh machine ready: virtual environment with the package and its dev
# extras, PostgreSQL server binaries, Chromium (browser tests), Apache Kafka's jars.
# Idempotent; fast when done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv

say() { printf '[bootstrap] %s\n' "$*" >&2; }
die() { printf '[bootstrap] error: %s\n' "$*" >&2; exit 1; }

# --- Python ---------------------------------------------------------------
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "Python 3.11 or newer is needed (found $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11"
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  say "installing the package and its dev extras (editable)"
  mkdir -p .cache
  if ! { "$VENV/bin/pip" install --upgrade pip && "$VENV/bin/pip" install -e '.[dev]'; } >.cache/pip-install.log 2>&1; then
    tail -n 30 .cache/pip-install.log >&2
    die "pip install failed (full log: .cache/pip-install.log)"
  fi
  touch "$stamp"
fi

# apt_install PKG...: apt-get update and install, waiting (up to 10 minutes) while another
# apt holds its locks (two bootstraps at once) instead of failing at the first try
apt_install() {
  local sudo="" tries=0 out
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  while :; do
    if out=$($sudo apt-get update -qq 2>&1 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" 2>&1 >/dev/null); then
      return 0
    fi
    case "$out" in
      *"Could not get lock"*|*"Unable to lock"*) ;;
      *) printf '%s\n' "$out" >&2; return 1 ;;
    esac
    tries=$((tries + 1)); [ "$tries" -ge 60 ] && { printf '%s\n' "$out" >&2; return 1; }
    say "apt is busy (another install holds its lock); waiting"
    sleep 10
  done
}

# --- PostgreSQL server binaries (only when no DATABASE_URL is given) -------
if [ -z "${DATABASE_URL:-}" ]; then
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    say "installing PostgreSQL server binaries with apt"
    apt_install postgresql \
      || die "could not install PostgreSQL; install the 'postgresql' package or set DATABASE_URL"
  fi
fi

# --- Chromium and its driver, for the console's browser tests ----------------
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  say "installing chromium and chromium-driver with apt (the console's browser tests)"
  apt_install chromium chromium-driver \
    || die "could not install chromium; install the 'chromium' and 'chromium-driver' packages"
fi

# --- Apache Kafka jars (only when no KAFKA_BOOTSTRAP_SERVERS is given) -----
if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  command -v java >/dev/null || die "Java 17+ is needed to run Kafka locally: apt-get install openjdk-17-jre-headless (or set KAFKA_BOOTSTRAP_SERVERS)"
  "$VENV/bin/python" -m orchestrator.devstack jars >/dev/null
fi
