#!/usr/bin/env bash
# Fetch the LittleHorse server (io.littlehorse:littlehorse-server, the only server
# artifact on Maven Central) and its runtime dependencies into .cache/peers/littlehorse/lib,
# only when missing. Prints the lib directory on the last line of stdout; exits non-zero
# (reason on stderr) when it cannot. Usage: bench/peers/setup_littlehorse.sh
# (LH_VERSION to pick another version; 1.2.1 is the only one published, Oct 2026).
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=${LH_VERSION:-1.2.1}
CACHE=$PWD/.cache/peers/littlehorse
LIB=$CACHE/lib-$VERSION
if [ -f "$LIB/.complete" ]; then
    echo "$LIB"; exit 0
fi
command -v mvn >/dev/null || { echo "no mvn on PATH" >&2; exit 1; }
mkdir -p "$CACHE"
cat >"$CACHE/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>bench.peers</groupId>
  <artifactId>littlehorse-server-deps</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>io.littlehorse</groupId>
      <artifactId>littlehorse-server</artifactId>
      <version>$VERSION</version>
    </dependency>
  </dependencies>
</project>
POM
rm -rf "$LIB"
timeout "${SETUP_TIMEOUT:-1200}" mvn -q -B -f "$CACHE/pom.xml" -Dmaven.repo.local="$CACHE/m2" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$LIB" >&2
touch "$LIB/.complete"
echo "$LIB"
