//! The operations kit (docs/operations.md): the Prometheus alert rules are
//! valid and fire when they should (`promtool`, from Debian's prometheus
//! package), and the rules and the Grafana dashboard only use metrics that
//! paywatch registers and documents.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `promtool`: `$PROMTOOL`, or Debian's. Panics with instructions when
/// missing: the check is never skipped.
fn promtool() -> PathBuf {
    if let Ok(p) = std::env::var("PROMTOOL") {
        return PathBuf::from(p);
    }
    let debian = PathBuf::from("/usr/bin/promtool");
    assert!(
        debian.exists(),
        "promtool not found: run scripts/test.sh (it installs Debian's prometheus package) or set PROMTOOL=/path/to/promtool"
    );
    debian
}

/// The `paywatch_*` metric names in `text`, a histogram's `_bucket`,
/// `_count` and `_sum` series named by the histogram.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("paywatch_") {
        let name: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        let name = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name)
            .to_string();
        names.insert(name);
    }
    names
}

#[test]
fn the_alert_rules_are_valid_and_fire_when_they_should() {
    let dir = repo("ops/prometheus");
    for args in [
        vec!["check", "rules", "paywatch-alerts.yml"],
        vec!["test", "rules", "paywatch-alerts.test.yml"],
    ] {
        let out = Command::new(promtool()).args(&args).current_dir(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn rules_and_dashboard_use_only_registered_and_documented_metrics() {
    let documented = metric_names(&read("docs/metrics.md"));
    let registered = read("src/metrics.rs");
    let dashboard: serde_json::Value = serde_json::from_str(&read("ops/grafana/paywatch-dashboard.json")).unwrap();
    let mut exprs = String::new();
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "panel ids are unique");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            assert!(!expr.is_empty(), "{}", panel["title"]);
            exprs.push_str(expr);
            exprs.push('\n');
        }
    }
    let used_by_dashboard = metric_names(&exprs);
    let used_by_rules = metric_names(&read("ops/prometheus/paywatch-alerts.yml"));
    assert!(used_by_dashboard.len() >= 20, "{used_by_dashboard:?}");
    for name in used_by_dashboard.iter().chain(&used_by_rules) {
        assert!(documented.contains(name), "{name} is not in docs/metrics.md");
        let short = name.trim_start_matches("paywatch_");
        assert!(
            registered.contains(&format!("\"{short}\"")),
            "{name} is not registered in src/metrics.rs"
        );
    }
    // Every asset-level panel follows the dashboard's asset selector.
    assert!(exprs.contains("asset=~\"$asset\""));
}
