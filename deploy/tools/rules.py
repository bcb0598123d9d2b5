"""`make rules-check`: Regulars' alerts, as Prometheus itself would load and run them.

The PrometheusRule (deploy/k8s/base/monitoring/prometheusrule.yaml) is the one source:
its ``spec`` is a plain Prometheus rules file, so it is extracted as it is into
``alerts.rules.yaml`` (``--out DIR`` keeps it, for a Prometheus without the Operator),
checked with ``promtool check rules`` and tested with ``promtool test rules`` against
deploy/prometheus/alerts-test.yaml, in which each alert fires in a test of its own."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "k8s" / "base" / "monitoring"
RULE = MONITORING / "prometheusrule.yaml"
TESTS = ROOT / "deploy" / "prometheus" / "alerts-test.yaml"
RULES_FILE = "alerts.rules.yaml"


def rules(rule: Path = RULE) -> dict[str, Any]:
    """The PrometheusRule's groups as a Prometheus rules file."""
    doc = yaml.safe_load(rule.read_text())
    if doc.get("kind") != "PrometheusRule":
        raise SystemExit(f"{rule}: not a PrometheusRule")
    return {"groups": doc["spec"]["groups"]}


def write(directory: Path) -> Path:
    """The rules file and a copy of the tests beside it (the tests name it relatively)."""
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / RULES_FILE
    out.write_text(
        "# extracted from deploy/k8s/base/monitoring/prometheusrule.yaml: edit that\n"
        + yaml.safe_dump(rules(), sort_keys=False, width=100)
    )
    shutil.copy(TESTS, directory / TESTS.name)
    return out


def check(promtool: str, directory: Path) -> subprocess.CompletedProcess[str]:
    """``promtool check rules`` then ``promtool test rules``; the second's result."""
    out = write(directory)
    checked = subprocess.run(  # noqa: S603
        [promtool, "check", "rules", str(out)], capture_output=True, text=True
    )
    if checked.returncode != 0:
        return checked
    return subprocess.run(  # noqa: S603
        [promtool, "test", "rules", TESTS.name], cwd=directory, capture_output=True, text=True
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--promtool", default=shutil.which("promtool") or "promtool")
    parser.add_argument("--out", type=Path, help="keep the rules file in this directory")
    args = parser.parse_args()
    if args.out is not None:
        print(write(args.out))
        return
    with tempfile.TemporaryDirectory(prefix="regulars-rules-") as tmp:
        done = check(args.promtool, Path(tmp))
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"rules-check: promtool failed ({done.returncode})")
    print(f"rules-check: {RULE.relative_to(ROOT)} passes promtool check and test rules")


if __name__ == "__main__":
    main()
