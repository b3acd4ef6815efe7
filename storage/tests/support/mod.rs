//! Throw-away stores for the conformance suite.
//!
//! `postgres_pooled` runs the PostgreSQL driver in transaction-pooler mode
//! through a real PgBouncer in `pool_mode = transaction` (one per case, on a
//! free port, killed with the store) when a `pgbouncer` binary is found
//! (`AGW_PGBOUNCER`, PATH, `/usr/sbin/pgbouncer`), else straight to the
//! server (the pooler-mode code paths still run, but no server switching).

use agw_storage::{ConnectOptions, Store};
use sqlx::Connection;

/// A store on a fresh database, removed by [`TestStore::cleanup`].
pub(crate) struct TestStore {
    pub(crate) store: Store,
    dir: Option<std::path::PathBuf>,
    pg: Option<(String, String)>,
    /// The case's PgBouncer, killed on drop (also when the case panics).
    bouncer: Option<Bouncer>,
}

/// A PgBouncer child process.
struct Bouncer {
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill(); // this child's own PID
        let _ = self.child.wait();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn pgbouncer_binary() -> Option<String> {
    if let Ok(p) = std::env::var("AGW_PGBOUNCER") {
        return Some(p);
    }
    let on_path = std::env::var("PATH").ok().and_then(|path| {
        path.split(':')
            .map(|d| std::path::Path::new(d).join("pgbouncer"))
            .find(|p| p.is_file())
    });
    on_path
        .or_else(|| Some(std::path::PathBuf::from("/usr/sbin/pgbouncer")).filter(|p| p.is_file()))
        .map(|p| p.display().to_string())
}

/// Starts PgBouncer (transaction pooling, 3 servers) in front of the server
/// of `admin`; returns it and `postgres://user@127.0.0.1:PORT`.
fn start_bouncer(bin: &str, admin: &str) -> (Bouncer, String) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let opts: sqlx::postgres::PgConnectOptions = admin.parse().expect("admin url");
    let user = opts.get_username().to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let dir = std::env::temp_dir().join(format!("agw-conf-pgb-{}", agw_storage::new_token()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ini = dir.join("pgbouncer.ini");
    std::fs::write(
        &ini,
        format!(
            "[databases]\n* = host={} port={}\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
             unix_socket_dir =\nauth_type = trust\nauth_file = {}\npool_mode = transaction\n\
             default_pool_size = 3\nmax_client_conn = 200\n",
            opts.get_host(),
            opts.get_port(),
            dir.join("userlist.txt").display()
        ),
    )
    .expect("pgbouncer.ini");
    std::fs::write(dir.join("userlist.txt"), format!("\"{user}\" \"\"\n")).expect("userlist");
    let mut cmd = std::process::Command::new(bin);
    // PgBouncer refuses to run as root; it drops to `postgres`, which must
    // read its config.
    if std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
        for f in [&dir, &ini, &dir.join("userlist.txt")] {
            let mode = if f.is_dir() { 0o755 } else { 0o644 };
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(mode)).ok();
        }
        cmd.args(["-u", "postgres"]);
    }
    let log = std::fs::File::create(dir.join("pgbouncer.log")).expect("log");
    let child = cmd
        .arg(&ini)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start pgbouncer");
    let bouncer = Bouncer { child, dir };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "pgbouncer did not listen on {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    (bouncer, format!("postgres://{user}@127.0.0.1:{port}"))
}

/// The PostgreSQL server the suite creates its databases on.
fn pg_admin_url() -> String {
    std::env::var("AGW_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl TestStore {
    pub(crate) async fn sqlite() -> Self {
        let dir = std::env::temp_dir().join(format!("agw-conf-{}", agw_storage::new_token()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let url = format!("sqlite://{}", dir.join("t.db").display());
        let store = Store::connect(&url, &ConnectOptions::default())
            .await
            .expect("sqlite store");
        Self {
            store,
            dir: Some(dir),
            pg: None,
            bouncer: None,
        }
    }

    pub(crate) async fn postgres() -> Self {
        Self::postgres_with(false).await
    }

    /// PostgreSQL in transaction-pooler mode (see the module doc).
    pub(crate) async fn postgres_pooled() -> Self {
        Self::postgres_with(true).await
    }

    async fn postgres_with(pooled: bool) -> Self {
        let admin = pg_admin_url();
        let name = format!("agw_conf_{}", agw_storage::new_token());
        // The pooler first: a failure to start it leaves no database behind.
        let (base, _) = admin.rsplit_once('/').expect("url has a database");
        let (bouncer, base) = match pgbouncer_binary().filter(|_| pooled) {
            Some(bin) => {
                let (b, url) = start_bouncer(&bin, &admin);
                (Some(b), url)
            }
            None => (None, base.to_owned()),
        };
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin} (set AGW_TEST_PG_URL): {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create database");
        conn.close().await.ok();
        let url = format!("{base}/{name}");
        let store = Store::connect(
            &url,
            &ConnectOptions {
                max_connections: 8,
                pg_transaction_pooler: pooled,
                ..ConnectOptions::default()
            },
        )
        .await
        .expect("pg store");
        Self {
            store,
            dir: None,
            pg: Some((admin, name)),
            bouncer,
        }
    }

    /// The URL of its PostgreSQL database (`None` on SQLite).
    pub(crate) fn pg_url(&self) -> Option<String> {
        let (admin, name) = self.pg.as_ref()?;
        let (base, _) = admin.rsplit_once('/')?;
        Some(format!("{base}/{name}"))
    }

    pub(crate) async fn cleanup(mut self) {
        self.store.close().await;
        drop(self.bouncer.take());
        if let Some(dir) = self.dir {
            std::fs::remove_dir_all(dir).ok();
        }
        if let Some((admin, name)) = self.pg
            && let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await
        {
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await
                .ok();
        }
    }
}
