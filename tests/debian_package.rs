//! The Debian package (`cargo deb`, `[package.metadata.deb]`), installed in
//! a throwaway Debian root made by debootstrap: the system user, the state
//! and config directories and their modes, the daemon started from the
//! unit's `ExecStart` as that user against a real Litecoin Core regtest node
//! (a payment confirmed through the API), an upgrade that keeps the
//! operator's config and the state and asks systemd to restart, a remove
//! that keeps both, a reinstall that finds them, and a purge that deletes
//! them.
//!
//! There is no systemd inside the root: `systemctl` and `deb-systemd-invoke`
//! are replaced there by scripts that record what the maintainer scripts
//! ask of them. Needs root (chroot), `debootstrap` and `cargo-deb`;
//! `scripts/test.sh` installs both and runs it as CI does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::litecoind::{Litecoind, RPC_PASSWORD};
use common::{free_port, wait_for};
use serde_json::{Value, json};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const TOKEN: &str = "deb-test-token-0123456789abcdef";

fn tool(var: &str, default: &str) -> PathBuf {
    let path = std::env::var(var).map_or_else(|_| PathBuf::from(default), PathBuf::from);
    assert!(
        path.is_file(),
        "{} not found: set {var}, or run scripts/test.sh, which installs it",
        path.display()
    );
    path
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Builds the package at `version` around the tested binary (a debug
/// build: what is tested is the packaging, not the optimiser).
fn build_deb(work: &Path, version: &str) -> PathBuf {
    let target = work.join(format!("target-{version}"));
    std::fs::create_dir_all(target.join("release")).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_paywatch"), target.join("release/paywatch")).unwrap();
    let out = work.join(format!("paywatch_{version}.deb"));
    run(
        Command::new(tool("CARGO_DEB", &format!("{REPO}/.tools/cargo-deb/bin/cargo-deb")))
            .current_dir(REPO)
            .env("CARGO_TARGET_DIR", &target)
            .args(["--no-build", "--fast", "--no-strip", "--deb-version", version, "-o"])
            .arg(&out),
    );
    out
}

/// A Debian root of the machine's own release, with systemd's commands
/// replaced by recorders.
fn bootstrap(root: &Path) {
    let release = std::fs::read_to_string("/etc/os-release")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME=").map(str::to_string))
        .unwrap_or_else(|| "bookworm".into());
    run(Command::new(tool("DEBOOTSTRAP", "/usr/sbin/debootstrap"))
        // What the package depends on beyond the base system, as apt
        // would bring it.
        .args(["--variant=minbase", "--include=ca-certificates", &release])
        .arg(root)
        .arg("http://deb.debian.org/debian"));
    // The maintainer scripts act only where systemd runs. `systemctl
    // is-active` answers from a marker the test keeps while its daemon runs.
    std::fs::create_dir_all(root.join("run/systemd/system")).unwrap();
    for (name, answer) in [
        (
            "systemctl",
            "[ \"$1\" != is-active ] || [ -e /run/paywatch-test-running ]\n",
        ),
        ("deb-systemd-invoke", ""),
    ] {
        let path = root.join("usr/local/sbin").join(name);
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho \"{name} $*\" >> /var/log/systemd-calls\n{answer}"),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn in_root(root: &Path, script: &str) -> Output {
    run(Command::new("chroot").arg(root).args(["/bin/sh", "-ec", script]))
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn systemd_calls(root: &Path) -> String {
    std::fs::read_to_string(root.join("var/log/systemd-calls")).unwrap_or_default()
}

/// The daemon in the root; killed if the test ends before it is stopped
/// (a failing assertion must not leave it running).
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts the daemon as the installed unit would: its `ExecStart`, as its
/// `User=`, with `$STATE_DIRECTORY`.
fn start_daemon(root: &Path, uid: &str, gid: &str, log: &Path) -> Daemon {
    let unit = std::fs::read_to_string(root.join("usr/lib/systemd/system/paywatch.service")).unwrap();
    let exec: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("the unit has an ExecStart")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let log = std::fs::File::create(log).unwrap();
    std::fs::write(root.join("run/paywatch-test-running"), "").unwrap();
    let child = Command::new("chroot")
        .arg(format!("--userspec={uid}:{gid}"))
        .arg(root)
        .args(&exec)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("STATE_DIRECTORY", "/var/lib/paywatch")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    Daemon(child)
}

fn stop_daemon(root: &Path, daemon: &mut Daemon) {
    let child = &mut daemon.0;
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    assert!(status.success(), "paywatch stopped with {status}");
    std::fs::remove_file(root.join("run/paywatch-test-running")).unwrap();
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn wait_ready(&self, log: &Path) {
        let url = format!("{}/readyz", self.base);
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Ok(r) = self.http.get(&url).send().await
                    && r.status().is_success()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        if ready.is_err() {
            panic!(
                "paywatch did not become ready; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }

    async fn wait_confirmed(&self, id: &str) {
        wait_for("the intent to be confirmed", Duration::from_secs(30), || async {
            let (_, v) = self
                .call(reqwest::Method::GET, &format!("/v1/intents/{id}"), None)
                .await;
            (v["status"] == "confirmed").then_some(())
        })
        .await
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_package_installs_runs_upgrades_removes_and_purges_in_a_fresh_debian() {
    let uid = text(&run(Command::new("id").arg("-u")));
    assert_eq!(uid, "0", "the package test needs root (chroot); CI runs as root");
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let (first, second) = (build_deb(work.path(), "0.1.0-1"), build_deb(work.path(), "0.1.0-2"));
    let node = Litecoind::start().await;
    bootstrap(&root);
    for deb in [&first, &second] {
        std::fs::copy(deb, root.join("tmp").join(deb.file_name().unwrap())).unwrap();
    }

    // What apt must bring besides the base system.
    let depends = text(&run(Command::new("dpkg-deb").args(["-f"]).arg(&first).arg("Depends")));
    for needed in ["libc6", "passwd", "ca-certificates"] {
        assert!(depends.contains(needed), "Depends: {depends}");
    }

    // Install: the user, the directories, the unit, the example config.
    let installed = in_root(&root, "dpkg -i /tmp/paywatch_0.1.0-1.deb");
    assert!(
        text(&installed).contains("edit /etc/paywatch/paywatch.toml"),
        "{}",
        text(&installed)
    );
    let (uid, gid) = (
        text(&in_root(&root, "id -u paywatch")),
        text(&in_root(&root, "id -g paywatch")),
    );
    assert_ne!(uid, "0");
    let shell = text(&in_root(&root, "getent passwd paywatch | cut -d: -f7"));
    assert_eq!(shell, "/usr/sbin/nologin");
    let owned = |path: &str, mode: u32, owner: &str, group: &str| {
        let meta = std::fs::metadata(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(meta.mode() & 0o7777, mode, "{path} mode");
        assert_eq!(meta.uid().to_string(), owner, "{path} owner");
        assert_eq!(meta.gid().to_string(), group, "{path} group");
    };
    owned("var/lib/paywatch", 0o700, &uid, &gid);
    owned("etc/paywatch", 0o750, "0", &gid);
    owned("etc/paywatch/paywatch.toml", 0o640, "0", &gid);
    owned("usr/bin/paywatch", 0o755, "0", "0");
    let unit = std::fs::read_to_string(root.join("usr/lib/systemd/system/paywatch.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/paywatch run --config /etc/paywatch/paywatch.toml"));
    assert!(unit.contains("User=paywatch") && unit.contains("ProtectSystem=strict"));
    assert!(
        !root
            .join("etc/systemd/system/multi-user.target.wants/paywatch.service")
            .exists(),
        "not enabled before the operator has configured it"
    );
    assert!(
        !systemd_calls(&root).contains("deb-systemd-invoke start"),
        "not started on install: {}",
        systemd_calls(&root)
    );

    // The operator edits the example: the API port and token, one asset.
    let port = free_port();
    let config_path = root.join("etc/paywatch/paywatch.toml");
    let example = std::fs::read_to_string(&config_path).unwrap();
    let edited = example
        .replace("listen = \"127.0.0.1:8787\"", &format!("listen = \"127.0.0.1:{port}\""))
        .replace(
            "# token_file = \"/etc/paywatch/api-token\"",
            "token_file = \"/etc/paywatch/api-token\"",
        );
    assert_ne!(edited, example);
    let addresses = node.new_addresses(2).await;
    let edited = format!(
        "{edited}\n[assets.LTC]\nbackend = \"core-rpc\"\nurl = \"{}\"\nnetwork = \"regtest\"\nrpc_user = \"u\"\nrpc_password_file = \"/etc/paywatch/litecoind-password\"\naddresses = [\"{}\", \"{}\"]\nconfirmations = 1\npoll_interval = \"200ms\"\n",
        node.url(),
        addresses[0],
        addresses[1]
    );
    std::fs::write(&config_path, edited).unwrap();
    in_root(
        &root,
        &format!(
            "install -m 0640 -o root -g paywatch /dev/null /etc/paywatch/api-token && printf %s '{TOKEN}' > /etc/paywatch/api-token\n\
             install -m 0640 -o root -g paywatch /dev/null /etc/paywatch/litecoind-password && printf %s '{RPC_PASSWORD}' > /etc/paywatch/litecoind-password"
        ),
    );
    let checked = in_root(&root, "paywatch check-config --config /etc/paywatch/paywatch.toml");
    assert!(
        text(&checked).contains("store: /var/lib/paywatch/paywatch.redb"),
        "{}",
        text(&checked)
    );

    // Started as the unit would: the API answers, a payment is confirmed.
    let log = work.path().join("paywatch.log");
    let api = Api {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    };
    let mut daemon = start_daemon(&root, &uid, &gid, &log);
    api.wait_ready(&log).await;
    let (status, body) = api.call(reqwest::Method::GET, "/v1/status", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["assets"]["LTC"]["scanned_height"].as_u64().is_some(), "{body}");
    let (status, intent) = api
        .call(
            reqwest::Method::POST,
            "/v1/intents",
            Some(json!({"asset": "LTC", "amount": "0.25"})),
        )
        .await;
    assert_eq!(status, 201, "{intent}");
    let id = intent["id"].as_str().unwrap().to_string();
    node.send(intent["address"].as_str().unwrap(), "0.25").await;
    node.mine(1).await;
    api.wait_confirmed(&id).await;
    let store_file = root.join("var/lib/paywatch/paywatch.redb");
    owned("var/lib/paywatch/paywatch.redb", 0o600, &uid, &gid);

    // Upgrade while it runs: the operator's config kept, a restart asked
    // for (never a stop), the state kept.
    let edited = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(root.join("var/log/systemd-calls"), "").unwrap();
    in_root(&root, "dpkg -i /tmp/paywatch_0.1.0-2.deb");
    let calls = systemd_calls(&root);
    assert!(
        calls.contains("deb-systemd-invoke try-restart paywatch.service"),
        "{calls}"
    );
    assert!(!calls.contains("deb-systemd-invoke stop"), "{calls}");
    assert_eq!(std::fs::read_to_string(&config_path).unwrap(), edited);
    assert_eq!(
        text(&in_root(&root, "dpkg-query -W -f='${Version}' paywatch")),
        "0.1.0-2"
    );
    owned("etc/paywatch/paywatch.toml", 0o640, "0", &gid);
    // The restart, as systemd would make it.
    stop_daemon(&root, &mut daemon);
    let mut daemon = start_daemon(&root, &uid, &gid, &log);
    api.wait_ready(&log).await;
    api.wait_confirmed(&id).await;

    // An upgrade to a version that refuses the config (here: a key it does
    // not know) leaves the running daemon alone, and says so.
    std::fs::write(&config_path, format!("retired_key = 1\n{edited}")).unwrap();
    std::fs::write(root.join("var/log/systemd-calls"), "").unwrap();
    let refused = in_root(&root, "dpkg -i /tmp/paywatch_0.1.0-2.deb");
    let said = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(said.contains("NOT restarted"), "{said}");
    let calls = systemd_calls(&root);
    assert!(!calls.contains("deb-systemd-invoke"), "{calls}");
    std::fs::write(&config_path, &edited).unwrap();
    stop_daemon(&root, &mut daemon);

    // An upgrade while it is stopped starts nothing.
    std::fs::write(root.join("var/log/systemd-calls"), "").unwrap();
    in_root(&root, "dpkg -i /tmp/paywatch_0.1.0-2.deb");
    let calls = systemd_calls(&root);
    assert!(calls.contains("systemctl is-active"), "{calls}");
    assert!(!calls.contains("deb-systemd-invoke"), "{calls}");

    // Remove: stopped, the binary gone, the state and config kept.
    std::fs::write(root.join("var/log/systemd-calls"), "").unwrap();
    in_root(&root, "dpkg -r paywatch");
    assert!(
        systemd_calls(&root).contains("deb-systemd-invoke stop paywatch.service"),
        "{}",
        systemd_calls(&root)
    );
    assert!(!root.join("usr/bin/paywatch").exists());
    assert!(store_file.exists(), "remove keeps the state");
    assert_eq!(std::fs::read_to_string(&config_path).unwrap(), edited);

    // Reinstalled, it finds both.
    in_root(&root, "dpkg -i /tmp/paywatch_0.1.0-2.deb");
    assert_eq!(text(&in_root(&root, "id -u paywatch")), uid, "the same user");
    let mut daemon = start_daemon(&root, &uid, &gid, &log);
    api.wait_ready(&log).await;
    api.wait_confirmed(&id).await;
    stop_daemon(&root, &mut daemon);

    // A config the operator deleted is not a failure of the next install.
    std::fs::remove_file(&config_path).unwrap();
    in_root(&root, "dpkg -i /tmp/paywatch_0.1.0-2.deb");
    assert!(!config_path.exists(), "dpkg does not bring back a deleted conffile");

    // Purge: the state and the config go.
    in_root(&root, "dpkg -P paywatch");
    assert!(!root.join("var/lib/paywatch").exists(), "purge deletes the state");
    assert!(!root.join("etc/paywatch").exists(), "purge deletes the config");
    assert!(!root.join("usr/lib/systemd/system/paywatch.service").exists());
    assert_eq!(
        text(&in_root(&root, "dpkg-statoverride --list || true")),
        "",
        "purge removes the permission overrides"
    );
}
