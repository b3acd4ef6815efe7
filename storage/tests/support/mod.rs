//! Throw-away stores for the conformance suite.

use agw_storage::{ConnectOptions, Store};
use sqlx::Connection;

/// A store on a fresh database, removed by [`TestStore::cleanup`].
pub(crate) struct TestStore {
    pub(crate) store: Store,
    dir: Option<std::path::PathBuf>,
    pg: Option<(String, String)>,
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
        }
    }

    pub(crate) async fn postgres() -> Self {
        let admin = pg_admin_url();
        let name = format!("agw_conf_{}", agw_storage::new_token());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin} (set AGW_TEST_PG_URL): {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create database");
        conn.close().await.ok();
        let (base, _) = admin.rsplit_once('/').expect("url has a database");
        let url = format!("{base}/{name}");
        let store = Store::connect(
            &url,
            &ConnectOptions {
                max_connections: 8,
                ..ConnectOptions::default()
            },
        )
        .await
        .expect("pg store");
        Self {
            store,
            dir: None,
            pg: Some((admin, name)),
        }
    }

    /// The URL of its PostgreSQL database (`None` on SQLite).
    pub(crate) fn pg_url(&self) -> Option<String> {
        let (admin, name) = self.pg.as_ref()?;
        let (base, _) = admin.rsplit_once('/')?;
        Some(format!("{base}/{name}"))
    }

    pub(crate) async fn cleanup(self) {
        self.store.close().await;
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
