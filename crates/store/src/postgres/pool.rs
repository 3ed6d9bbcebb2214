//! The store's Postgres connections: a `deadpool` pool of sqlx `PgConnection`s.
//!
//! sqlx's own pool pings every connection it takes back (a round trip for Tether and for the
//! database after every statement: a third of a GET's CPU, measured in docs/benchmarks.md).
//! This one checks a connection only when its last use may have left it unusable:
//!
//! - a statement that ended (rows read, or an error reported by the database) leaves the
//!   connection ready for the next one: it goes back as it is;
//! - a statement cut off (its caller gave up: a timeout, a dropped request) or a transaction
//!   (sqlx queues a dropped transaction's rollback for the connection's next round trip) is
//!   followed by a ping before the next use, which waits for what is in flight and proves
//!   the connection; one that does not answer within [`RECYCLE_TIMEOUT`] is closed;
//! - a connection that failed (I/O, TLS, protocol, or the server ended the session) is
//!   closed, never handed out again;
//! - one idle longer than [`IDLE_CHECK`] is pinged before reuse (the server or a proxy may
//!   have dropped it), and one older than [`MAX_LIFETIME`] is replaced.
//!
//! So a connection the database dropped fails at most the one statement that finds it
//! broken, which the caller sees as a transient error, as with sqlx's pool.

use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, PoolError, RecycleError, RecycleResult};
use futures_util::{StreamExt, TryStreamExt, stream};
use sqlx::postgres::{PgConnectOptions, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Connection as _, Describe, Either, Execute, Executor, PgConnection, Postgres};

/// A connection idle for longer is pinged before it is handed out again.
const IDLE_CHECK: Duration = Duration::from_secs(30);
/// A connection older than this is closed and replaced (as sqlx's pool does by default).
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// Longest check of a connection before reuse. A ping answers in well under a millisecond
/// unless the connection still runs the statement a caller gave up on (a commit waiting for
/// a synchronous standby): that one is closed instead, and a fresh one opened.
const RECYCLE_TIMEOUT: Duration = Duration::from_secs(1);

/// A pooled connection and how its last use ended.
pub(crate) struct PooledConn {
    pub raw: PgConnection,
    last_use: LastUse,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum LastUse {
    /// Ended cleanly: ready for the next statement.
    Ended,
    /// May have left something in flight (a cut-off statement, a transaction).
    Unknown,
    /// Failed at the connection level.
    Broken,
}

impl LastUse {
    fn of<T>(result: &Result<T, sqlx::Error>) -> Self {
        match result {
            Ok(_) => LastUse::Ended,
            Err(e) if crate::connection_lost(e) => LastUse::Broken,
            // Any other error the database reports ends the statement cleanly.
            Err(sqlx::Error::Database(_)) => LastUse::Ended,
            Err(_) => LastUse::Unknown,
        }
    }
}

/// Opens and checks connections.
pub(crate) struct Connector {
    options: PgConnectOptions,
}

impl managed::Manager for Connector {
    type Type = PooledConn;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<PooledConn, sqlx::Error> {
        Ok(PooledConn {
            raw: PgConnection::connect_with(&self.options).await?,
            last_use: LastUse::Ended,
        })
    }

    async fn recycle(
        &self,
        conn: &mut PooledConn,
        metrics: &Metrics,
    ) -> RecycleResult<sqlx::Error> {
        if conn.last_use == LastUse::Broken || metrics.age() > MAX_LIFETIME {
            return Err(RecycleError::message("closed"));
        }
        if conn.last_use == LastUse::Unknown || metrics.last_used() > IDLE_CHECK {
            conn.raw.ping().await?;
            conn.last_use = LastUse::Ended;
        }
        Ok(())
    }
}

/// The pool. `&Pool` runs a statement on a connection of its own, like `&sqlx::PgPool`.
#[derive(Clone)]
pub(crate) struct Pool(managed::Pool<Connector>);

impl std::fmt::Debug for Pool {
    // Not derived: the connect options hold the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("status", &self.0.status())
            .finish()
    }
}

/// A connection taken from the pool; it returns when dropped.
pub(crate) type Held = Object<Connector>;

impl Pool {
    /// A pool of at most `max` connections; waiting for one (or opening one) fails after
    /// `acquire_timeout`.
    pub fn new(
        options: PgConnectOptions,
        max: usize,
        acquire_timeout: Duration,
    ) -> Result<Self, sqlx::Error> {
        managed::Pool::builder(Connector { options })
            .max_size(max)
            .wait_timeout(Some(acquire_timeout))
            .create_timeout(Some(acquire_timeout))
            .recycle_timeout(Some(acquire_timeout.min(RECYCLE_TIMEOUT)))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map(Pool)
            .map_err(|e| sqlx::Error::Configuration(e.into()))
    }

    /// A connection of its own until dropped, marked as possibly left with something in flight
    /// until its holder says how its use ended. For a transaction (`conn.raw.begin()`) nobody
    /// says: it is pinged before its next use, when sqlx sends a dropped transaction's
    /// rollback.
    pub async fn acquire(&self) -> Result<Held, sqlx::Error> {
        let mut held = self.0.get().await.map_err(|e| match e {
            PoolError::Backend(e) => e,
            PoolError::Timeout(_) => sqlx::Error::PoolTimedOut,
            PoolError::Closed => sqlx::Error::PoolClosed,
            other => sqlx::Error::Configuration(other.to_string().into()),
        })?;
        held.last_use = LastUse::Unknown;
        Ok(held)
    }

    /// Runs `run` on a connection of its own and remembers how it ended.
    async fn with<T>(
        &self,
        run: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        // Stays "unknown" if the caller gives up before the statement ends.
        let mut held = self.acquire().await?;
        let result = run(&mut held.raw).await;
        held.last_use = LastUse::of(&result);
        result
    }
}

impl<'p> Executor<'p> for &'_ Pool {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> stream::BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let pool = self.clone();
        // The results are collected before the connection goes back: every statement of the
        // store reads a bounded page.
        let all = async move {
            pool.with(async move |conn| conn.fetch_many(query).try_collect::<Vec<_>>().await)
                .await
        };
        stream::once(all)
            .map_ok(|rows| stream::iter(rows.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> futures_util::future::BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let pool = self.clone();
        Box::pin(async move {
            pool.with(async move |conn| conn.fetch_optional(query).await)
                .await
        })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> futures_util::future::BoxFuture<'e, Result<PgStatement<'q>, sqlx::Error>>
    where
        'p: 'e,
    {
        let pool = self.clone();
        Box::pin(async move {
            pool.with(async move |conn| conn.prepare_with(sql, parameters).await)
                .await
        })
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> futures_util::future::BoxFuture<'e, Result<Describe<Postgres>, sqlx::Error>>
    where
        'p: 'e,
    {
        let pool = self.clone();
        Box::pin(async move { pool.with(async move |conn| conn.describe(sql).await).await })
    }
}
