//! The shipped systemd unit: the directives the operator relies on, and
//! `systemd-analyze security` rating it "OK" or better.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/paywatch.service");

#[test]
fn the_unit_has_notify_watchdog_state_and_sandboxing() {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    for directive in [
        "Type=notify",
        "WatchdogSec=",
        "StateDirectory=paywatch",
        "ConfigurationDirectory=paywatch",
        "User=paywatch",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(directive)), "missing {directive}");
    }
}

#[test]
fn systemd_analyze_security_rates_the_unit_ok_or_better() {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager", UNIT])
        .output()
        .expect("systemd-analyze not found: install Debian's systemd package (scripts/test.sh does)");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let verdict = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no rating in:\n{text}"));
    let level: f64 = verdict
        .split(':')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(verdict.contains(" OK") || verdict.contains(" SAFE"), "{verdict}");
    assert!(level < 2.0, "exposure {level}: {verdict}");
}
