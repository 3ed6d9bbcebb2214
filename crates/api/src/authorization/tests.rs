//! The secured HTTP surface end to end inside the process: the router with JWT
//! authentication (tokens signed by fixed test keys), role assignments and definitions in
//! ARM's shapes, the operator endpoints and their audit trail, and throttling.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tether_app::auth::testing::{Fixed, MemoryKeySource, TestIssuer, TestKey};
use tether_app::auth::{
    AuditLog, AuthSettings, Authenticator, Authorizer, AuthorizerSettings, IssuerSettings,
    Security, roles,
};

use tether_model::authz::{PrincipalId, Scope};

use tether_store::testing::TestDb;
use tower::ServiceExt;

use crate::{ApiConfig, BaseUrl, HttpLimits, ThrottleSettings};

const TENANT: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const AUD: &str = "https://management.azure.com";
const SUB: &str = "/subscriptions/11111111-2222-3333-4444-555555555555";
const SUB2: &str = "/subscriptions/22222222-2222-3333-4444-555555555555";
const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";
const BOB: &str = "b0b00000-0000-4000-8000-000000000002";
const OPS: &str = "0b500000-0000-4000-8000-000000000003";
const V: &str = "api-version=2022-04-01";

struct Env {
    router: Router,
    security: Arc<Security>,
    issuer: TestIssuer,
    key: TestKey,
    _db: TestDb,
}

async fn env(throttle: Option<ThrottleSettings>) -> Env {
    let db = TestDb::sqlite().unwrap();
    let store = tether_store::connect(&db.url, &tether_store::StoreOptions::default())
        .await
        .unwrap();
    let app = tether_app::testing::offline_app(store.clone());
    let issuer = TestIssuer::new("https://login.example", TENANT);
    let key = TestKey::fixed(Fixed::Rsa1, "k1");
    let keys = Arc::new(MemoryKeySource::default());
    keys.publish(&issuer.issuer, &[&key]);
    let authenticator = Authenticator::new(
        AuthSettings {
            issuers: vec![IssuerSettings {
                issuer: issuer.issuer.clone(),
                jwks_uri: None,
                tenant_id: Some(TENANT.into()),
            }],
            audiences: vec![AUD.into()],
            ..AuthSettings::default()
        },
        keys,
    );
    let security = Arc::new(Security {
        authenticator,
        authorizer: Authorizer::new(store.clone(), AuthorizerSettings::default()),
        audit: AuditLog::new(store, Duration::from_secs(86_400)),
    });
    let config = ApiConfig {
        base_url: BaseUrl::Fixed("https://tether.example".into()),
        limits: HttpLimits::default(),
        location: "local".into(),
        retry_after: 1,
        metrics: Arc::new(|| "# metrics\n".to_string()),
        security: security.clone(),
        throttle,
        refusal_audit_per_sec: 1000,
        region: None,
    };
    Env {
        router: crate::router(app, config),
        security,
        issuer,
        key,
        _db: db,
    }
}

impl Env {
    fn token(&self, oid: &str) -> String {
        let now = chrono::Utc::now().timestamp();
        self.key.sign(&self.issuer.claims(oid, AUD, now))
    }

    /// Makes `oid` Owner at `at` (as configuration's bootstrap owners do).
    async fn owner(&self, oid: &str, at: &str) {
        self.security
            .authorizer
            .bootstrap_owner(
                &PrincipalId::parse(oid).unwrap(),
                &Scope::parse(at).unwrap(),
            )
            .await
            .unwrap();
    }

    async fn send(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value, HeaderMap) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(b) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let response = self
            .router
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, body, headers)
    }

    async fn as_(
        &self,
        oid: &str,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let token = self.token(oid);
        let (status, body, _) = self.send(method, uri, Some(&token), body).await;
        (status, body)
    }
}

fn assignment_uri(scope: &str, name: &str) -> String {
    format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}?{V}")
}

fn assignment_body(role: &roles::RoleDefinition, principal: &str) -> Value {
    json!({"properties": {
        "roleDefinitionId": format!("{SUB}/providers/Microsoft.Authorization/roleDefinitions/{}", role.id),
        "principalId": principal,
        "principalType": "User",
    }})
}

/// The token with one character in the middle of its signature changed.
fn tamper(token: &str) -> String {
    let at = token.rfind('.').unwrap() + 20;
    let mut bytes = token.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

fn guid(n: u8) -> String {
    format!("{n:08x}-0000-4000-8000-00000000abcd")
}

#[tokio::test]
async fn requests_without_a_valid_token_get_arms_401_and_public_routes_stay_open() {
    let e = env(None).await;
    let uri = format!("{SUB}/providers/Microsoft.ServiceLinker/linkers?api-version=2022-05-01");
    let (status, body, headers) = e.send(Method::GET, &uri, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "AuthenticationFailed");
    let challenge = headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert_eq!(
        challenge,
        format!(
            "Bearer authorization_uri=\"https://login.example/{TENANT}\", error=\"invalid_token\", error_description=\"The authentication failed because of missing 'Authorization' header.\""
        )
    );
    // Expired, other audience, unknown issuer, tampered: each with its ARM code.
    let now = chrono::Utc::now().timestamp();
    let mut expired = e.issuer.claims(ALICE, AUD, now - 7200);
    expired.insert("exp".into(), json!(now - 3600));
    let other_aud = e.issuer.claims(ALICE, "api://other", now);
    let stranger = TestIssuer::new("https://evil.example", TENANT).claims(ALICE, AUD, now);
    let good = e.token(ALICE);
    let tampered = tamper(&good);
    for (token, code) in [
        (e.key.sign(&expired), "ExpiredAuthenticationToken"),
        (e.key.sign(&other_aud), "InvalidAuthenticationTokenAudience"),
        (e.key.sign(&stranger), "InvalidAuthenticationTokenTenant"),
        (tampered.clone(), "InvalidAuthenticationToken"),
        ("not-a-jwt".to_string(), "InvalidAuthenticationToken"),
    ] {
        let (status, body, headers) = e.send(Method::GET, &uri, Some(&token), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{code}");
        assert_eq!(body["error"]["code"], code);
        assert!(
            headers[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .contains("error=\"invalid_token\"")
        );
        let head = &token[..token.len().min(30)];
        assert!(
            !body.to_string().contains(head),
            "the token is never echoed"
        );
    }
    // The admin endpoints too.
    let (status, _, _) = e.send(Method::GET, "/admin/audit", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Health, readiness, metrics and documents need no token.
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi/2022-05-01.json",
    ] {
        let (status, _, _) = e.send(Method::GET, path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    // A valid token passes authentication (and the linker list needs a role: 200 empty or
    // 403 is the handler's business, never 401).
    let (status, _, _) = e.send(Method::GET, &uri, Some(&good), None).await;
    assert_ne!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn role_assignments_are_managed_in_arms_shape_by_those_allowed() {
    let e = env(None).await;
    e.owner(ALICE, SUB).await;
    let rg = format!("{SUB}/resourceGroups/rg-app");
    let name = guid(1);

    // Alice (Owner of the subscription) makes Bob Reader of the group; the SDK sends the
    // scope after a template slash, so the path starts with two.
    let uri = format!("/{}", assignment_uri(&rg, &name));
    let (status, body) = e
        .as_(
            ALICE,
            Method::PUT,
            &uri,
            Some(assignment_body(&roles::READER, BOB)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["id"],
        format!("{rg}/providers/Microsoft.Authorization/roleAssignments/{name}")
    );
    assert_eq!(body["name"], name);
    assert_eq!(body["type"], "Microsoft.Authorization/roleAssignments");
    let p = &body["properties"];
    assert_eq!(
        p["roleDefinitionId"],
        format!(
            "{SUB}/providers/Microsoft.Authorization/roleDefinitions/{}",
            roles::READER.id
        )
    );
    assert_eq!(p["principalId"], BOB);
    assert_eq!(p["principalType"], "User");
    assert_eq!(p["scope"], rg);
    assert_eq!(p["createdBy"], ALICE);
    assert!(p["createdOn"].as_str().unwrap().ends_with('Z'));

    // A replay answers 200 with the same assignment; another name for it is a 409.
    let (status, again) = e
        .as_(
            ALICE,
            Method::PUT,
            &uri,
            Some(assignment_body(&roles::READER, BOB)),
        )
        .await;
    assert_eq!((status, &again), (StatusCode::OK, &body));
    let (status, err) = e
        .as_(
            ALICE,
            Method::PUT,
            &assignment_uri(&rg, &guid(2)),
            Some(assignment_body(&roles::READER, BOB)),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(err["error"]["code"], "RoleAssignmentExists");

    // Bob (Reader) can read assignments at the group, but not write them, nor read elsewhere.
    let (status, got) = e
        .as_(BOB, Method::GET, &assignment_uri(&rg, &name), None)
        .await;
    assert_eq!((status, &got), (StatusCode::OK, &body));
    let (status, err) = e
        .as_(
            BOB,
            Method::PUT,
            &assignment_uri(&rg, &guid(3)),
            Some(assignment_body(&roles::OWNER, BOB)),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(err["error"]["code"], "AuthorizationFailed");
    assert_eq!(
        err["error"]["message"],
        format!(
            "The client '{BOB}' with object id '{BOB}' does not have authorization to perform action 'Microsoft.Authorization/roleAssignments/write' over scope '{rg}' or the scope is invalid. If access was recently granted, please refresh your credentials."
        )
    );
    let other_rg = format!("{SUB}/resourceGroups/rg-other");
    let (status, _) = e
        .as_(
            BOB,
            Method::GET,
            &format!("{other_rg}/providers/Microsoft.Authorization/roleAssignments?{V}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = e
        .as_(
            ALICE,
            Method::GET,
            &format!("{SUB2}/providers/Microsoft.Authorization/roleAssignments?{V}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "another subscription");

    // Lists: everything around the group, at-scope only, one principal's.
    let list = |filter: &str| {
        format!("{rg}/providers/Microsoft.Authorization/roleAssignments?{V}{filter}")
    };
    let (status, all) = e.as_(ALICE, Method::GET, &list(""), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        all["value"].as_array().unwrap().len(),
        2,
        "Alice's above, Bob's at"
    );
    assert!(all.get("nextLink").is_none());
    let (_, bobs) = e
        .as_(
            ALICE,
            Method::GET,
            &list(&format!("&$filter=principalId%20eq%20'{BOB}'")),
            None,
        )
        .await;
    assert_eq!(bobs["value"].as_array().unwrap().len(), 1);
    assert_eq!(bobs["value"][0]["name"], name);
    let (_, at_sub) = e
        .as_(
            ALICE,
            Method::GET,
            &format!(
                "{SUB}/providers/Microsoft.Authorization/roleAssignments?{V}&$filter=atScope()"
            ),
            None,
        )
        .await;
    assert_eq!(at_sub["value"].as_array().unwrap().len(), 1, "only Alice's");
    let (status, err) = e
        .as_(
            ALICE,
            Method::GET,
            &list("&$filter=roleDefinitionId%20eq%20'x'"),
            None,
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("UnsupportedQuery"))
    );

    // Delete: 200 with the assignment, then 204; then it is gone.
    let (status, err) = e
        .as_(BOB, Method::DELETE, &assignment_uri(&rg, &name), None)
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("AuthorizationFailed"))
    );
    let (status, removed) = e
        .as_(ALICE, Method::DELETE, &assignment_uri(&rg, &name), None)
        .await;
    assert_eq!((status, &removed), (StatusCode::OK, &body));
    let (status, _) = e
        .as_(ALICE, Method::DELETE, &assignment_uri(&rg, &name), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, err) = e
        .as_(ALICE, Method::GET, &assignment_uri(&rg, &name), None)
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("RoleAssignmentNotFound"))
    );
    // Bob lost his read access with it.
    let (status, _) = e.as_(BOB, Method::GET, &list(""), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn bad_assignment_requests_are_4xx_with_arm_codes() {
    let e = env(None).await;
    e.owner(ALICE, SUB).await;
    let rg = format!("{SUB}/resourceGroups/rg");
    let put = |name: &str, body: Value| {
        let uri = assignment_uri(&rg, name);
        let e = &e;
        async move { e.as_(ALICE, Method::PUT, &uri, Some(body)).await }
    };
    let cases = [
        (
            "not-a-guid",
            assignment_body(&roles::READER, BOB),
            "InvalidRoleAssignmentId",
        ),
        (
            &guid(1)[..],
            json!({"properties": {"roleDefinitionId": format!("/providers/Microsoft.Authorization/roleDefinitions/{}", uuid::Uuid::nil()), "principalId": BOB}}),
            "RoleDefinitionDoesNotExist",
        ),
        (
            &guid(2)[..],
            json!({"properties": {"roleDefinitionId": "Reader", "principalId": BOB}}),
            "InvalidRoleDefinitionId",
        ),
        (
            &guid(3)[..],
            json!({"properties": {"roleDefinitionId": format!("/providers/Microsoft.Authorization/roleDefinitions/{}", roles::READER.id), "principalId": "bob"}}),
            "InvalidPrincipalId",
        ),
        (
            &guid(4)[..],
            json!({"properties": {"roleDefinitionId": format!("/providers/Microsoft.Authorization/roleDefinitions/{}", roles::READER.id), "principalId": BOB, "principalType": "Robot"}}),
            "InvalidPrincipalType",
        ),
        (
            &guid(5)[..],
            json!({"properties": {"roleDefinitionId": format!("/providers/Microsoft.Authorization/roleDefinitions/{}", roles::READER.id), "principalId": BOB, "condition": "@Resource[x] StringEquals 'y'"}}),
            "InvalidParameter",
        ),
        (
            &guid(6)[..],
            json!({"properties": {"roleDefinitionId": format!("/providers/Microsoft.Authorization/roleDefinitions/{}", roles::READER.id), "principalId": BOB, "extra": 1}}),
            "InvalidRequestContent",
        ),
        (&guid(7)[..], json!({"nope": {}}), "InvalidRequestContent"),
    ];
    for (name, body, code) in cases {
        let (status, err) = put(name, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{code}: {err}");
        assert_eq!(err["error"]["code"], code);
    }
    // The api-version is Microsoft.Authorization's, not ServiceLinker's.
    let (status, err) = e
        .as_(
            ALICE,
            Method::GET,
            &format!("{rg}/providers/Microsoft.Authorization/roleAssignments"),
            None,
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("MissingApiVersionParameter"))
    );
    let (status, err) = e
        .as_(
            ALICE,
            Method::GET,
            &format!(
                "{rg}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-05-01"
            ),
            None,
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("NoRegisteredProviderFound"))
    );
    // Not JSON.
    let token = e.token(ALICE);
    let response = e
        .router
        .clone()
        .oneshot(
            Request::put(assignment_uri(&rg, &guid(9)))
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from("x"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // A malformed scope.
    let (status, _) = e
        .as_(
            ALICE,
            Method::GET,
            &format!("/subscriptions/nope/providers/Microsoft.Authorization/roleAssignments?{V}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn assignments_reach_resources_and_linkers_below_them() {
    let e = env(None).await;
    e.owner(ALICE, SUB).await;
    let linker = format!(
        "{SUB}/resourceGroups/rg/providers/Microsoft.Web/sites/web/providers/Microsoft.ServiceLinker/linkers/db"
    );
    let (status, body) = e
        .as_(
            ALICE,
            Method::PUT,
            &assignment_uri(&linker, &guid(1)),
            Some(assignment_body(&roles::READER, BOB)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["properties"]["scope"], linker);
    let who = tether_app::auth::Principal {
        object_id: PrincipalId::parse(BOB).unwrap(),
        tenant_id: TENANT.into(),
        app_id: None,
        name: None,
        kind: tether_app::auth::PrincipalKind::User,
        issuer: e.issuer.issuer.clone(),
    };
    let authz = &e.security.authorizer;
    let read = roles::actions::LINKERS_READ;
    assert!(
        authz
            .can(&who, read, &Scope::parse(&linker).unwrap())
            .await
            .unwrap()
    );
    let sibling = linker.replace("/linkers/db", "/linkers/cache");
    assert!(
        !authz
            .can(&who, read, &Scope::parse(&sibling).unwrap())
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn role_definitions_are_served_at_any_scope() {
    let e = env(None).await;
    for prefix in ["", SUB, "/"] {
        let uri = format!("{prefix}/providers/Microsoft.Authorization/roleDefinitions?{V}");
        let (status, body) = e.as_(BOB, Method::GET, &uri, None).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        let names: Vec<&str> = body["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["properties"]["roleName"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            vec![
                "Owner",
                "Contributor",
                "Reader",
                "User Access Administrator",
                "ServiceLinker Contributor",
                "Tether Operator"
            ]
        );
    }
    let (_, readers) = e
        .as_(BOB, Method::GET, &format!("{SUB}/providers/Microsoft.Authorization/roleDefinitions?{V}&$filter=roleName%20eq%20'Reader'"), None)
        .await;
    assert_eq!(readers["value"].as_array().unwrap().len(), 1);
    let reader = &readers["value"][0];
    assert_eq!(
        reader["id"],
        format!(
            "{SUB}/providers/Microsoft.Authorization/roleDefinitions/{}",
            roles::READER.id
        )
    );
    assert_eq!(
        reader["properties"]["permissions"][0]["actions"],
        json!(["*/read"])
    );
    assert_eq!(reader["properties"]["type"], "BuiltInRole");
    let (status, one) = e
        .as_(
            BOB,
            Method::GET,
            &format!(
                "{SUB}/providers/Microsoft.Authorization/roleDefinitions/{}?{V}",
                roles::CONTRIBUTOR.id
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        one["properties"]["permissions"][0]["notActions"][1],
        "Microsoft.Authorization/*/Write"
    );
    let (status, err) = e
        .as_(
            BOB,
            Method::GET,
            &format!(
                "/providers/Microsoft.Authorization/roleDefinitions/{}?{V}",
                uuid::Uuid::nil()
            ),
            None,
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("RoleDefinitionDoesNotExist"))
    );
    let (status, _) = e
        .as_(
            BOB,
            Method::PUT,
            &format!(
                "/providers/Microsoft.Authorization/roleDefinitions/{}?{V}",
                roles::READER.id
            ),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn the_audit_trail_records_writes_and_refusals_for_operators_only() {
    let e = env(None).await;
    e.owner(ALICE, SUB).await;
    let rg = format!("{SUB}/resourceGroups/rg");
    // One accepted write, one refused write, one bad token.
    let (status, _) = e
        .as_(
            ALICE,
            Method::PUT,
            &assignment_uri(&rg, &guid(1)),
            Some(assignment_body(&roles::READER, BOB)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = e
        .as_(
            BOB,
            Method::PUT,
            &assignment_uri(&rg, &guid(2)),
            Some(assignment_body(&roles::OWNER, BOB)),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = e
        .as_(
            BOB,
            Method::GET,
            &format!("{SUB}/providers/Microsoft.Authorization/roleAssignments?{V}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a refused read");
    let (status, _) = e
        .as_(
            ALICE,
            Method::GET,
            &format!("{rg}/providers/Microsoft.Authorization/roleAssignments?{V}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "an accepted read (not audited)");
    let (status, _, _) = e
        .send(
            Method::GET,
            &format!("{rg}/providers/Microsoft.Authorization/roleAssignments?{V}"),
            Some("junk"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Alice owns a subscription, not Tether: the audit trail is not hers to read.
    let (status, err) = e.as_(ALICE, Method::GET, "/admin/audit", None).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("AuthorizationFailed"))
    );
    // An operator (Tether Operator at the root) reads it, newest first.
    let (status, _) = e
        .as_(ALICE, Method::PUT, &assignment_uri("", &guid(3)), Some(json!({"properties": {
            "roleDefinitionId": format!("/providers/Microsoft.Authorization/roleDefinitions/{}", roles::TETHER_OPERATOR.id),
            "principalId": OPS}})))
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "Alice cannot assign at the root"
    );
    e.security
        .authorizer
        .bootstrap_owner(&PrincipalId::parse(OPS).unwrap(), &Scope::Root)
        .await
        .unwrap();
    let (status, page) = e
        .as_(OPS, Method::GET, "/admin/audit?limit=100", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let records = page["value"].as_array().unwrap();
    let find = |outcome: &str, action: &str| {
        records
            .iter()
            .find(|r| r["outcome"] == outcome && r["action"] == action)
            .unwrap_or_else(|| panic!("no {outcome} {action} in {page}"))
    };
    let accepted = find("accepted", "Microsoft.Authorization/roleAssignments/write");
    assert_eq!(accepted["principalId"], ALICE);
    assert_eq!(accepted["tenantId"], TENANT);
    assert_eq!(accepted["scope"], rg);
    assert_eq!(accepted["status"], 201);
    assert!(
        accepted["requestId"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    assert!(accepted["correlationId"].as_str().is_some());
    let refused = records
        .iter()
        .find(|r| r["outcome"] == "refused" && r["principalId"] == BOB)
        .unwrap();
    assert_eq!(refused["errorCode"], "AuthorizationFailed");
    assert_eq!(refused["status"], 403);
    let unauthenticated = find("refused", "authenticate");
    assert_eq!(unauthenticated["principalId"], Value::Null);
    assert_eq!(unauthenticated["errorCode"], "InvalidAuthenticationToken");
    let refused_read = records
        .iter()
        .find(|r| r["action"] == "Microsoft.Authorization/roleAssignments/read")
        .unwrap();
    assert_eq!(
        (
            refused_read["principalId"].as_str(),
            refused_read["outcome"].as_str(),
            refused_read["scope"].as_str()
        ),
        (Some(BOB), Some("refused"), Some(SUB))
    );
    assert_eq!(
        records
            .iter()
            .filter(|r| r["action"] == "Microsoft.Authorization/roleAssignments/read")
            .count(),
        1,
        "accepted reads are not audited"
    );
    let operator_refusal = records
        .iter()
        .find(|r| r["action"] == "Tether.Operator/audit/list/action" && r["principalId"] == ALICE)
        .unwrap();
    assert_eq!(operator_refusal["outcome"], "refused");
    // Filters and paging.
    let (_, bobs) = e
        .as_(
            OPS,
            Method::GET,
            &format!("/admin/audit?principal={BOB}"),
            None,
        )
        .await;
    assert!(
        bobs["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["principalId"] == BOB)
    );
    let (_, first) = e
        .as_(
            OPS,
            Method::GET,
            "/admin/audit?limit=2&outcome=refused",
            None,
        )
        .await;
    assert_eq!(first["value"].as_array().unwrap().len(), 2);
    let token = first["continuationToken"].as_str().unwrap();
    assert!(
        first["nextLink"]
            .as_str()
            .unwrap()
            .starts_with("https://tether.example/admin/audit?")
    );
    let (status, next) = e
        .as_(
            OPS,
            Method::GET,
            &format!("/admin/audit?limit=2&outcome=refused&continuationToken={token}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        next["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["outcome"] == "refused")
    );
    assert_ne!(next["value"][0]["id"], first["value"][0]["id"]);
    for bad in [
        "limit=0",
        "outcome=maybe",
        "since=yesterday",
        "continuationToken=%21",
        "scope=nope",
    ] {
        let (status, _) = e
            .as_(OPS, Method::GET, &format!("/admin/audit?{bad}"), None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    // The existing operator endpoints follow the same rule.
    let (status, _) = e.as_(ALICE, Method::GET, "/admin/sagas", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = e.as_(OPS, Method::GET, "/admin/sagas", None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn principals_are_throttled_with_arms_429() {
    let e = env(Some(ThrottleSettings {
        per_principal_per_minute: 60,
        principal_burst: 3,
        per_subscription_per_minute: 6000,
        subscription_burst: 100,
        max_keys: 1000,
    }))
    .await;
    let uri = format!("{SUB}/providers/Microsoft.Authorization/roleDefinitions?{V}");
    let token = e.token(BOB);
    for left in [2, 1, 0] {
        let (status, _, headers) = e.send(Method::GET, &uri, Some(&token), None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            headers.contains_key("x-ms-ratelimit-remaining-subscription-reads"),
            "{left}"
        );
    }
    let (status, body, headers) = e.send(Method::GET, &uri, Some(&token), None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error"]["code"], "SubscriptionRequestsThrottled");
    assert_eq!(headers[header::RETRY_AFTER], "1");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!(
                "Number of read requests for principal '{BOB}' exceeded the limit."
            ))
    );
    // Another principal is not affected; writes have their own budget.
    let (status, _, _) = e.send(Method::GET, &uri, Some(&e.token(ALICE)), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = e
        .send(
            Method::DELETE,
            &assignment_uri(SUB, &guid(1)),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a write gets through to authorization"
    );
}
