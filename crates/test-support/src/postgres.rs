//! A fresh PostgreSQL database per test, dropped afterwards.
//!
//! Tests that need PostgreSQL use the real server named by `SOTTO_TEST_POSTGRES_URL` (default
//! [`DEFAULT_URL`]). [`TestDatabase::create`] makes a database with a unique name there; the
//! guard drops it again ([`TestDatabase::drop_database`], or on drop, which also runs when the
//! test panics), terminating any connection still open to it.
//!
//! ```no_run
//! # async fn example() {
//! use sotto_test_support::postgres::TestDatabase;
//!
//! let db = TestDatabase::create().await;
//! let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await.unwrap();
//! tokio::spawn(connection);
//! client.batch_execute("CREATE TABLE t (x INT)").await.unwrap();
//! drop(client);
//! db.drop_database().await;
//! # }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio_postgres::NoTls;

/// The environment variable naming the PostgreSQL server (and a database on it to connect to
/// for creating and dropping test databases).
pub const URL_VARIABLE: &str = "SOTTO_TEST_POSTGRES_URL";

/// The server used when [`URL_VARIABLE`] is not set: the local one, trust authentication.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Every test database's name starts with this, so that leftovers of killed runs are easy to
/// find (`SELECT datname FROM pg_database WHERE datname LIKE 'sotto_test_%'`).
pub const NAME_PREFIX: &str = "sotto_test_";

/// Databases created by this process so far: part of the name, so that one process's
/// databases never collide.
static CREATED: AtomicU64 = AtomicU64::new(0);

/// A database that exists for the lifetime of this guard.
///
/// Dropping the guard drops the database (on a thread of its own with its own runtime, so it
/// works inside and outside async code and while a test panics); a failure to drop it is
/// printed, never a panic. [`TestDatabase::drop_database`] does the same from async code and
/// panics on failure.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    admin_url: String,
    dropped: bool,
}

impl TestDatabase {
    /// Creates a database with a unique name on the server at `SOTTO_TEST_POSTGRES_URL`.
    ///
    /// # Panics
    ///
    /// When the server cannot be reached or refuses to create the database: test code.
    pub async fn create() -> TestDatabase {
        let admin_url = std::env::var(URL_VARIABLE).unwrap_or_else(|_| DEFAULT_URL.to_owned());
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "{NAME_PREFIX}{}_{}_{nanos}",
            std::process::id(),
            CREATED.fetch_add(1, Ordering::Relaxed)
        );
        let url = with_database(&admin_url, &name);
        let client = admin_connect(&admin_url).await.unwrap_or_else(|e| {
            panic!("cannot connect to PostgreSQL at {URL_VARIABLE} (default {DEFAULT_URL}): {e}")
        });
        // The name is ours (prefix, digits, underscores): no quoting issues.
        if let Err(e) = client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
        {
            panic!("cannot create test database {name}: {e}");
        }
        TestDatabase {
            name,
            url,
            admin_url,
            dropped: false,
        }
    }

    /// The database's connection URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database now, terminating connections still open to it.
    ///
    /// # Panics
    ///
    /// When the database cannot be dropped.
    pub async fn drop_database(mut self) {
        self.dropped = true;
        if let Err(e) = drop_database(&self.admin_url, &self.name).await {
            panic!("cannot drop test database {}: {e}", self.name);
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime
                .block_on(drop_database(&admin_url, &name))
                .map_err(std::io::Error::other)
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: cannot drop test database {}: {e}", self.name),
            Err(_) => eprintln!("warning: dropping test database {} panicked", self.name),
        }
    }
}

/// Connects to the administrative database, driving the connection on a task.
async fn admin_connect(admin_url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(admin_url, NoTls).await?;
    tokio::spawn(async move {
        // The connection ends when the client is dropped; an error then is of no interest.
        let _ = connection.await;
    });
    Ok(client)
}

async fn drop_database(admin_url: &str, name: &str) -> Result<(), tokio_postgres::Error> {
    let client = admin_connect(admin_url).await?;
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
}

/// `url` with its database name replaced by `name`, keeping user, host, port and parameters.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(with_database("postgres://u:p@h", "x"), "postgres://u:p@h/x");
        assert_eq!(
            with_database("postgresql://h:1/db?sslmode=disable", "x"),
            "postgresql://h:1/x?sslmode=disable"
        );
    }

    async fn exists(client: &tokio_postgres::Client, name: &str) -> bool {
        let row = client
            .query_one(
                "SELECT count(*) FROM pg_database WHERE datname = $1",
                &[&name],
            )
            .await
            .unwrap();
        row.get::<_, i64>(0) == 1
    }

    #[tokio::test]
    async fn the_guard_drops_the_database_even_when_the_test_panics() {
        let db = TestDatabase::create().await;
        let name = db.name().to_owned();
        let admin = admin_connect(&db.admin_url).await.unwrap();
        assert!(exists(&admin, &name).await);
        // A connection still open does not keep it alive.
        let (_client, connection) = tokio_postgres::connect(db.url(), NoTls).await.unwrap();
        tokio::spawn(connection);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _db = db;
            panic!("a failing test");
        }));
        assert!(outcome.is_err());
        assert!(!exists(&admin, &name).await);
    }

    #[tokio::test]
    async fn drop_database_drops_it() {
        let db = TestDatabase::create().await;
        let name = db.name().to_owned();
        let admin = admin_connect(&db.admin_url).await.unwrap();
        db.drop_database().await;
        assert!(!exists(&admin, &name).await);
    }
}
