#!/usr/bin/env bash
# Makes a fresh machine ready: virtual environment with the package and its dev
# extras, PostgreSQL server binaries, Apache Kafka's jars. Idempotent; fast when done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
CACHE_ROOT=${SAGA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/saga-orchestrator}
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' compose/local/pom.xml)
KAFKA_LIBS="$CACHE_ROOT/kafka-$KAFKA_VERSION/libs"

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
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -e '.[dev]'
  touch "$stamp"
fi

# --- PostgreSQL server binaries (only when no DATABASE_URL is given) -------
if [ -z "${DATABASE_URL:-}" ]; then
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    say "installing PostgreSQL server binaries with apt"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null \
      || die "could not install PostgreSQL; install the 'postgresql' package or set DATABASE_URL"
  fi
fi

# --- Apache Kafka jars (only when no KAFKA_BOOTSTRAP_SERVERS is given) -----
if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  command -v java >/dev/null || die "Java 17+ is needed to run Kafka locally: apt-get install openjdk-17-jre-headless (or set KAFKA_BOOTSTRAP_SERVERS)"
  if [ ! -f "$KAFKA_LIBS/.complete" ]; then
    command -v mvn >/dev/null || die "Maven is needed to fetch Kafka's jars: apt-get install maven (or set KAFKA_BOOTSTRAP_SERVERS)"
    say "resolving Apache Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS"
    rm -rf "$KAFKA_LIBS" && mkdir -p "$KAFKA_LIBS"
    (cd compose/local && mvn -B -q dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS") \
      || die "Maven could not resolve Kafka's jars (see output above)"
    touch "$KAFKA_LIBS/.complete"
  fi
fi
