#!/usr/bin/env python3
"""Checks that the Grafana dashboards and the Prometheus rules only query what mesh exports.

    scripts/check-dashboard-metrics.py              # self-test, then the files below
    scripts/check-dashboard-metrics.py --expr EXPR  # check one PromQL expression (exit 1 if bad)
    scripts/check-dashboard-metrics.py --write-rules FILE
        # also write every dashboard query, Grafana variables replaced by values, as a
        # recording rule in FILE, so that `promtool check rules FILE` parses them all

Files: observability/grafana/dashboards/*.json (every panel target and template variable
query) and observability/prometheus/alerts.yml (every alerting and recording rule).

The exported metric names are read from the source, never listed here: the names given to
the prometheus-cpp builders, i.e. the string argument of every `.Name("mesh_...")` call in src/
(every mesh metric is registered that way: `grep -rn 'Name("mesh_' src`), and the process
metrics of src/metrics/metrics.cpp, `gauge_family("process_...", ...)`. Any other "mesh_..."
string (a log key, an identifier) is no metric. A histogram (BuildHistogram().Name("...")) is
exported as <name>_bucket, <name>_sum and <name>_count only, so those are the names a query may
use. Besides them only Prometheus' own series listed in PROMETHEUS_SERIES are allowed. Label
names used in matchers and in by/without/on/ignoring/group_* clauses must be set somewhere by
the code (in a metric's .Add({...}) or a labels{...} map), be a target label (job, instance,
namespace), `le`, or be created by label_replace in the same expression.

PromQL is not parsed fully: string literals, ranges, matchers and grouping clauses are cut out,
and what remains of identifiers that are not followed by "(" and are not operators are metric
names. That covers the expressions used here; the self-test below pins it (and shows that a
misspelt name fails) before any file is checked.

Also prints, for information, the exported metrics that no dashboard shows.
"""
import argparse
import json
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROMETHEUS_SERIES = {
    "up", "scrape_duration_seconds", "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling", "scrape_series_added", "ALERTS", "ALERTS_FOR_STATE",
}
# `namespace`: the target label the Prometheus Operator adds, to tell mesh installations
# apart (docs/observability.md, "Known limit").
TARGET_LABELS = {"job", "instance", "namespace", "le", "__name__"}
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "bool", "offset", "inf", "nan", "atan2"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


class Exports:
    def __init__(self, metrics, histograms, labels):
        self.metrics = metrics        # every exported base name
        self.histograms = histograms  # the base names that are histograms
        self.labels = labels          # label names the code sets


# A builder's name: prometheus::BuildCounter().Name("mesh_..."), spaces and newlines allowed.
BUILDER_NAME = re.compile(r'\.Name\(\s*"(mesh_[a-z0-9_]+)"\s*\)')
HISTOGRAM_NAME = re.compile(r'BuildHistogram\(\)\s*\.Name\(\s*"([a-z0-9_]+)"\s*\)')
# The process collector's families (src/metrics/metrics.cpp): gauge_family("process_...", ...).
PROCESS_NAME = re.compile(r'\bgauge_family\(\s*"(process_[a-z0-9_]+)"\s*,')


def exports_of(texts):
    """The metrics, histograms and labels registered by these C++ source texts."""
    metrics, histograms, labels = set(), set(), set()
    for text in texts:
        metrics.update(BUILDER_NAME.findall(text))
        metrics.update(PROCESS_NAME.findall(text))
        histograms.update(HISTOGRAM_NAME.findall(text))
        for match in re.finditer(r"\.Add\(|\blabels\{", text):
            call = text[match.end():match.end() + 400].split(";", 1)[0]
            labels.update(re.findall(r'\{\s*"([a-z_][a-z0-9_]*)"\s*,', call))
    return Exports(metrics, histograms, labels)


def read_exports(src):
    texts = [path.read_text(encoding="utf-8", errors="replace")
             for path in sorted(src.rglob("*")) if path.suffix in (".cpp", ".hpp", ".h", ".cc")]
    exports = exports_of(texts)
    if not exports.metrics or not exports.histograms:
        sys.exit(f"check-dashboard-metrics: found no metric names under {src}")
    if not any(name.startswith("process_") for name in exports.metrics):
        sys.exit(f"check-dashboard-metrics: found no gauge_family(\"process_...\") under {src}")
    return exports


def split_expr(expr):
    """Returns (metric names, label names, labels made by label_replace) used by expr."""
    # A Grafana variable may stand for a duration or a value: ${x}, $x, $__rate_interval.
    text = re.sub(r"\$\{[^}]*\}|\$\w+", "1", expr)
    made = set(re.findall(r'label_(?:replace|join)\s*\(.*?,\s*"([A-Za-z_]\w*)"\s*,', text, re.S))
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', text)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    labels = set()

    def matchers(match):
        labels.update(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", match.group(1)))
        return " "

    text = re.sub(r"\{([^}]*)\}", matchers, text)

    def grouping(match):
        labels.update(re.findall(r"[A-Za-z_]\w*", match.group(2)))
        return " "

    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)",
                  grouping, text)
    text = re.sub(r"(?<![\w.])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[a-zA-Z]*", " ", text)  # numbers
    names = set()
    for match in re.finditer(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in KEYWORDS:
            continue
        names.add(name)
    return names, labels, made


def problems_of(expr, exports):
    names, labels, made = split_expr(expr)
    problems = []
    for name in sorted(names):
        if name in PROMETHEUS_SERIES:
            continue
        if name in exports.metrics and name not in exports.histograms:
            continue
        base = next((name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), None)
        if base in exports.histograms:
            continue
        if name in exports.histograms:
            problems.append(f"{name} is a histogram: query {name}_bucket, _sum or _count")
        else:
            problems.append(f"metric {name} is not exported by src/")
    for label in sorted(labels - exports.labels - TARGET_LABELS - made):
        problems.append(f"label {label} is never set by src/")
    return problems, names


def dashboard_exprs(path):
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    exprs = []

    def panels(items):
        for panel in items:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    exprs.append((f"panel '{panel.get('title')}'", target["expr"]))
            panels(panel.get("panels", []))

    panels(dashboard.get("panels", []))
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if variable.get("type") != "query" or not query:
            continue
        # label_values(<selector>, <label>): the label is a label name, not a metric.
        match = re.fullmatch(r"\s*label_values\((.*),\s*([A-Za-z_]\w*)\s*\)\s*", query, re.S)
        if match:
            query = f"count by ({match.group(2)}) ({match.group(1)})"
        exprs.append((f"variable ${variable.get('name')}", query))
    return exprs


def rule_exprs(path):
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    exprs = []
    for group in document.get("groups", []):
        for rule in group.get("rules", []):
            name = rule.get("alert") or rule.get("record")
            exprs.append((f"rule {name}", rule["expr"]))
    return exprs


GRAFANA_VALUES = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h",
                  "__range_s": "3600", "__interval_ms": "60000"}


def write_rules(path, exprs):
    """Dashboard queries as recording rules: promtool then parses each as PromQL."""
    def substitute(expr):
        def value(match):
            name = match.group(1) or match.group(2)
            return GRAFANA_VALUES.get(name, ".*")  # a template variable: a regex matching all
        return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)

    rules = [{"record": f"dashboard:query_{i}", "expr": substitute(expr),
              "labels": {"where": where}} for i, (where, expr) in enumerate(exprs)]
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}),
                    encoding="utf-8")
    print(f"check-dashboard-metrics: wrote {len(rules)} dashboard queries to {path}")


def self_test(exports):
    """The checker must accept what mesh exports and refuse what it does not."""
    good = ('histogram_quantile(0.99, sum by (job, le) (rate('
            'mesh_http_request_duration_seconds_bucket{job=~"$job", route!~"/healthz"}'
            '[$__rate_interval]))) > 1 and on (job) sum without (instance) ('
            'rate(mesh_http_requests_total{status=~"5.."}[5m] offset 1h)) / 2 '
            'or label_replace(increase(mesh_worker_dead_letters_total[15m]), "dlq", '
            '"tasks.dlq", "", "") or up == bool 0 or time() - process_start_time_seconds')
    names, labels, made = split_expr(good)
    expected = {"mesh_http_request_duration_seconds_bucket", "mesh_http_requests_total",
                "mesh_worker_dead_letters_total", "up", "process_start_time_seconds"}
    failures = []
    if names != expected:
        failures.append(f"names of the good expression: {sorted(names)} != {sorted(expected)}")
    if labels != {"job", "le", "route", "status", "instance"} or made != {"dlq"}:
        failures.append(f"labels of the good expression: {sorted(labels)}, made {sorted(made)}")
    if problems_of(good, exports)[0]:
        failures.append(f"good expression refused: {problems_of(good, exports)[0]}")
    bad = {
        "misspelt name": "sum(rate(mesh_http_request_total[5m]))",
        "unknown metric in a selector": 'mesh_worker_task_total{status="failed"}',
        "bare histogram": "rate(mesh_http_request_duration_seconds[5m])",
        "_bucket of a counter": "mesh_http_requests_total_bucket",
        "unknown label": "sum by (code) (rate(mesh_http_requests_total[5m]))",
        "unknown matcher label": 'mesh_kafka_consumer_lag{consumer_group="mesh-worker"}',
    }
    for what, expr in bad.items():
        if not problems_of(expr, exports)[0]:
            failures.append(f"{what} accepted: {expr}")
    # Only builder and process-collector names are metrics: a "mesh_..." log key, identifier
    # or unrelated string in the source is not, nor is a "process_..." string elsewhere.
    source = '''
        log::event(*logger, spdlog::level::info, "started", {{"mesh_node_role", role}});
        constexpr const char* kTable = "mesh_task_results";
        const std::string note = "process_tmp_files";
        auto& sent = prometheus::BuildCounter()
                         .Name("mesh_selftest_sent_total")
                         .Help("Records sent.")
                         .Register(registry)
                         .Add({{"topic", "a"}});
        auto& took = prometheus::BuildHistogram().Name( "mesh_selftest_seconds" ).Help("t.");
        families.push_back(gauge_family("process_selftest_fds", "Open.", 1.0));
    '''
    sample = exports_of([source])
    expected = {"mesh_selftest_sent_total", "mesh_selftest_seconds", "process_selftest_fds"}
    if sample.metrics != expected or sample.histograms != {"mesh_selftest_seconds"} \
            or "topic" not in sample.labels:
        failures.append(f"exports of the sample source: {sorted(sample.metrics)}, histograms "
                        f"{sorted(sample.histograms)}, labels {sorted(sample.labels)}")
    for expr in ("mesh_node_role", "rate(mesh_task_results[5m])", "process_tmp_files"):
        if not problems_of(expr, sample)[0]:
            failures.append(f"a string that is no metric name accepted: {expr}")
        bad[f"non-metric string {expr}"] = expr
    if failures:
        for failure in failures:
            print(f"check-dashboard-metrics: SELF-TEST FAILED: {failure}", file=sys.stderr)
        sys.exit(1)
    print(f"check-dashboard-metrics: self-test passed ({len(bad)} bad expressions refused)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--expr", action="append", default=[],
                        help="check this expression only (repeatable)")
    parser.add_argument("--write-rules", metavar="FILE",
                        help="write the dashboard queries as recording rules to FILE")
    args = parser.parse_args()
    exports = read_exports(ROOT / "src")

    if args.expr:
        bad = False
        for expr in args.expr:
            for problem in problems_of(expr, exports)[0]:
                print(f"{expr}: {problem}", file=sys.stderr)
                bad = True
        sys.exit(1 if bad else 0)

    self_test(exports)
    dashboards = sorted((ROOT / "observability/grafana/dashboards").glob("*.json"))
    rules = [ROOT / "observability/prometheus/alerts.yml"]
    if not dashboards:
        sys.exit("check-dashboard-metrics: no dashboard found")
    failed = False
    shown = set()
    count = 0
    for path, exprs in [(p, dashboard_exprs(p)) for p in dashboards] + \
                       [(p, rule_exprs(p)) for p in rules]:
        for where, expr in exprs:
            count += 1
            problems, names = problems_of(expr, exports)
            if path.suffix == ".json":
                shown.update(names)
            for problem in problems:
                print(f"{path.relative_to(ROOT)}: {where}: {problem}", file=sys.stderr)
                failed = True
    if failed:
        sys.exit(1)
    print(f"check-dashboard-metrics: {count} expressions name only exported metrics and labels")

    def base(name):
        for suffix in HISTOGRAM_SUFFIXES:
            if name.endswith(suffix) and name[: -len(suffix)] in exports.histograms:
                return name[: -len(suffix)]
        return name

    unshown = sorted(exports.metrics - {base(n) for n in shown})
    print(f"check-dashboard-metrics: exported but not on a dashboard ({len(unshown)}): "
          + (", ".join(unshown) if unshown else "none"))
    if args.write_rules:
        write_rules(pathlib.Path(args.write_rules),
                    [e for p in dashboards for e in dashboard_exprs(p)])


if __name__ == "__main__":
    main()
