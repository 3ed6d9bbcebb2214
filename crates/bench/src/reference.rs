//! The reference handlers: the least an axum + sqlx service can do for the same requests.
//!
//! - `GET /ref/{id}` reads one `jsonb` row by primary key and returns it (`404` when absent).
//! - `PUT /ref/{id}` parses the JSON body and upserts one row
//!   (`insert … on conflict (id) do update`), answering `200` with no body.
//!
//! Runtime and pool settings match `tether serve`: tokio's default multi-thread runtime (one
//! worker per core), a `PgPool` of 16 connections (Tether's `max_connections`), no logging, no
//! authentication. It runs as its own process so its CPU time is measured apart from the bench.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// `tether-bench reference`: serve the reference handlers.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The (fresh) database to use; the table is created if missing.
    #[arg(long)]
    database_url: String,
    /// Connection pool size.
    #[arg(long, default_value_t = 16)]
    pool: u32,
}

/// The one line on stdout announcing the address (the bench waits for it).
pub const LISTENING: &str = "reference listening on ";

pub async fn serve(args: Args) -> anyhow::Result<()> {
    let pool = PgPoolOptions::new()
        .max_connections(args.pool)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&args.database_url)
        .await
        .context("connect to the reference database")?;
    sqlx::query("create table if not exists ref_linker (id text primary key, doc jsonb not null)")
        .execute(&pool)
        .await
        .context("create the reference table")?;
    let app = Router::new()
        .route("/ref/{id}", get(read).put(upsert))
        .with_state(pool);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listen on {}", args.listen))?;
    println!("{LISTENING}http://{}", listener.local_addr()?);
    axum::serve(listener, app).await.context("serve")
}

async fn read(State(pool): State<PgPool>, Path(id): Path<String>) -> Response {
    let row: Result<Option<(Value,)>, _> =
        sqlx::query_as("select doc from ref_linker where id = $1")
            .bind(id)
            .fetch_optional(&pool)
            .await;
    match row {
        Ok(Some((doc,))) => axum::Json(doc).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

async fn upsert(
    State(pool): State<PgPool>,
    Path(id): Path<String>,
    axum::Json(doc): axum::Json<Value>,
) -> StatusCode {
    let done = sqlx::query(
        "insert into ref_linker (id, doc) values ($1, $2) \
         on conflict (id) do update set doc = excluded.doc",
    )
    .bind(id)
    .bind(doc)
    .execute(&pool)
    .await;
    match done {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}
