//! Fresh, throw-away stores for tests: a SQLite file in a temporary
//! directory, or a PostgreSQL database with a random name created on the
//! server at [`POSTGRES_URL_ENV`] (default [`DEFAULT_POSTGRES_URL`]) and
//! dropped when the [`TestStore`] is dropped.
//!
//! PostgreSQL tests never skip: when the server cannot be reached,
//! [`TestStore::postgres`] fails with a message saying how to start one.

use std::ops::Deref;

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;
use tempfile::TempDir;

use crate::{Backend, Store, StoreError, random_hex};

/// The environment variable naming the PostgreSQL server for tests.
pub const POSTGRES_URL_ENV: &str = "TRUEUP_TEST_POSTGRES_URL";

/// The server used when [`POSTGRES_URL_ENV`] is not set.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Prefix of the databases tests create (followed by random hex).
pub const TEST_DATABASE_PREFIX: &str = "trueup_test_";

/// A fresh store that cleans up after itself: the SQLite directory is
/// removed, the PostgreSQL database dropped. Derefs to [`Store`].
#[derive(Debug)]
pub struct TestStore {
    store: Store,
    url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    Sqlite(#[allow(dead_code)] TempDir),
    Postgres { admin_url: String, database: String },
}

impl Deref for TestStore {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}

/// The server URL for PostgreSQL tests.
pub fn postgres_server_url() -> String {
    std::env::var(POSTGRES_URL_ENV).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

/// `url` with its database name replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let root = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{database}?{q}"),
        None => format!("{root}/{database}"),
    }
}

impl TestStore {
    /// A store of `backend`.
    ///
    /// # Errors
    /// As [`TestStore::sqlite`] or [`TestStore::postgres`].
    pub async fn new(backend: Backend) -> Result<Self, StoreError> {
        match backend {
            Backend::Sqlite => Self::sqlite().await,
            Backend::Postgres => Self::postgres().await,
        }
    }

    /// A SQLite store in a new temporary directory (migrated).
    ///
    /// # Errors
    /// The directory or database cannot be created.
    pub async fn sqlite() -> Result<Self, StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Connect {
            url: "sqlite://<temporary directory>".to_owned(),
            problem: format!("cannot create a temporary directory: {e}"),
        })?;
        let url = format!("sqlite://{}", dir.path().join("trueup.db").display());
        let store = Store::connect(&url).await?;
        Ok(Self {
            store,
            url,
            cleanup: Cleanup::Sqlite(dir),
        })
    }

    /// A PostgreSQL store in a new database with a random name (migrated).
    ///
    /// # Errors
    /// [`StoreError::Connect`] saying how to start PostgreSQL when the
    /// server cannot be reached.
    pub async fn postgres() -> Result<Self, StoreError> {
        Self::postgres_on(&postgres_server_url()).await
    }

    /// [`TestStore::postgres`] on the server at `server_url`.
    ///
    /// # Errors
    /// [`StoreError::Connect`] saying how to start PostgreSQL when the
    /// server cannot be reached.
    pub async fn postgres_on(server_url: &str) -> Result<Self, StoreError> {
        let admin_url = server_url.to_owned();
        let unreachable = |problem: String| StoreError::Connect {
            url: crate::error::redact_url(&admin_url),
            problem: format!(
                "{problem}. The PostgreSQL tests need a server: start one with trust auth at \
                 127.0.0.1:5432 (e.g. `service postgresql start`, or `docker run -p 5432:5432 \
                 -e POSTGRES_HOST_AUTH_METHOD=trust postgres`), or point {POSTGRES_URL_ENV} at one"
            ),
        };
        let database = format!("{TEST_DATABASE_PREFIX}{}", random_hex::<8>()?);
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        sqlx::query(&format!("CREATE DATABASE {database}"))
            .execute(&mut admin)
            .await
            .map_err(|e| unreachable(format!("cannot create test database {database}: {e}")))?;
        let _ = admin.close().await;
        let url = with_database(&admin_url, &database);
        let store = match Store::connect(&url).await {
            Ok(store) => store,
            Err(e) => {
                drop_database(&admin_url, &database);
                return Err(e);
            }
        };
        Ok(Self {
            store,
            url,
            cleanup: Cleanup::Postgres {
                admin_url,
                database,
            },
        })
    }

    /// The URL of this store's database (for a second pool, or a second
    /// "process").
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Another, independent pool on the same database, as a second
    /// `trueup` process would have.
    ///
    /// # Errors
    /// As [`Store::connect`].
    pub async fn another_pool(&self) -> Result<Store, StoreError> {
        Store::connect(&self.url).await
    }

    /// The store (also reachable through `Deref`).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Runs raw SQL on this store's database: for tests that must break
    /// the database on purpose (e.g. a trigger that fails an insert half
    /// way through a write).
    ///
    /// # Errors
    /// The database's error.
    pub async fn execute_raw(&self, statement: &str) -> Result<u64, StoreError> {
        let q = crate::db::sql("run raw test SQL", "(test)", statement.to_owned());
        self.store.db.execute(q).await
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Cleanup::Postgres {
            admin_url,
            database,
        } = &self.cleanup
        {
            drop_database(admin_url, database);
        }
    }
}

/// Drops a test database (forcing out open connections). Runs on its own
/// thread with its own runtime, so it works from `Drop` inside or outside
/// an async runtime. Failures are reported on stderr, not raised: a
/// leftover database is named by its prefix and harmless.
fn drop_database(admin_url: &str, database: &str) {
    let (admin_url, name) = (admin_url.to_owned(), database.to_owned());
    let dropped = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async move {
            let mut admin = PgConnection::connect(&admin_url)
                .await
                .map_err(|e| e.to_string())?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .map_err(|e| e.to_string())?;
            let _ = admin.close().await;
            Ok::<(), String>(())
        })
    })
    .join()
    .map_err(|_| "the cleanup thread panicked".to_owned())
    .and_then(|r| r);
    if let Err(e) = dropped {
        eprintln!("warning: could not drop test database {database}: {e}");
    }
}

/// What the crate's own unit tests share: a day in November 2026, usage
/// rows, vendor registration, and `both!`, which runs each named test
/// function on a fresh SQLite and a fresh PostgreSQL store.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::sync::Arc;

    use chrono::{DateTime, NaiveDate, TimeZone, Utc};
    use trueup_core::model::{Attributes, UsageObservation, UsageSource, VendorIntegration};

    use crate::Store;

    pub(crate) fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
    }

    pub(crate) fn row(
        vendor: &str,
        account: &str,
        sku: &str,
        quantity: rust_decimal::Decimal,
        day: u32,
    ) -> UsageObservation {
        UsageObservation {
            vendor: vendor.into(),
            account: account.into(),
            sku_id: sku.into(),
            sku_name: Arc::from(format!("{sku} name")),
            quantity,
            unit: Arc::from("seat"),
            unit_cost: None,
            billing_term: None,
            commitment_end: None,
            attributes: Attributes::default(),
            observed_at: at(day, 0),
        }
    }

    pub(crate) async fn vendor(store: &Store, id: &str, source: UsageSource) {
        store
            .upsert_vendor_integration(
                &VendorIntegration {
                    id: id.into(),
                    name: id.to_owned(),
                    source,
                },
                at(1, 0),
            )
            .await
            .unwrap();
    }

    pub(crate) async fn stored_usage(store: &Store) -> Vec<UsageObservation> {
        store
            .usage_for_period(
                NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
                NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
            )
            .await
            .unwrap()
    }

    macro_rules! both {
        ($($name:ident),* $(,)?) => {
            mod sqlite {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let store = TestStore::sqlite().await.expect("a SQLite test store");
                        super::$name(&store).await;
                    }
                )*
                use crate::testing::TestStore;
            }
            mod postgres {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let store = TestStore::postgres().await.expect("a PostgreSQL test store");
                        super::$name(&store).await;
                    }
                )*
                use crate::testing::TestStore;
            }
        };
    }
    pub(crate) use both;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_is_replaced_in_urls() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "t2"),
            "postgres://u:p@h/t2?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "t3"), "postgres://h/t3");
    }
}
