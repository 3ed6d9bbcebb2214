//! A small data plane for database principals: `POST /dataplane/sql` runs the few SQL
//! statements Service Connector sends to create (and drop) a database user for an Entra
//! identity on PostgreSQL flexible, MySQL flexible and Azure SQL servers.
//!
//! Exactly the statement forms listed in `docs/mock-azure.md` are recognised (keywords in any
//! case, identifiers and literals quoted as shown); anything else is `400
//! UnsupportedStatement`. A request's statements apply atomically: if one fails, none applies.
//! Principals are stored in the resource map, so `GET /admin/state` shows them:
//! PostgreSQL roles and MySQL users under `{server id}/$principals/{name}` (server-wide),
//! Azure SQL users under `{database id}/$principals/{name}` (contained users), keys
//! lower-cased.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::json_response;
use crate::state::State;

/// Most statements in one request.
const MAX_STATEMENTS: usize = 64;
/// Longest statement, in bytes.
const MAX_STATEMENT_BYTES: usize = 4096;
/// Longest server or database name, in bytes.
const MAX_NAME_BYTES: usize = 256;

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    server: String,
    database: String,
    statements: Vec<String>,
}

/// The database engines served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Postgres,
    MySql,
    Sql,
}

/// A SQL-ish failure: HTTP status, code (SQLSTATE or error number) and message.
#[derive(Debug)]
struct SqlError {
    status: StatusCode,
    code: String,
    message: String,
}

impl SqlError {
    fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// `POST /dataplane/sql` (the caller's bearer token is checked by the dispatcher).
pub(crate) fn run(state: &mut State, body: &[u8]) -> Response {
    match execute(state, body) {
        Ok(results) => json_response(StatusCode::OK, &json!({ "results": results })),
        Err((index, e)) => {
            let mut error = json!({"code": e.code, "message": e.message});
            if let Some(index) = index {
                error["statementIndex"] = index.into();
            }
            json_response(e.status, &json!({ "error": error }))
        }
    }
}

type Failure = (Option<usize>, SqlError);

fn execute(state: &mut State, body: &[u8]) -> Result<Vec<Value>, Failure> {
    let request: SqlRequest = serde_json::from_slice(body).map_err(|e| {
        (
            None,
            SqlError::new(
                "InvalidRequestContent",
                format!("The request body is invalid: {e}."),
            ),
        )
    })?;
    if request.statements.len() > MAX_STATEMENTS
        || request
            .statements
            .iter()
            .any(|s| s.len() > MAX_STATEMENT_BYTES)
        || request.server.len() > MAX_NAME_BYTES
        || request.database.len() > MAX_NAME_BYTES
    {
        return Err((
            None,
            SqlError::new(
                "RequestTooLarge",
                format!(
                    "At most {MAX_STATEMENTS} statements of at most {MAX_STATEMENT_BYTES} bytes are accepted."
                ),
            ),
        ));
    }
    let (engine, server_key) = find_server(state, &request.server).ok_or_else(|| {
        let mut e = SqlError::new(
            "ServerNotFound",
            format!("The server '{}' does not exist.", request.server),
        );
        e.status = StatusCode::NOT_FOUND;
        (None, e)
    })?;
    let database = request.database.clone();
    let database_key = format!("{server_key}/databases/{}", database.to_lowercase());
    let system_database = match engine {
        Engine::Postgres => "postgres",
        Engine::MySql => "mysql",
        Engine::Sql => "master",
    };
    if !state.resources.contains_key(&database_key)
        && !database.eq_ignore_ascii_case(system_database)
    {
        let (code, message) = match engine {
            Engine::Postgres => ("3D000", format!("database \"{database}\" does not exist")),
            Engine::MySql => ("1049", format!("Unknown database '{database}'")),
            Engine::Sql => (
                "4060",
                format!(
                    "Cannot open database \"{database}\" requested by the login. The login failed."
                ),
            ),
        };
        return Err((None, SqlError::new(code, message)));
    }
    let mut session = Session {
        state,
        engine,
        server_key,
        database_key,
        changes: BTreeMap::new(),
    };
    let mut results = Vec::new();
    for (index, statement) in request.statements.iter().enumerate() {
        let tokens = tokenize(statement).ok_or_else(|| (Some(index), unsupported(statement)))?;
        let rows = session
            .statement(&tokens, statement)
            .map_err(|e| (Some(index), e))?;
        results.push(json!({ "rows": rows }));
    }
    let changes = std::mem::take(&mut session.changes);
    for (key, change) in changes {
        match change {
            Some(value) => state.resources.insert(key, value),
            None => state.resources.remove(&key),
        };
    }
    Ok(results)
}

fn unsupported(statement: &str) -> SqlError {
    let shown: String = statement.chars().take(200).collect();
    SqlError::new(
        "UnsupportedStatement",
        format!("The mock data plane does not support the statement '{shown}'."),
    )
}

/// The server whose FQDN is `fqdn`, with its engine and state key.
fn find_server(state: &State, fqdn: &str) -> Option<(Engine, String)> {
    state.resources.iter().find_map(|(key, resource)| {
        let engine = match resource["type"].as_str()? {
            t if t.eq_ignore_ascii_case("Microsoft.DBforPostgreSQL/flexibleServers") => {
                Engine::Postgres
            }
            t if t.eq_ignore_ascii_case("Microsoft.DBforMySQL/flexibleServers") => Engine::MySql,
            t if t.eq_ignore_ascii_case("Microsoft.Sql/servers") => Engine::Sql,
            _ => return None,
        };
        let matches = resource["properties"]["fullyQualifiedDomainName"]
            .as_str()
            .is_some_and(|f| f.eq_ignore_ascii_case(fqdn.trim()));
        matches.then(|| (engine, key.clone()))
    })
}

/// A lexical token.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// A bare word (keyword, name, number), compared case-insensitively.
    Word(String),
    /// A single-quoted literal.
    Literal(String),
    /// A quoted identifier: `"x"`, `` `x` `` or `[x]`.
    Quoted(String),
    /// One punctuation character: `( ) , . * = @`.
    Punct(char),
}

/// Splits a statement into tokens; `None` on anything outside the small grammar.
fn tokenize(statement: &str) -> Option<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut chars = statement.trim().trim_end_matches(';').chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '\'' | '"' | '`' | '[' => {
                chars.next();
                let close = if c == '[' { ']' } else { c };
                let mut text = String::new();
                loop {
                    let next = chars.next()?;
                    if next == close {
                        // A doubled closing character is an escaped one.
                        if chars.peek() == Some(&close) {
                            chars.next();
                            text.push(close);
                        } else {
                            break;
                        }
                    } else {
                        text.push(next);
                    }
                }
                tokens.push(if c == '\'' {
                    Token::Literal(text)
                } else {
                    Token::Quoted(text)
                });
            }
            '(' | ')' | ',' | '.' | '*' | '=' | '@' => {
                chars.next();
                tokens.push(Token::Punct(c));
            }
            c if c.is_ascii_alphanumeric() || c == '_' => {
                let mut word = String::new();
                while let Some(&c) = chars
                    .peek()
                    .filter(|c| c.is_ascii_alphanumeric() || **c == '_')
                {
                    word.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
            _ => return None,
        }
    }
    Some(tokens)
}

/// One pattern element.
#[derive(Clone, Copy)]
enum P {
    /// A keyword (case-insensitive).
    K(&'static str),
    /// A punctuation character.
    C(char),
    /// A single-quoted literal, captured.
    Lit,
    /// A quoted identifier, captured.
    Id,
    /// A bare word, captured.
    Word,
}

/// Matches tokens against a pattern; the captures in order.
fn matches(tokens: &[Token], pattern: &[P]) -> Option<Vec<String>> {
    if tokens.len() != pattern.len() {
        return None;
    }
    let mut captures = Vec::new();
    for (token, p) in tokens.iter().zip(pattern) {
        match (p, token) {
            (P::K(k), Token::Word(w)) if w.eq_ignore_ascii_case(k) => {}
            (P::C(c), Token::Punct(t)) if c == t => {}
            (P::Lit, Token::Literal(s)) | (P::Id, Token::Quoted(s)) | (P::Word, Token::Word(s)) => {
                captures.push(s.clone());
            }
            _ => return None,
        }
    }
    Some(captures)
}

/// The statements of one request, with their not yet committed changes.
struct Session<'a> {
    state: &'a State,
    engine: Engine,
    server_key: String,
    database_key: String,
    /// State key -> new value (`None`: removed).
    changes: BTreeMap<String, Option<Value>>,
}

impl Session<'_> {
    fn get(&self, key: &str) -> Option<Value> {
        match self.changes.get(key) {
            Some(change) => change.clone(),
            None => self.state.resources.get(key).cloned(),
        }
    }

    fn principal_key(&self, name: &str) -> String {
        let owner = match self.engine {
            Engine::Sql => &self.database_key,
            Engine::Postgres | Engine::MySql => &self.server_key,
        };
        format!("{owner}/$principals/{}", name.to_lowercase())
    }

    fn database_exists(&self, name: &str) -> bool {
        self.state.resources.contains_key(&format!(
            "{}/databases/{}",
            self.server_key,
            name.to_lowercase()
        ))
    }

    fn statement(&mut self, tokens: &[Token], text: &str) -> Result<Vec<Value>, SqlError> {
        use P::{C, Id, K, Lit, Word};
        match self.engine {
            Engine::Postgres => {
                let create = [
                    K("select"),
                    C('*'),
                    K("from"),
                    K("pgaadauth_create_principal_with_oid"),
                    C('('),
                    Lit,
                    C(','),
                    Lit,
                    C(','),
                    Lit,
                    C(','),
                    Word,
                    C(','),
                    Word,
                    C(')'),
                ];
                if let Some(c) = matches(tokens, &create) {
                    return self.pg_create(&c[0], &c[1], &c[2], &c[3], &c[4]);
                }
                let exists = [
                    K("select"),
                    Word,
                    K("from"),
                    K("pg_roles"),
                    K("where"),
                    K("rolname"),
                    C('='),
                    Lit,
                ];
                if let Some(c) = matches(tokens, &exists).filter(|c| c[0] == "1") {
                    let found = self.get(&self.principal_key(&c[1])).is_some();
                    return Ok(if found { vec![json!([1])] } else { Vec::new() });
                }
                let grant = [
                    K("grant"),
                    K("all"),
                    K("privileges"),
                    K("on"),
                    K("database"),
                    Id,
                    K("to"),
                    Id,
                ];
                if let Some(c) = matches(tokens, &grant) {
                    return self.grant_database(&c[0], &c[1]);
                }
                let drop = [K("drop"), K("role"), K("if"), K("exists"), Id];
                if let Some(c) = matches(tokens, &drop) {
                    self.changes.insert(self.principal_key(&c[0]), None);
                    return Ok(Vec::new());
                }
            }
            Engine::MySql => {
                let set = [
                    K("set"),
                    K("aad_auth_validate_oids_in_tenant"),
                    C('='),
                    Word,
                ];
                if matches(tokens, &set)
                    .is_some_and(|c| matches!(c[0].to_lowercase().as_str(), "on" | "off"))
                {
                    return Ok(Vec::new());
                }
                let create = [
                    K("create"),
                    K("aaduser"),
                    K("if"),
                    K("not"),
                    K("exists"),
                    Lit,
                    K("identified"),
                    K("by"),
                    Lit,
                ];
                if let Some(c) = matches(tokens, &create) {
                    let key = self.principal_key(&c[0]);
                    if self.get(&key).is_none() {
                        let user = json!({"name": c[0], "host": "%", "identifiedBy": c[1], "databasePrivileges": {}});
                        self.changes.insert(key, Some(user));
                    }
                    return Ok(Vec::new());
                }
                let grant = [
                    K("grant"),
                    K("all"),
                    K("privileges"),
                    K("on"),
                    Id,
                    C('.'),
                    C('*'),
                    K("to"),
                    Lit,
                    C('@'),
                    Lit,
                ];
                if let Some(c) = matches(tokens, &grant).filter(|c| c[2] == "%") {
                    return self.grant_database(&c[0], &c[1]);
                }
                if matches(tokens, &[K("flush"), K("privileges")]).is_some() {
                    return Ok(Vec::new());
                }
                let exists = [
                    K("select"),
                    Word,
                    K("from"),
                    K("mysql"),
                    C('.'),
                    K("user"),
                    K("where"),
                    K("user"),
                    C('='),
                    Lit,
                ];
                if let Some(c) = matches(tokens, &exists).filter(|c| c[0] == "1") {
                    let found = self.get(&self.principal_key(&c[1])).is_some();
                    return Ok(if found { vec![json!([1])] } else { Vec::new() });
                }
                let drop = [K("drop"), K("user"), K("if"), K("exists"), Lit, C('@'), Lit];
                if let Some(c) = matches(tokens, &drop).filter(|c| c[1] == "%") {
                    self.changes.insert(self.principal_key(&c[0]), None);
                    return Ok(Vec::new());
                }
            }
            Engine::Sql => {
                let exists = [
                    K("select"),
                    K("name"),
                    K("from"),
                    K("sys"),
                    C('.'),
                    K("database_principals"),
                    K("where"),
                    K("name"),
                    C('='),
                    Lit,
                ];
                if let Some(c) = matches(tokens, &exists) {
                    let found = self.get(&self.principal_key(&c[0]));
                    return Ok(found.map(|p| vec![json!([p["name"]])]).unwrap_or_default());
                }
                let create = [
                    K("create"),
                    K("user"),
                    Id,
                    K("from"),
                    K("external"),
                    K("provider"),
                    K("with"),
                    K("object_id"),
                    C('='),
                    Lit,
                ];
                if let Some(c) = matches(tokens, &create) {
                    let key = self.principal_key(&c[0]);
                    if self.get(&key).is_some() {
                        return Err(SqlError::new(
                            "15023",
                            format!(
                                "User, group, or role '{}' already exists in the current database.",
                                c[0]
                            ),
                        ));
                    }
                    if uuid::Uuid::try_parse(&c[1]).is_err() {
                        return Err(SqlError::new(
                            "33131",
                            format!("The object id '{}' is not valid.", c[1]),
                        ));
                    }
                    let user = json!({"name": c[0], "objectId": c[1].to_lowercase(), "type": "E", "roles": []});
                    self.changes.insert(key, Some(user));
                    return Ok(Vec::new());
                }
                let alter = [K("alter"), K("role"), Word, K("add"), K("member"), Id];
                if let Some(c) = matches(tokens, &alter) {
                    return self.sql_add_member(&c[0], &c[1]);
                }
                let drop = [K("drop"), K("user"), K("if"), K("exists"), Id];
                if let Some(c) = matches(tokens, &drop) {
                    self.changes.insert(self.principal_key(&c[0]), None);
                    return Ok(Vec::new());
                }
            }
        }
        Err(unsupported(text))
    }

    fn pg_create(
        &mut self,
        name: &str,
        object_id: &str,
        principal_type: &str,
        is_admin: &str,
        is_mfa: &str,
    ) -> Result<Vec<Value>, SqlError> {
        let boolean = |w: &str| matches!(w.to_lowercase().as_str(), "true" | "false");
        if !["service", "user", "group"].contains(&principal_type)
            || !boolean(is_admin)
            || !boolean(is_mfa)
        {
            return Err(SqlError::new(
                "22023",
                "invalid argument for pgaadauth_create_principal_with_oid",
            ));
        }
        if uuid::Uuid::try_parse(object_id).is_err() {
            return Err(SqlError::new(
                "22023",
                format!("invalid object id \"{object_id}\""),
            ));
        }
        let key = self.principal_key(name);
        if self.get(&key).is_some() {
            return Err(SqlError::new(
                "42710",
                format!("role \"{name}\" already exists"),
            ));
        }
        let role = json!({
            "name": name,
            "objectId": object_id.to_lowercase(),
            "principalType": principal_type,
            "isAdmin": is_admin.eq_ignore_ascii_case("true"),
            "databasePrivileges": {},
        });
        self.changes.insert(key, Some(role));
        Ok(vec![json!([format!("Created role for {name}")])])
    }

    /// PostgreSQL `grant all privileges on database` and MySQL `grant all privileges on db.*`.
    fn grant_database(&mut self, database: &str, name: &str) -> Result<Vec<Value>, SqlError> {
        let key = self.principal_key(name);
        let mut principal = self.get(&key).ok_or_else(|| match self.engine {
            Engine::MySql => {
                SqlError::new("1410", "You are not allowed to create a user with GRANT")
            }
            _ => SqlError::new("42704", format!("role \"{name}\" does not exist")),
        })?;
        if self.engine == Engine::Postgres
            && !self.database_exists(database)
            && database != "postgres"
        {
            return Err(SqlError::new(
                "3D000",
                format!("database \"{database}\" does not exist"),
            ));
        }
        principal["databasePrivileges"][database.to_lowercase()] = json!(["ALL"]);
        self.changes.insert(key, Some(principal));
        Ok(Vec::new())
    }

    fn sql_add_member(&mut self, role: &str, name: &str) -> Result<Vec<Value>, SqlError> {
        let role = role.to_lowercase();
        if !["db_datareader", "db_datawriter", "db_ddladmin"].contains(&role.as_str()) {
            return Err(SqlError::new(
                "15151",
                format!(
                    "Cannot alter the role '{role}', because it does not exist or you do not have permission."
                ),
            ));
        }
        let key = self.principal_key(name);
        let mut user = self.get(&key).ok_or_else(|| {
            SqlError::new("15151", format!(
                "Cannot add the principal '{name}', because it does not exist or you do not have permission."
            ))
        })?;
        let roles = user["roles"].as_array().cloned().unwrap_or_default();
        if !roles.iter().any(|r| r == role.as_str()) {
            let mut roles = roles;
            roles.push(role.into());
            roles.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            user["roles"] = Value::Array(roles);
        }
        self.changes.insert(key, Some(user));
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_cover_the_quoting_styles() {
        let tokens = tokenize("GRANT all on `shop`.* TO 'it''s'@'%';").unwrap();
        assert_eq!(tokens[3], Token::Quoted("shop".into()));
        assert_eq!(tokens[7], Token::Literal("it's".into()));
        assert_eq!(
            tokenize("[a]]b]").unwrap(),
            vec![Token::Quoted("a]b".into())]
        );
        assert!(tokenize("select 'open").is_none());
        assert!(tokenize("select #").is_none());
    }

    #[test]
    fn patterns_match_exactly() {
        let tokens = tokenize("drop ROLE if exists \"x\"").unwrap();
        let pattern = [
            P::K("drop"),
            P::K("role"),
            P::K("if"),
            P::K("exists"),
            P::Id,
        ];
        assert_eq!(matches(&tokens, &pattern), Some(vec!["x".to_owned()]));
        let tokens = tokenize("drop role if exists x").unwrap();
        assert_eq!(matches(&tokens, &pattern), None);
    }
}
