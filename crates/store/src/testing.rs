//! Throw-away databases for tests: a fresh Postgres database (`tether_test_<random>`, created
//! through `DATABASE_URL` or the local default) or a SQLite file in a temporary directory.
//! Call [`TestDb::drop_database`] when a test passes; a failing test leaves its database
//! behind for inspection.

use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// The admin URL used when `DATABASE_URL` is not set: the machine's local Postgres.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A fresh, empty database.
pub struct TestDb {
    /// The URL to hand to [`crate::connect`] or to `tether serve`.
    pub url: String,
    kind: Kind,
}

enum Kind {
    Postgres { admin_url: String, name: String },
    Sqlite { _dir: tempfile::TempDir },
}

impl TestDb {
    /// Creates `tether_test_<random>` on the server `DATABASE_URL` points at.
    pub async fn postgres() -> Result<Self, sqlx::Error> {
        let admin_url =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_string());
        #[expect(
            clippy::disallowed_methods,
            reason = "a random name for a throw-away test database"
        )]
        let name = format!("tether_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url).await?;
        sqlx::query(&format!("create database {name}"))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        let (base, _) = admin_url.rsplit_once('/').ok_or_else(|| {
            sqlx::Error::Configuration("DATABASE_URL has no database part".into())
        })?;
        Ok(Self {
            url: format!("{base}/{name}"),
            kind: Kind::Postgres { admin_url, name },
        })
    }

    /// A SQLite database file in a new temporary directory (removed when this is dropped).
    pub fn sqlite() -> Result<Self, sqlx::Error> {
        let dir = tempfile::tempdir().map_err(sqlx::Error::Io)?;
        let url = format!("sqlite://{}", dir.path().join("tether.db").display());
        Ok(Self {
            url,
            kind: Kind::Sqlite { _dir: dir },
        })
    }

    /// The backend's name, for test output.
    pub fn backend(&self) -> &'static str {
        match self.kind {
            Kind::Postgres { .. } => "postgres",
            Kind::Sqlite { .. } => "sqlite",
        }
    }

    /// Drops the database (Postgres; SQLite files go with the temporary directory).
    pub async fn drop_database(self) -> Result<(), sqlx::Error> {
        if let Kind::Postgres { admin_url, name } = &self.kind {
            let mut admin = PgConnection::connect(admin_url).await?;
            sqlx::query(&format!("drop database if exists {name} with (force)"))
                .execute(&mut admin)
                .await?;
            admin.close().await?;
        }
        Ok(())
    }
}
