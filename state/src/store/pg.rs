//! The PostgreSQL backend: the same ordered tables as the embedded store,
//! one `pw_<table>` per table (`k bytea` primary key, `v bytea`), plus the
//! leases that let several paywatch instances share one database.
//!
//! - **Transactions.** A write transaction takes a transaction-scoped
//!   advisory lock first, so writes are serial across every instance, as
//!   redb's single writer is within one: the feed's `seq` comes from a
//!   counter in the same transaction and has no gaps. A read transaction is
//!   `REPEATABLE READ READ ONLY`: one snapshot, as in redb.
//! - **Leases.** `pw_leases` names who scans each asset and who delivers
//!   webhooks, until when (the database's clock, the one clock every
//!   instance shares), under a fencing token that rises at every change of
//!   holder. A transaction carrying a fence locks the lease row and is
//!   refused unless the token is still the current one, so a paused or cut
//!   off former leader can never apply what it computed (`check_fence`).
//! - **Wakeups.** A transaction that appended events sends `NOTIFY
//!   paywatch` as it commits; `listen` wakes feed waiters and the webhook
//!   dispatcher of every instance.
//!
//! The calling code is synchronous (as with redb), on any thread: queries
//! run on connections driven by a small runtime of this module's own, and
//! the caller parks until the answer arrives.

use std::collections::HashMap;
use std::future::Future;
use std::ops::Bound;
use std::pin::{Pin, pin};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Client, NoTls, Statement};

use super::{Fence, StoreError};

/// A key and its value, as stored.
pub type Row = (Vec<u8>, Vec<u8>);

/// Serializes writers across every instance (the "paywatch" in ASCII).
const WRITER_LOCK: i64 = 0x7061_7977_6174_6368;
/// Serializes schema migrations of instances starting at once.
const MIGRATION_LOCK: i64 = WRITER_LOCK + 1;
/// The channel event wakeups are sent on.
const CHANNEL: &str = "paywatch";
/// Connections kept per process.
const MAX_CONNECTIONS: usize = 16;
/// How long a caller waits for a connection when all are in use.
const POOL_WAIT: Duration = Duration::from_secs(30);

fn pg_err(e: tokio_postgres::Error) -> StoreError {
    // The cause (refused, a password needed, no such database) is in the
    // source; the error itself says only which step failed.
    match std::error::Error::source(&e) {
        Some(cause) => StoreError::Postgres(format!("{e}: {cause}")),
        None => StoreError::Postgres(e.to_string()),
    }
}

/// The runtime every connection of the process is driven on. Never
/// dropped: a runtime may not be dropped inside another's task.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("paywatch-postgres")
            .enable_all()
            .build()
            .expect("cannot start the PostgreSQL runtime")
    })
}

/// Runs `fut` to completion on this thread, parking between polls. The
/// futures given here only wait on channels to connections driven by
/// `runtime()`, so this works on any thread, async worker or not, and
/// never needs a runtime of the caller's.
fn block_on<F: Future>(fut: F) -> F::Output {
    waiting(|| park_until_ready(fut))
}

/// Runs `wait` (which blocks this thread) so that, on a worker of a
/// multi-thread runtime (the daemon's API handlers and pollers call the
/// store directly), the worker's other tasks move to another thread
/// meanwhile: a slow database then never stalls the API or the timers.
fn waiting<T>(wait: impl FnOnce() -> T) -> T {
    let on_worker = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if on_worker {
        tokio::task::block_in_place(wait)
    } else {
        wait()
    }
}

fn park_until_ready<F: Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs `futures` to completion and returns their outputs in order. Each
/// is first polled in order, before any is polled again (unlike
/// `join_all`, whose order of first polls is not promised).
async fn in_order<'a, T>(futures: Vec<Boxed<'a, T>>) -> Vec<T> {
    let mut slots: Vec<(Boxed<'a, T>, Option<T>)> = futures.into_iter().map(|f| (f, None)).collect();
    std::future::poll_fn(move |cx| {
        let mut pending = false;
        for (future, out) in slots.iter_mut() {
            if out.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *out = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(slots.iter_mut().filter_map(|(_, out)| out.take()).collect())
        }
    })
    .await
}

/// How to reach the database: the URL's settings, with the password
/// taken from a file or the environment, never from logs.
#[derive(Clone)]
pub struct PgOptions {
    pub config: tokio_postgres::Config,
    /// How the database is named in logs and status: no password.
    pub display: String,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

impl PgOptions {
    /// Parses a `postgres://` URL (or `key=value` string). A password in
    /// the URL itself is refused: it would sit in the config file and in
    /// every process listing of a command line.
    pub fn parse(url: &str, password: Option<String>) -> Result<PgOptions, String> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| format!("not a PostgreSQL connection string: {e}"))?;
        if config.get_password().is_some() {
            return Err(
                "the URL carries a password; give it in store_password_file or PAYWATCH_STORE_PASSWORD instead".into(),
            );
        }
        if let Some(password) = password {
            config.password(password);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        // A peer that vanished (a killed host, a cut network) is noticed
        // within about 20 seconds, idle or not, not after the kernel's
        // two hours (idle) or fifteen minutes (unacknowledged data).
        config.keepalives_idle(Duration::from_secs(10));
        config.keepalives_interval(Duration::from_secs(3));
        config.keepalives_retries(3);
        config.tcp_user_timeout(Duration::from_secs(20));
        if config.get_application_name().is_none() {
            config.application_name("paywatch");
        }
        let ports = config.get_ports();
        let host = config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let name = match h {
                    tokio_postgres::config::Host::Tcp(name) => name.clone(),
                    tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
                };
                match ports.get(i).or(ports.first()) {
                    Some(port) => format!("{name}:{port}"),
                    None => name,
                }
            })
            .collect::<Vec<_>>()
            .join(",");
        let display = format!(
            "postgres://{}@{}/{}",
            config.get_user().unwrap_or(""),
            host,
            config.get_dbname().unwrap_or("")
        );
        Ok(PgOptions { config, display })
    }
}

/// One connection and the statements prepared on it.
struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl Conn {
    fn statement(&mut self, sql: &str) -> Result<Statement, StoreError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = block_on(self.client.prepare(sql)).map_err(pg_err)?;
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let statement = self.statement(sql)?;
        block_on(self.client.query(&statement, params)).map_err(pg_err)
    }

    fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let statement = self.statement(sql)?;
        block_on(self.client.execute(&statement, params)).map_err(pg_err)
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        block_on(self.client.batch_execute(sql)).map_err(pg_err)
    }
}

/// Opens a connection, driven on `runtime()` until it closes.
fn connect(options: &PgOptions) -> Result<Client, StoreError> {
    let config = options.config.clone();
    let opened = block_on(runtime().spawn(async move {
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "a PostgreSQL connection closed");
            }
        });
        Ok::<_, tokio_postgres::Error>(client)
    }));
    let client = opened
        .map_err(|e| StoreError::Postgres(format!("the connection task failed: {e}")))?
        .map_err(pg_err)?;
    // A statement stuck behind a lock fails instead of hanging the caller,
    // and a transaction left open by a paused process cannot hold the
    // writer lock for longer than this.
    block_on(client.batch_execute("SET statement_timeout = '30s'; SET idle_in_transaction_session_timeout = '15s'"))
        .map_err(pg_err)?;
    Ok(client)
}

/// Connections reused across transactions, at most `MAX_CONNECTIONS`.
struct Pool {
    options: PgOptions,
    idle: Mutex<(Vec<Conn>, usize)>,
    freed: Condvar,
}

impl Pool {
    fn take(&self) -> Result<Conn, StoreError> {
        waiting(|| self.take_waiting())
    }

    fn take_waiting(&self) -> Result<Conn, StoreError> {
        let mut slot = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            while let Some(conn) = slot.0.pop() {
                if !conn.client.is_closed() {
                    return Ok(conn);
                }
                slot.1 -= 1;
            }
            if slot.1 < MAX_CONNECTIONS {
                slot.1 += 1;
                drop(slot);
                return match connect(&self.options) {
                    Ok(client) => Ok(Conn {
                        client,
                        statements: HashMap::new(),
                    }),
                    Err(e) => {
                        self.idle.lock().unwrap_or_else(|p| p.into_inner()).1 -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let (next, waited) = self
                .freed
                .wait_timeout(slot, POOL_WAIT)
                .unwrap_or_else(|p| p.into_inner());
            slot = next;
            if waited.timed_out() && slot.0.is_empty() && slot.1 >= MAX_CONNECTIONS {
                return Err(StoreError::Postgres(format!(
                    "no database connection came free within {} s",
                    POOL_WAIT.as_secs()
                )));
            }
        }
    }

    /// Takes a connection back; a broken one is dropped.
    fn give_back(&self, conn: Conn) {
        let mut slot = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if conn.client.is_closed() {
            slot.1 -= 1;
        } else {
            slot.0.push(conn);
        }
        drop(slot);
        self.freed.notify_one();
    }

    fn drop_one(&self) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).1 -= 1;
        self.freed.notify_one();
    }
}

/// A lease as stored: who holds it, under which fence, until when.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Lease {
    pub name: String,
    pub holder: String,
    pub fence: u64,
    /// Milliseconds since the epoch, by the database's clock.
    pub expires_at_ms: i64,
    /// Whether it is still in force, by the database's clock.
    pub live: bool,
}

/// The PostgreSQL store.
pub struct PgStore {
    pool: Arc<Pool>,
    /// Lease renewals have a connection of their own: a pool busy with API
    /// reads must not starve them.
    leases: Mutex<Option<Conn>>,
}

impl PgStore {
    /// Connects and applies the migrations this database lacks.
    pub fn open(options: PgOptions) -> Result<PgStore, StoreError> {
        let store = PgStore {
            pool: Arc::new(Pool {
                options,
                idle: Mutex::new((Vec::new(), 0)),
                freed: Condvar::new(),
            }),
            leases: Mutex::new(None),
        };
        store.migrate()?;
        Ok(store)
    }

    pub fn display(&self) -> &str {
        &self.pool.options.display
    }

    /// Runs `f` on the leases' own connection, opened when missing (or
    /// after it broke).
    fn with_lease_conn<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut slot = waiting(|| self.leases.lock().unwrap_or_else(|p| p.into_inner()));
        if slot.as_ref().is_none_or(|c| c.client.is_closed()) {
            *slot = Some(Conn {
                client: connect(&self.pool.options)?,
                statements: HashMap::new(),
            });
        }
        let conn = slot
            .as_mut()
            .ok_or_else(|| StoreError::Backend("no lease connection".into()))?;
        let out = f(conn);
        if out.is_err() {
            // Whatever state it is in, the next call starts on a new one.
            *slot = None;
        }
        out
    }

    fn with_conn<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut conn = self.pool.take()?;
        let out = f(&mut conn);
        self.pool.give_back(conn);
        out
    }

    /// Applies, in order and each in its own transaction, the migrations
    /// the database has not had; refuses a database migrated further than
    /// this build knows.
    fn migrate(&self) -> Result<(), StoreError> {
        let steps = super::migrations::steps();
        let mut conn = self.pool.take()?;
        // A session lock, so that instances starting together on an empty
        // database create even the bookkeeping table once; a migration may
        // take long, and waiting for a peer's is no error.
        let outcome = conn
            .batch("SET statement_timeout = 0")
            .and_then(|()| conn.query("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).map(drop))
            .and_then(|()| migrate_locked(&mut conn, &steps))
            .and_then(|()| {
                conn.query("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
                    .map(drop)
            })
            .and_then(|()| conn.batch("SET statement_timeout = '30s'"));
        match outcome {
            Ok(()) => {
                self.pool.give_back(conn);
                Ok(())
            }
            Err(e) => {
                // Closing the session ends its transaction and its lock.
                drop(conn);
                self.pool.drop_one();
                Err(e)
            }
        }
    }

    pub fn begin_write(&self) -> Result<PgTxn, StoreError> {
        PgTxn::begin(
            self.pool.clone(),
            &format!("BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock({WRITER_LOCK})"),
        )
    }

    pub fn begin_read(&self) -> Result<PgTxn, StoreError> {
        PgTxn::begin(self.pool.clone(), "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    }

    /// Takes or renews the lease `name` for `holder` for `ttl`: the fence
    /// it is held under, or `None` while another holder's is in force. A
    /// new holder, or a holder whose own lease ran out, gets a higher
    /// fence, so whatever it started under the old one is refused.
    pub fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<Option<u64>, StoreError> {
        let ttl_ms = ttl.as_millis() as f64;
        self.with_lease_conn(|conn| {
            let rows = conn.query(
                "INSERT INTO pw_leases AS l (name, holder, fence, expires_at)
                 VALUES ($1, $2, 1, clock_timestamp() + $3 * interval '1 millisecond')
                 ON CONFLICT (name) DO UPDATE SET
                     fence = CASE WHEN l.holder = EXCLUDED.holder AND l.expires_at > clock_timestamp()
                                  THEN l.fence ELSE l.fence + 1 END,
                     holder = EXCLUDED.holder,
                     -- From now, not from before a wait on the row's lock.
                     expires_at = clock_timestamp() + $3 * interval '1 millisecond'
                 WHERE l.holder = EXCLUDED.holder OR l.expires_at <= clock_timestamp()
                 RETURNING fence",
                &[&name, &holder, &ttl_ms],
            )?;
            Ok(rows.first().map(|r| r.get::<_, i64>(0) as u64))
        })
    }

    /// Gives a lease up at once (a clean stop), if `holder` still holds it
    /// under `fence`: another instance takes over without waiting it out.
    pub fn release_lease(&self, name: &str, holder: &str, fence: u64) -> Result<(), StoreError> {
        self.with_lease_conn(|conn| {
            conn.execute(
                "UPDATE pw_leases SET expires_at = clock_timestamp()
                 WHERE name = $1 AND holder = $2 AND fence = $3",
                &[&name, &holder, &(fence as i64)],
            )?;
            Ok(())
        })
    }

    pub fn lease_live(&self, name: &str) -> Result<bool, StoreError> {
        self.with_conn(|conn| {
            let rows = conn.query(
                "SELECT expires_at > clock_timestamp() FROM pw_leases WHERE name = $1",
                &[&name],
            )?;
            Ok(rows.first().is_some_and(|r| r.get::<_, bool>(0)))
        })
    }

    pub fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        self.with_conn(|conn| {
            let rows = conn.query(
                "SELECT name, holder, fence,
                        (extract(epoch FROM expires_at) * 1000)::bigint,
                        expires_at > clock_timestamp()
                 FROM pw_leases ORDER BY name",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|r| Lease {
                    name: r.get(0),
                    holder: r.get(1),
                    fence: r.get::<_, i64>(2) as u64,
                    expires_at_ms: r.get(3),
                    live: r.get(4),
                })
                .collect())
        })
    }

    /// Calls `wake` whenever any instance commits events, and once after
    /// every (re)connection, when notifications may have been missed. Stops
    /// when the handle is dropped.
    pub fn listen(&self, wake: Arc<dyn Fn() + Send + Sync>) -> ListenHandle {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let options = self.pool.options.clone();
        runtime().spawn(async move {
            loop {
                let session = listen_once(&options, wake.clone());
                tokio::select! {
                    _ = &mut stopped => return,
                    ended = session => {
                        if let Err(e) = ended {
                            tracing::warn!(error = %e, "the PostgreSQL wakeup connection failed; reconnecting");
                        }
                    }
                }
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
        ListenHandle { _stop: stop }
    }
}

/// Applies, each in its own transaction, the migrations not applied yet;
/// refuses a database migrated further than this build knows.
fn migrate_locked(conn: &mut Conn, steps: &[(&'static str, String)]) -> Result<(), StoreError> {
    conn.batch(
        "CREATE TABLE IF NOT EXISTS pw_migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )?;
    let rows = conn.query("SELECT coalesce(max(version), 0) FROM pw_migrations", &[])?;
    let applied: i32 = rows.first().map(|r| r.get(0)).unwrap_or(0);
    if applied as usize > steps.len() {
        return Err(StoreError::SchemaTooNew {
            found: applied as u64,
            known: steps.len() as u64,
        });
    }
    for (index, (name, sql)) in steps.iter().enumerate().skip(applied as usize) {
        let version = index as i32 + 1;
        conn.batch("BEGIN")?;
        let step = conn.batch(sql).and_then(|()| {
            conn.execute(
                "INSERT INTO pw_migrations (version, name) VALUES ($1, $2)",
                &[&version, name],
            )
        });
        match step {
            Ok(_) => conn.batch("COMMIT")?,
            Err(e) => {
                let _ = conn.batch("ROLLBACK");
                return Err(e);
            }
        }
        tracing::info!(version, name, "applied a database migration");
    }
    Ok(())
}

/// Keeps a `listen` running; dropping it stops it.
pub struct ListenHandle {
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn listen_once(options: &PgOptions, wake: Arc<dyn Fn() + Send + Sync>) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = options.config.connect(NoTls).await?;
    let (sent, mut notified) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => {
                    if sent.send(()).is_err() {
                        return Ok(());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    wake();
    loop {
        tokio::select! {
            n = notified.recv() => match n {
                Some(()) => wake(),
                None => break,
            },
            // The connection is checked now and then, so a dead one is
            // noticed even when nothing is sent.
            _ = tokio::time::sleep(Duration::from_secs(5)) => {
                client.simple_query("").await?;
            }
        }
    }
    match driver.await {
        Ok(ended) => ended,
        Err(_) => Ok(()),
    }
}

/// One transaction on one connection: committed by `commit`, rolled back
/// when dropped without it.
///
/// Round trips are what a transaction costs here, so it saves them: the
/// `BEGIN` goes out with the first statement, and writes (which answer
/// nothing the code reads) are queued and sent together, in order, before
/// the next read and with the `COMMIT`. Once any statement failed,
/// PostgreSQL has aborted the transaction: it is marked failed, and
/// `commit` refuses it (a `COMMIT` of an aborted transaction would come
/// back without an error, having saved nothing).
pub struct PgTxn {
    conn: Option<Conn>,
    pool: Arc<Pool>,
    /// Sent with the first statement, then `None`.
    begin: Option<String>,
    /// Writes not sent yet: a statement and its parameters.
    queued: Vec<(String, Vec<Vec<u8>>)>,
    /// Set by `notify_on_commit`: `commit` wakes the other instances.
    notify: bool,
    failed: bool,
}

fn table_sql(table: &str) -> String {
    debug_assert!(table.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
    format!("pw_{table}")
}

fn bound_sql(bound: &Bound<Vec<u8>>, op_included: &str, op_excluded: &str, n: usize) -> Option<String> {
    match bound {
        Bound::Included(_) => Some(format!("k {op_included} ${n}")),
        Bound::Excluded(_) => Some(format!("k {op_excluded} ${n}")),
        Bound::Unbounded => None,
    }
}

fn bound_value(bound: &Bound<Vec<u8>>) -> Option<&Vec<u8>> {
    match bound {
        Bound::Included(v) | Bound::Excluded(v) => Some(v),
        Bound::Unbounded => None,
    }
}

/// `WHERE` conditions for a key range and their parameters.
fn range_where<'b>(low: &'b Bound<Vec<u8>>, high: &'b Bound<Vec<u8>>) -> (String, Vec<&'b Vec<u8>>) {
    let mut conditions = Vec::new();
    let mut params = Vec::new();
    if let Some(c) = bound_sql(low, ">=", ">", params.len() + 1) {
        conditions.push(c);
        params.extend(bound_value(low));
    }
    if let Some(c) = bound_sql(high, "<=", "<", params.len() + 1) {
        conditions.push(c);
        params.extend(bound_value(high));
    }
    if conditions.is_empty() {
        (String::new(), params)
    } else {
        (format!(" WHERE {}", conditions.join(" AND ")), params)
    }
}

impl PgTxn {
    fn begin(pool: Arc<Pool>, sql: &str) -> Result<PgTxn, StoreError> {
        let conn = pool.take()?;
        Ok(PgTxn {
            conn: Some(conn),
            pool,
            begin: Some(sql.to_string()),
            queued: Vec::new(),
            notify: false,
            failed: false,
        })
    }

    /// Sends what is queued (the `BEGIN`, writes), then `last` if given,
    /// in one round trip, and returns `last`'s rows.
    fn send(&mut self, last: Option<(&str, &[&(dyn ToSql + Sync)])>) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        if self.failed {
            return Err(StoreError::Backend(
                "an earlier statement of this transaction failed; it was rolled back".into(),
            ));
        }
        let outcome = self.send_unchecked(last);
        if outcome.is_err() {
            self.failed = true;
        }
        outcome
    }

    fn send_unchecked(
        &mut self,
        last: Option<(&str, &[&(dyn ToSql + Sync)])>,
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let begin = self.begin.take();
        let queued = std::mem::take(&mut self.queued);
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| StoreError::Backend("the transaction already ended".into()))?;
        // Prepared once per connection (a round trip only the first time).
        let mut statements = Vec::with_capacity(queued.len());
        for (sql, _) in &queued {
            statements.push(conn.statement(sql)?);
        }
        let last_statement = match last {
            Some((sql, _)) => Some(conn.statement(sql)?),
            None => None,
        };
        let client = &conn.client;
        let params: Vec<Vec<&(dyn ToSql + Sync)>> = queued
            .iter()
            .map(|(_, values)| values.iter().map(|v| v as &(dyn ToSql + Sync)).collect())
            .collect();
        // Every request is sent before any answer is awaited (one round
        // trip), in this order: `in_order` polls each future once, in turn,
        // before waiting on any, and tokio-postgres sends a request at its
        // future's first poll.
        type Answer<'a> =
            Pin<Box<dyn Future<Output = Result<Option<Vec<tokio_postgres::Row>>, tokio_postgres::Error>> + Send + 'a>>;
        let mut requests: Vec<Answer<'_>> = Vec::with_capacity(queued.len() + 2);
        if let Some(sql) = begin.as_deref() {
            requests.push(Box::pin(async move { client.batch_execute(sql).await.map(|()| None) }));
        }
        for (statement, values) in statements.iter().zip(&params) {
            requests.push(Box::pin(async move {
                client.execute(statement, values).await.map(|_| None)
            }));
        }
        if let (Some(statement), Some((_, values))) = (last_statement.as_ref(), last) {
            requests.push(Box::pin(async move { client.query(statement, values).await.map(Some) }));
        }
        let answers = block_on(in_order(requests));
        let mut rows = Vec::new();
        for answer in answers {
            if let Some(read) = answer.map_err(pg_err)? {
                rows = read;
            }
        }
        Ok(rows)
    }

    fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        self.send(Some((sql, params)))
    }

    fn queue(&mut self, sql: String, params: Vec<Vec<u8>>) -> Result<(), StoreError> {
        if self.failed {
            return Err(StoreError::Backend(
                "an earlier statement of this transaction failed; it was rolled back".into(),
            ));
        }
        self.queued.push((sql, params));
        // A long run of writes goes out now and then, not all at the end.
        if self.queued.len() >= 512 {
            self.send(None)?;
        }
        Ok(())
    }

    /// Wake every instance's feed readers and dispatcher when this commits.
    pub fn notify_on_commit(&mut self) {
        self.notify = true;
    }

    pub fn get(&mut self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let sql = format!("SELECT v FROM {} WHERE k = $1", table_sql(table));
        let rows = self.query(&sql, &[&key])?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    pub fn put(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO {} (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
            table_sql(table)
        );
        self.queue(sql, vec![key.to_vec(), value.to_vec()])
    }

    pub fn delete(&mut self, table: &str, key: &[u8]) -> Result<(), StoreError> {
        let sql = format!("DELETE FROM {} WHERE k = $1", table_sql(table));
        self.queue(sql, vec![key.to_vec()])
    }

    pub fn delete_range(&mut self, table: &str, low: Bound<Vec<u8>>, high: Bound<Vec<u8>>) -> Result<(), StoreError> {
        let (conditions, values) = range_where(&low, &high);
        let sql = format!("DELETE FROM {}{conditions}", table_sql(table));
        let values = values.into_iter().cloned().collect();
        self.queue(sql, values)
    }

    pub fn range(
        &mut self,
        table: &str,
        low: &Bound<Vec<u8>>,
        high: &Bound<Vec<u8>>,
        reverse: bool,
        limit: i64,
    ) -> Result<Vec<Row>, StoreError> {
        let (conditions, values) = range_where(low, high);
        let order = if reverse { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT k, v FROM {}{conditions} ORDER BY k {order} LIMIT ${}",
            table_sql(table),
            values.len() + 1
        );
        let mut params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| *v as &(dyn ToSql + Sync)).collect();
        params.push(&limit);
        let rows = self.query(&sql, &params)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub fn count(&mut self, table: &str) -> Result<u64, StoreError> {
        let sql = format!("SELECT count(*) FROM {}", table_sql(table));
        let rows = self.query(&sql, &[])?;
        Ok(rows.first().map(|r| r.get::<_, i64>(0) as u64).unwrap_or(0))
    }

    /// Locks the lease row until this transaction ends (a takeover waits
    /// for it) and refuses the transaction unless `fence` is still current.
    pub fn check_fence(&mut self, fence: &Fence) -> Result<(), StoreError> {
        let rows = self.query("SELECT fence FROM pw_leases WHERE name = $1 FOR SHARE", &[&fence.lease])?;
        let current = rows.first().map(|r| r.get::<_, i64>(0) as u64);
        if current == Some(fence.token) {
            Ok(())
        } else {
            self.failed = true;
            Err(StoreError::Fenced {
                lease: fence.lease.clone(),
                held: fence.token,
                current,
            })
        }
    }

    pub fn commit(mut self) -> Result<(), StoreError> {
        if self.notify {
            self.queued
                .push((format!("SELECT pg_notify('{CHANNEL}', 'events')"), Vec::new()));
        }
        self.queued.push(("COMMIT".to_string(), Vec::new()));
        let sent = self.send(None);
        let conn = self.conn.take();
        match (sent, conn) {
            (Ok(_), Some(conn)) => {
                self.pool.give_back(conn);
                Ok(())
            }
            (outcome, conn) => {
                // Whether a COMMIT whose answer was lost took effect is
                // unknown: the connection is dropped, and callers treat the
                // change as possibly made (creates are idempotent, scans
                // re-read the cursor).
                if conn.is_some() {
                    self.pool.drop_one();
                }
                outcome.map(drop)
            }
        }
    }
}

impl Drop for PgTxn {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if self.begin.is_some() {
            // Nothing was sent: nothing to undo.
            self.pool.give_back(conn);
            return;
        }
        // The rollback is not waited for: the connection goes back to the
        // pool once it is done (or is dropped if it fails).
        let pool = self.pool.clone();
        runtime().spawn(async move {
            match conn.client.batch_execute("ROLLBACK").await {
                Ok(()) => pool.give_back(conn),
                Err(_) => {
                    drop(conn);
                    pool.drop_one();
                }
            }
        });
    }
}
