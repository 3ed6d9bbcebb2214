use serde_json::{Value, json};
use tether_model::catalog::catalog;
use tether_model::ids::LinkerName;

use super::*;

const SUB: &str = "11111111-2222-3333-4444-555555555555";
const SITE: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.Web/sites/app";
const CONTAINER_APP: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.App/containerApps/ca";
const DB: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg/databases/orders";
const BLOB: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st/blobServices/default";
const VAULT: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv";

fn at_on(scope: &str) -> LinkerRef {
    LinkerRef {
        scope: ResourceId::parse(scope).unwrap(),
        name: LinkerName::parse("db-1").unwrap(),
    }
}

fn at() -> LinkerRef {
    at_on(SITE)
}

fn props(extra: Value) -> LinkerProperties {
    let mut base = json!({
        "targetService": {"type": "AzureResource", "id": DB},
        "authInfo": {"authType": "secret", "name": "app", "secretInfo": {"secretType": "rawValue", "value": "pw"}},
        "clientType": "python"
    });
    tether_model::merge::merge_patch(&mut base, &extra);
    LinkerProperties::from_json(base).unwrap()
}

fn sealed() -> SecretInput {
    SecretInput::Sealed(Sealed(vec![1]))
}

fn check_at(
    at: &LinkerRef,
    props: &LinkerProperties,
    secret: SecretInput,
) -> Result<ConnectionSpec, Error> {
    check(Request {
        catalog: catalog().unwrap(),
        at,
        props,
        secret,
        naming: KeyNaming::Plain,
        database_users: true,
    })
}

fn spec(extra: Value) -> ConnectionSpec {
    check_at(&at(), &props(extra), sealed()).unwrap()
}

/// The property a refused request names.
fn refused(extra: Value) -> String {
    check_at(&at(), &props(extra), sealed())
        .unwrap_err()
        .target()
        .unwrap()
        .to_string()
}

#[test]
fn a_supported_connection_becomes_a_spec() {
    let spec = spec(json!({"vNetSolution": {"type": "firewall"}}));
    assert_eq!(
        (spec.source.as_str(), spec.kind.as_str()),
        ("webapp", "postgres-flexible")
    );
    assert_eq!(spec.auth.user(), Some("app"));
    assert_eq!(spec.client, ClientType::Python);
    assert!(spec.network.source_ips);
    assert_eq!(spec.written_keys(), ["AZURE_POSTGRESQL_CONNECTIONSTRING"]);
    let none_client = check_at(&at(), &props(json!({"clientType": null})), sealed()).unwrap();
    assert_eq!(none_client.client, ClientType::None);
    // A spec survives storage unchanged.
    let stored: ConnectionSpec =
        serde_json::from_value(serde_json::to_value(&spec).unwrap()).unwrap();
    assert_eq!(stored, spec);
}

#[test]
fn unsupported_requests_name_the_property() {
    let cases = [
        (json!({"targetService": null}), "properties.targetService"),
        (
            json!({"targetService": {"id": "/subscriptions/x"}}),
            "properties.targetService.id",
        ),
        (
            json!({"targetService": {"id": SITE}}),
            "properties.targetService.id",
        ),
        (
            json!({"authInfo": {"name": null}}),
            "properties.authInfo.name",
        ),
        (
            json!({"authInfo": {"authType": "accessKey", "name": null, "secretInfo": null}}),
            "properties.authInfo.authType",
        ),
        (
            json!({"clientType": "kafka-springBoot"}),
            "properties.clientType",
        ),
        (
            json!({"vNetSolution": {"type": "privateLink"}}),
            "properties.vNetSolution.type",
        ),
        (
            json!({"secretStore": {"keyVaultId": "/x"}}),
            "properties.secretStore.keyVaultId",
        ),
        (
            json!({"secretStore": {"keyVaultId": DB}}),
            "properties.secretStore.keyVaultId",
        ),
        (
            json!({"secretStore": {"keyVaultId": VAULT, "keyVaultSecretName": "no spaces"}}),
            "properties.secretStore.keyVaultSecretName",
        ),
        (
            json!({"publicNetworkSolution": {"firewallRules": {"ipRanges": ["300.1.1.1"]}}}),
            "properties.publicNetworkSolution.firewallRules.ipRanges",
        ),
        (
            json!({"publicNetworkSolution": {"firewallRules": {"callerClientIP": "true"}}}),
            "properties.publicNetworkSolution.firewallRules.callerClientIP",
        ),
        (
            json!({"configurationInfo": {"customizedKeys": {"NOPE": "X"}}}),
            "properties.configurationInfo.customizedKeys",
        ),
        (
            json!({"configurationInfo": {"configurationStore": {"appConfigurationId": "x"}}}),
            "properties.configurationInfo.configurationStore",
        ),
        (json!({"scope": "main"}), "properties.scope"),
        (
            json!({"authInfo": {"authType": "systemAssignedIdentity", "userName": "no-dashes"}}),
            "properties.authInfo.userName",
        ),
        (
            json!({"authInfo": {"authType": "userAssignedIdentity", "name": null, "secretInfo": null}}),
            "properties.authInfo.clientId",
        ),
        (
            json!({"authInfo": {"authType": "userAssignedIdentity", "clientId": "c", "subscriptionId": "nope"}}),
            "properties.authInfo.subscriptionId",
        ),
        (
            json!({"authInfo": {"authType": "servicePrincipalSecret", "clientId": "c"}}),
            "properties.authInfo.principalId",
        ),
        (
            json!({"authInfo": {"secretInfo": {"secretType": "keyVaultSecretUri", "value": "http://insecure"}}}),
            "properties.authInfo.secretInfo.value",
        ),
        (
            json!({"authInfo": {"secretInfo": {"secretType": "keyVaultSecretReference", "name": "s"}}}),
            "properties.authInfo.secretInfo.secretType",
        ),
    ];
    for (extra, target) in cases {
        assert_eq!(refused(extra.clone()), target, "{extra}");
    }
    let no_secret = check_at(&at(), &props(json!({})), SecretInput::Missing).unwrap_err();
    assert_eq!(no_secret.target(), Some("properties.authInfo.secretInfo"));
    let unsupported_source =
        at_on(&SITE.replace("Microsoft.Web/sites", "Microsoft.Compute/virtualMachines"));
    assert_eq!(
        check_at(&unsupported_source, &props(json!({})), sealed())
            .unwrap_err()
            .target(),
        Some("resourceUri")
    );
}

#[test]
fn identities_get_a_database_user_named_after_the_linker_unless_given_one() {
    let system = spec(
        json!({"authInfo": {"authType": "systemAssignedIdentity", "name": null, "secretInfo": null}}),
    );
    assert_eq!(system.auth.user(), Some("aad_db_1"));
    assert_eq!(system.auth_type, AuthType::SystemAssignedIdentity);
    let named = spec(
        json!({"authInfo": {"authType": "userAssignedIdentity", "clientId": "cid", "userName": "orders_app"}}),
    );
    match &named.auth {
        Auth::UserIdentity {
            client_id,
            subscription,
            options,
        } => {
            assert_eq!((client_id.as_str(), subscription.as_str()), ("cid", SUB));
            assert_eq!(options.user_name.as_deref(), Some("orders_app"));
        }
        other => panic!("{other:?}"),
    }
    // Without a SQL data plane no database user can be made.
    let no_users = check(Request {
        catalog: catalog().unwrap(),
        at: &at(),
        props: &props(json!({"authInfo": {"authType": "systemAssignedIdentity"}})),
        secret: sealed(),
        naming: KeyNaming::Plain,
        database_users: false,
    })
    .unwrap_err();
    assert_eq!(no_users.target(), Some("properties.authInfo.authType"));
    // Opting out of auth grants nothing but still writes the configuration.
    let opted_out = spec(
        json!({"authInfo": {"authType": "systemAssignedIdentity", "authMode": "optOutAllAuth"}}),
    );
    let facts = tether_model::facts::Facts::default();
    assert!(opted_out.grants(&facts).unwrap().is_empty());
    assert!(!opted_out.written_keys().is_empty());
}

#[test]
fn keyed_targets_list_their_keys_and_roles_can_be_replaced() {
    let blob = |auth: Value| {
        spec(json!({"targetService": {"id": BLOB}, "authInfo": auth, "clientType": "dotnet"}))
    };
    assert_eq!(
        blob(json!({"authType": "secret", "name": null, "secretInfo": null})).auth,
        Auth::TargetKeys
    );
    assert_eq!(
        blob(json!({"authType": "accessKey", "name": null, "secretInfo": null})).auth,
        Auth::TargetKeys
    );
    assert_eq!(
        refused(json!({"targetService": {"id": BLOB}, "clientType": "dotnet"})),
        "properties.authInfo",
        "a keyed target takes no user name or password"
    );
    let facts = tether_model::facts::Facts::default();
    let default =
        blob(json!({"authType": "systemAssignedIdentity", "name": null, "secretInfo": null}));
    let account = ResourceId::parse(BLOB).unwrap().parent().unwrap();
    assert_eq!(
        default.grants(&facts).unwrap(),
        [Grant::Role {
            scope: account.clone(),
            role: "Storage Blob Data Contributor".into()
        }]
    );
    let custom = blob(
        json!({"authType": "systemAssignedIdentity", "name": null, "secretInfo": null, "roles": ["Storage Blob Data Reader"]}),
    );
    assert_eq!(
        custom.grants(&facts).unwrap(),
        [Grant::Role {
            scope: account,
            role: "Storage Blob Data Reader".into()
        }]
    );
}

#[test]
fn container_apps_name_the_container_and_secret_stores_a_vault() {
    let ca = at_on(CONTAINER_APP);
    let only = check_at(&ca, &props(json!({})), sealed()).unwrap();
    assert_eq!(only.scope, None, "the app's only container");
    let spec = check_at(
        &ca,
        &props(json!({"scope": "main", "secretStore": {"keyVaultId": VAULT, "keyVaultSecretName": "pg-pass"}})),
        sealed(),
    )
    .unwrap();
    assert_eq!(spec.scope.as_deref(), Some("main"));
    assert_eq!(
        spec.secret_store,
        Some(SecretStore {
            vault: ResourceId::parse(VAULT).unwrap(),
            name: Some("pg-pass".into())
        })
    );
}

#[test]
fn a_key_vault_reference_must_be_a_whole_setting() {
    let uri = json!({"secretType": "keyVaultSecretUri", "value": "https://kv.vault.azure.net/secrets/pw"});
    assert_eq!(
        refused(json!({"authInfo": {"secretInfo": uri.clone()}})),
        "properties.authInfo.secretInfo",
        "python's connection string embeds the password"
    );
    let spec = check_at(
        &at(),
        &props(json!({"authInfo": {"secretInfo": uri}, "clientType": "none"})),
        SecretInput::Missing,
    )
    .unwrap();
    assert!(matches!(spec.auth, Auth::SecretReference { .. }));
}

#[test]
fn self_hosted_servers_are_recognised_by_scheme() {
    let hosted = |endpoint: &str| {
        check_at(
            &at(),
            &props(
                json!({"targetService": {"type": "SelfHostedServer", "endpoint": endpoint, "id": null}}),
            ),
            sealed(),
        )
    };
    let pg = hosted("postgres://db.internal:6432/orders").unwrap();
    assert_eq!(pg.kind, "self-hosted-postgres");
    assert_eq!(
        pg.target,
        TargetRef::Endpoint("postgres://db.internal:6432/orders".into())
    );
    assert_eq!(
        hosted("ftp://x").unwrap_err().target(),
        Some("properties.targetService.endpoint")
    );
    assert_eq!(
        hosted("").unwrap_err().target(),
        Some("properties.targetService.endpoint")
    );
    // No firewall to open on a server Tether does not manage.
    let with_firewall = check_at(
        &at(),
        &props(
            json!({"targetService": {"type": "SelfHostedServer", "endpoint": "postgres://h/d", "id": null}, "vNetSolution": {"type": "firewall"}}),
        ),
        sealed(),
    );
    assert_eq!(
        with_firewall.unwrap_err().target(),
        Some("properties.vNetSolution.type")
    );
}

#[test]
fn firewall_rules_cover_source_addresses_ranges_and_azure_services() {
    let wanted = spec(json!({
        "vNetSolution": {"type": "firewall"},
        "publicNetworkSolution": {"firewallRules": {"ipRanges": ["10.0.0.0/30", "1.1.1.1-1.1.1.9", "20.42.0.1"], "azureServices": "true"}}
    }));
    let outbound: Vec<Ipv4Addr> = vec!["20.42.0.1".parse().unwrap(), "20.42.0.2".parse().unwrap()];
    let names: Vec<_> = wanted
        .firewall_rules("p-", &outbound)
        .into_iter()
        .map(|r| (r.name, r.start.to_string(), r.end.to_string()))
        .collect();
    let expected = [
        ("p-1-1-1-1_1-1-1-9", "1.1.1.1", "1.1.1.9"),
        ("p-10-0-0-0_10-0-0-3", "10.0.0.0", "10.0.0.3"),
        ("p-20-42-0-1", "20.42.0.1", "20.42.0.1"),
        ("p-20-42-0-2", "20.42.0.2", "20.42.0.2"),
        ("p-azure", "0.0.0.0", "0.0.0.0"),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(n, s, e)| (n.to_string(), s.to_string(), e.to_string()))
        .collect();
    assert_eq!(names, expected);
    let opted_out = spec(
        json!({"publicNetworkSolution": {"action": "optOut", "firewallRules": {"ipRanges": ["1.1.1.1"]}}}),
    );
    assert!(opted_out.firewall_rules("p-", &outbound).is_empty());
}

#[test]
fn ip_rule_targets_take_cidr_blocks() {
    let wanted = spec(json!({
        "targetService": {"id": BLOB},
        "authInfo": {"authType": "secret", "name": null, "secretInfo": null},
        "clientType": "dotnet",
        "vNetSolution": {"type": "firewall"},
        "publicNetworkSolution": {"firewallRules": {"ipRanges": ["10.0.0.1-10.0.0.6"]}}
    }));
    let values: Vec<String> = wanted
        .ip_rules(&["20.1.1.1".parse().unwrap()])
        .into_iter()
        .collect();
    assert_eq!(
        values,
        [
            "10.0.0.1",
            "10.0.0.2/31",
            "10.0.0.4/31",
            "10.0.0.6",
            "20.1.1.1"
        ]
    );
    assert_eq!(
        refused(
            json!({"targetService": {"id": BLOB}, "authInfo": {"authType": "secret", "name": null, "secretInfo": null}, "clientType": "dotnet", "publicNetworkSolution": {"firewallRules": {"azureServices": "true"}}})
        ),
        "properties.publicNetworkSolution.firewallRules.azureServices"
    );
}

#[test]
fn cidr_cover_is_minimal_and_exact() {
    let cases = [
        ("0.0.0.0", "255.255.255.255", vec!["0.0.0.0/0"]),
        ("10.0.0.0", "10.0.0.255", vec!["10.0.0.0/24"]),
        ("10.0.0.5", "10.0.0.5", vec!["10.0.0.5"]),
        (
            "255.255.255.254",
            "255.255.255.255",
            vec!["255.255.255.254/31"],
        ),
    ];
    for (start, end, want) in cases {
        assert_eq!(
            cidrs(start.parse().unwrap(), end.parse().unwrap()),
            want,
            "{start}-{end}"
        );
    }
    assert_eq!(
        parse_range("10.0.0.9/24"),
        Some(("10.0.0.0".parse().unwrap(), "10.0.0.255".parse().unwrap()))
    );
    assert_eq!(parse_range("10.0.0.9-10.0.0.1"), None);
    assert_eq!(parse_range("10.0.0.0/33"), None);
}

#[test]
fn rule_prefixes_are_stable_and_case_insensitive() {
    let p = rule_prefix(&at());
    assert!(
        p.starts_with("tether-") && p.len() == "tether-".len() + 13,
        "{p}"
    );
    let upper = LinkerRef {
        scope: ResourceId::parse(
            &SITE
                .to_uppercase()
                .replace("SUBSCRIPTIONS", "subscriptions"),
        )
        .unwrap(),
        name: LinkerName::parse("DB-1").unwrap(),
    };
    assert_eq!(rule_prefix(&upper), p);
    let other = LinkerRef {
        name: LinkerName::parse("db2").unwrap(),
        ..at()
    };
    assert_ne!(rule_prefix(&other), p);
}

#[test]
fn secrets_are_bound_to_the_linker_and_the_target() {
    let linker = LinkerId::new();
    let db = TargetRef::Arm(ResourceId::parse(DB).unwrap());
    let upper = TargetRef::Arm(ResourceId::parse(&DB.replace("orders", "ORDERS")).unwrap());
    assert_eq!(secret_owner(linker, &db), secret_owner(linker, &upper));
    assert_ne!(
        secret_owner(linker, &db),
        secret_owner(LinkerId::new(), &db)
    );
    assert_ne!(
        secret_owner(linker, &db),
        secret_owner(linker, &TargetRef::Endpoint("postgres://h/orders".into()))
    );
}
