#!/usr/bin/env bash
# make check-alerts: deploy/prometheus/cloudtaser-alerts.yaml is a valid rule
# file (promtool check rules) and its alerts fire on what they say and stay
# quiet otherwise (promtool test rules, tests/cluster/cloudtaser-alerts.test.yaml).
# promtool comes from Debian's prometheus package (.ci/run installs it, as
# does make check-metrics when run as root). Without it this check is skipped,
# saying so; CI always has it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
if ! command -v promtool >/dev/null; then
  echo "SKIP check-alerts: promtool not found (apt-get install --no-install-recommends prometheus)"
  exit 0
fi
promtool --version 2>&1 | head -1
promtool check rules "$root/deploy/prometheus/cloudtaser-alerts.yaml"
promtool test rules "$here/cloudtaser-alerts.test.yaml"
echo "check-alerts: rules valid, rule tests pass"
