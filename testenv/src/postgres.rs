//! A real PostgreSQL server for the tests (Debian's package): one per test
//! process, started on first use, each test in a database of its own.
//!
//! `PAYWATCH_PG_SERVER` (a `postgres://user@host:port` URL with the right to
//! create databases) names a running server instead. Otherwise the server
//! is started from `$POSTGRES_BIN` or Debian's `/usr/lib/postgresql/*/bin`,
//! as the `postgres` user when the tests run as root (PostgreSQL refuses
//! root), in a temporary directory. It stops, and its directory goes, when
//! the test process ends, however it ends: the shell that runs it waits on
//! a pipe only this process holds.
//!
//! `PAYWATCH_TEST_STORE=postgres` makes the tests that can run on either
//! store (the store's own, and the daemon's lifecycle tests) use this one.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Whether the tests that run on either store run on PostgreSQL.
pub fn selected() -> bool {
    std::env::var("PAYWATCH_TEST_STORE").as_deref() == Ok("postgres")
}

/// The directory of `initdb` and `postgres`.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("POSTGRES_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL not found: run scripts/test.sh (it installs Debian's postgresql) or set POSTGRES_BIN=/usr/lib/postgresql/N/bin"
        )
    })
}

pub struct Server {
    /// `postgres://postgres@127.0.0.1:PORT`, without a database.
    pub base: String,
    /// The shell running the server, while this process lives.
    _keeper: Option<Mutex<Child>>,
}

/// The server of this test process.
pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| match std::env::var("PAYWATCH_PG_SERVER") {
        Ok(url) => Server {
            base: url.trim_end_matches('/').to_string(),
            _keeper: None,
        },
        Err(_) => start(),
    })
}

fn run_as_postgres(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = postgres_user() {
        command.uid(uid).gid(gid);
    }
}

/// The `postgres` system user, when running as root.
fn postgres_user() -> Option<(u32, u32)> {
    let root = Command::new("id").arg("-u").output().ok()?.stdout == b"0\n";
    if !root {
        return None;
    }
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    match (id("-u"), id("-g")) {
        (Some(u), Some(g)) => Some((u, g)),
        _ => panic!("running as root and no postgres user exists: install Debian's postgresql package"),
    }
}

fn start() -> Server {
    let bin = bin_dir();
    let root = tempfile::Builder::new().prefix("paywatch-pg").tempdir().unwrap().keep();
    if let Some((uid, gid)) = postgres_user() {
        std::os::unix::fs::chown(&root, Some(uid), Some(gid)).unwrap();
    }
    let data = root.join("data");
    let mut initdb = Command::new(bin.join("initdb"));
    initdb
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "-D"])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    run_as_postgres(&mut initdb);
    let out = initdb.output().expect("cannot run initdb");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = crate::free_port();
    // The server lives as long as this process holds the shell's stdin.
    let script = r#"
        "$1/postgres" -D "$2" -p "$3" -k "$4" -c listen_addresses=127.0.0.1 -c fsync=off \
            -c max_connections=300 -c shared_buffers=32MB >"$4/server.log" 2>&1 &
        server=$!
        read _ignored
        kill -QUIT "$server"
        wait "$server"
        rm -rf "$4"
    "#;
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg(script)
        .arg("sh")
        .arg(&bin)
        .arg(&data)
        .arg(port.to_string())
        .arg(&root)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    run_as_postgres(&mut shell);
    let keeper = shell.spawn().expect("cannot start PostgreSQL");
    let base = format!("postgres://postgres@127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while execute(&format!("{base}/postgres"), "SELECT 1").is_err() {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(root.join("server.log")).unwrap_or_default();
            panic!("PostgreSQL did not start; its log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Server {
        base,
        _keeper: Some(Mutex::new(keeper)),
    }
}

impl Server {
    /// A new, empty database: its URL.
    pub fn fresh_database(&self) -> String {
        let name = format!("paywatch_test_{}", hex::encode(rand_bytes()));
        execute(&format!("{}/postgres", self.base), &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("cannot create a test database: {e}"));
        format!("{}/{name}", self.base)
    }

    /// Runs SQL (statements separated by `;`) in the database at `url`.
    pub fn execute(&self, url: &str, sql: &str) -> Result<(), String> {
        execute(url, sql)
    }
}

fn rand_bytes() -> [u8; 8] {
    let mut b = [0u8; 8];
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    b.copy_from_slice(&((nanos as u64) ^ (u64::from(std::process::id()) << 40) ^ n.rotate_left(20)).to_be_bytes());
    b
}

/// Runs `sql` on a connection of its own, on a thread of its own (callable
/// from async tests and plain ones alike).
fn execute(url: &str, sql: &str) -> Result<(), String> {
    let (url, sql) = (url.to_string(), sql.to_string());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            let driver = tokio::spawn(connection);
            let done = client.batch_execute(&sql).await.map_err(|e| e.to_string());
            drop(client);
            let _ = driver.await;
            done
        })
    })
    .join()
    .map_err(|_| "the SQL thread panicked".to_string())?
}
