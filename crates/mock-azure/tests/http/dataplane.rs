//! The SQL data plane: the statements Service Connector runs to create and drop Entra
//! database users, on PostgreSQL, MySQL and Azure SQL.

use reqwest::Response;
use serde_json::{Value, json};
use tether_mock_azure::demo;

use crate::support::{TEST_TOKEN, TestServer, json};

const OBJECT_ID: &str = "6b2f1c7e-0000-4000-8000-000000000001";

async fn sql(
    server: &TestServer,
    token: &str,
    fqdn: &str,
    database: &str,
    statements: &[&str],
) -> Response {
    server
        .client
        .post(server.url("/dataplane/sql"))
        .bearer_auth(token)
        .json(&json!({"server": fqdn, "database": database, "statements": statements}))
        .send()
        .await
        .unwrap()
}

/// Asserts a SQL error and returns its body.
async fn sql_error(response: Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status);
    let body = json(response).await;
    assert_eq!(body["error"]["code"], code, "{body}");
    body
}

#[tokio::test]
async fn postgres_principals_are_created_granted_and_dropped() {
    let server = TestServer::demo().await;
    let before = server.state().await;
    let pg = "demo-pg.postgres.database.azure.com";
    let create = format!(
        "select * from pgaadauth_create_principal_with_oid('aad_web', '{OBJECT_ID}', 'service', false, false)"
    );
    let response = sql(
        &server,
        TEST_TOKEN,
        pg,
        "orders",
        &[
            "SELECT 1 FROM pg_roles WHERE rolname = 'aad_web'",
            &create,
            "select 1 from pg_roles where rolname = 'aad_web'",
            "GRANT ALL PRIVILEGES ON DATABASE \"orders\" TO \"aad_web\";",
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    let body = json(response).await;
    assert_eq!(body["results"][0]["rows"], json!([]));
    assert_eq!(
        body["results"][1]["rows"],
        json!([["Created role for aad_web"]])
    );
    assert_eq!(body["results"][2]["rows"], json!([[1]]));
    let key = format!("{}/$principals/aad_web", demo::PG_SERVER_ID.to_lowercase());
    let role = server.state().await[&key].clone();
    assert_eq!(role["objectId"], OBJECT_ID);
    assert_eq!(role["databasePrivileges"], json!({"orders": ["ALL"]}));

    let again = sql(&server, TEST_TOKEN, pg, "orders", &[&create]).await;
    let error = sql_error(again, 400, "42710").await;
    assert_eq!(error["error"]["statementIndex"], 0);
    let unknown = sql(
        &server,
        TEST_TOKEN,
        pg,
        "orders",
        &["grant all privileges on database \"orders\" to \"nobody\""],
    )
    .await;
    sql_error(unknown, 400, "42704").await;
    let dropped = sql(
        &server,
        TEST_TOKEN,
        pg,
        "orders",
        &[
            "drop role if exists \"aad_web\"",
            "drop role if exists \"aad_web\"",
        ],
    )
    .await;
    assert_eq!(dropped.status(), 200);
    assert_eq!(
        server.state().await,
        before,
        "created then dropped leaves no trace"
    );
}

#[tokio::test]
async fn a_failing_statement_applies_nothing() {
    let server = TestServer::demo().await;
    let before = server.state().await;
    let create = format!(
        "select * from pgaadauth_create_principal_with_oid('aad_x', '{OBJECT_ID}', 'service', false, false)"
    );
    let response = sql(
        &server,
        TEST_TOKEN,
        "demo-pg.postgres.database.azure.com",
        "orders",
        &[&create, "create table t (x int)"],
    )
    .await;
    let error = sql_error(response, 400, "UnsupportedStatement").await;
    assert_eq!(error["error"]["statementIndex"], 1);
    assert_eq!(server.state().await, before);

    let unquoted = sql(
        &server,
        TEST_TOKEN,
        "demo-pg.postgres.database.azure.com",
        "orders",
        &["drop role if exists aad_x"],
    )
    .await;
    sql_error(unquoted, 400, "UnsupportedStatement").await;
    let no_server = sql(
        &server,
        TEST_TOKEN,
        "nope.postgres.database.azure.com",
        "orders",
        &[],
    )
    .await;
    sql_error(no_server, 404, "ServerNotFound").await;
    let no_db = sql(
        &server,
        TEST_TOKEN,
        "demo-pg.postgres.database.azure.com",
        "nope",
        &[],
    )
    .await;
    sql_error(no_db, 400, "3D000").await;
    let anonymous = server
        .client
        .post(server.url("/dataplane/sql"))
        .json(&json!({"server": "x", "database": "y", "statements": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn mysql_users_follow_service_connector_statements() {
    let server = TestServer::demo().await;
    let before = server.state().await;
    // Data-plane tokens have their own audience; any valid token of the mock is accepted.
    let token = server
        .mock
        .mint_token(
            &server.base,
            demo::CLIENT_ID,
            "https://ossrdbms-aad.database.windows.net",
            std::time::Duration::from_secs(60),
        )
        .await
        .unwrap();
    let mysql = "demo-mysql.mysql.database.azure.com";
    let create = format!("CREATE AADUSER IF NOT EXISTS 'aad_web' IDENTIFIED BY '{OBJECT_ID}'");
    let statements = [
        "SET aad_auth_validate_oids_in_tenant = OFF",
        create.as_str(),
        create.as_str(),
        "GRANT ALL PRIVILEGES ON `shop`.* TO 'aad_web'@'%'",
        "FLUSH PRIVILEGES",
    ];
    let response = sql(&server, &token, mysql, "shop", &statements).await;
    assert_eq!(response.status(), 200);
    let key = format!(
        "{}/$principals/aad_web",
        demo::MYSQL_SERVER_ID.to_lowercase()
    );
    let user = server.state().await[&key].clone();
    assert_eq!(user["identifiedBy"], OBJECT_ID);
    assert_eq!(user["databasePrivileges"], json!({"shop": ["ALL"]}));
    let response = sql(
        &server,
        &token,
        mysql,
        "shop",
        &["grant all privileges on `shop`.* to 'ghost'@'%'"],
    )
    .await;
    sql_error(response, 400, "1410").await;
    let response = sql(
        &server,
        &token,
        mysql,
        "shop",
        &["DROP USER IF EXISTS 'aad_web'@'%'"],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(server.state().await, before);
}

#[tokio::test]
async fn sql_users_are_contained_in_their_database() {
    let server = TestServer::demo().await;
    let before = server.state().await;
    let fqdn = "demo-sql.database.windows.net";
    let create =
        format!("CREATE USER [aad_web] FROM EXTERNAL PROVIDER WITH OBJECT_ID = '{OBJECT_ID}'");
    let response = sql(
        &server,
        TEST_TOKEN,
        fqdn,
        "reports",
        &[
            "select name from sys.database_principals where name = 'aad_web'",
            &create,
            "ALTER ROLE db_datareader ADD MEMBER [aad_web]",
            "alter role db_datawriter add member [aad_web]",
            "alter role db_ddladmin add member [aad_web]",
            "select name from sys.database_principals where name = 'aad_web'",
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    let body = json(response).await;
    assert_eq!(body["results"][0]["rows"], json!([]));
    assert_eq!(body["results"][5]["rows"], json!([["aad_web"]]));
    let key = format!(
        "{}/$principals/aad_web",
        demo::SQL_DATABASE_ID.to_lowercase()
    );
    let user = server.state().await[&key].clone();
    assert_eq!(
        user["roles"],
        json!(["db_datareader", "db_datawriter", "db_ddladmin"])
    );
    sql_error(
        sql(&server, TEST_TOKEN, fqdn, "reports", &[&create]).await,
        400,
        "15023",
    )
    .await;
    let ghost = sql(
        &server,
        TEST_TOKEN,
        fqdn,
        "reports",
        &["alter role db_datareader add member [ghost]"],
    )
    .await;
    sql_error(ghost, 400, "15151").await;
    let response = sql(
        &server,
        TEST_TOKEN,
        fqdn,
        "reports",
        &["DROP USER IF EXISTS [aad_web]"],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(server.state().await, before);
}
