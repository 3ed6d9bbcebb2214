//! The authorization decision, as a pure function: does any of a principal's role assignments
//! whose scope covers the requested scope carry a role that grants the action? Plus the rule
//! for resources a request names besides the one it addresses (a linker's target).

use tether_model::authz::{PrincipalId, RoleAssignment, Scope};
use tether_model::ids::ResourceId;

use super::roles;

/// ARM's decision: `principal` may perform `action` over `scope` when one of its assignments
/// sits at `scope` or above it and names a role that grants the action (`notActions` only
/// subtract within their own role). Assignments of other principals and of unknown roles
/// never grant anything.
pub fn allows(
    assignments: &[RoleAssignment],
    principal: &PrincipalId,
    action: &str,
    scope: &Scope,
) -> bool {
    assignments.iter().any(|a| {
        a.principal == *principal
            && a.scope.covers(scope)
            && roles::role(a.role_definition).is_some_and(|r| r.grants(action))
    })
}

/// The action a caller must hold over a resource a request names without addressing it —
/// the target of a linker, a key vault or app configuration store it should write to, a
/// user-assigned identity it should use: the right to write that resource itself
/// (`{resource type}/write`). Tether acts on such a resource (opens its firewall, reads its
/// keys, grants roles on it) with its own credentials, so it insists the caller could have
/// changed it too; Owner and Contributor can, Reader and ServiceLinker Contributor cannot.
pub fn named_resource_action(resource: &ResourceId) -> String {
    match resource.resource_type() {
        Some(ty) => format!("{ty}/write"),
        None if resource.resource_group().is_some() => {
            "Microsoft.Resources/subscriptions/resourceGroups/write".to_string()
        }
        None => "Microsoft.Resources/subscriptions/write".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use tether_model::authz::{PrincipalType, RoleAssignmentId};
    use uuid::Uuid;

    use super::roles::actions::*;
    use super::roles::*;
    use super::*;

    const SUB: &str = "/subscriptions/11111111-2222-3333-4444-555555555555";
    const SUB2: &str = "/subscriptions/22222222-2222-3333-4444-555555555555";
    const ALICE: &str = "aaaaaaaa-0000-4000-8000-000000000001";
    const BOB: &str = "bbbbbbbb-0000-4000-8000-000000000002";

    fn at(scope: &str, role: &RoleDefinition, who: &str) -> RoleAssignment {
        RoleAssignment {
            id: RoleAssignmentId::new(),
            scope: Scope::parse(scope).unwrap(),
            role_definition: role.id,
            principal: PrincipalId::parse(who).unwrap(),
            principal_type: PrincipalType::User,
            description: None,
            created_on: Utc::now(),
            created_by: None,
        }
    }

    fn linker(rg: &str, site: &str) -> String {
        format!(
            "{SUB}/resourceGroups/{rg}/providers/Microsoft.Web/sites/{site}/providers/Microsoft.ServiceLinker/linkers/db"
        )
    }

    fn db(sub: &str, rg: &str) -> String {
        format!(
            "{sub}/resourceGroups/{rg}/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg/databases/orders"
        )
    }

    /// principal x role x assignment scope x action x requested scope.
    #[test]
    fn the_matrix() {
        let app_rg = format!("{SUB}/resourceGroups/rg-app");
        let site = format!("{app_rg}/providers/Microsoft.Web/sites/web");
        let data_rg = format!("{SUB}/resourceGroups/rg-data");
        let web_linker = linker("rg-app", "web");
        let pg_write = "Microsoft.DBforPostgreSQL/flexibleServers/databases/write";
        // (assignment scope, role, action, requested scope, allowed)
        let cases: Vec<(&str, &RoleDefinition, &str, String, bool)> = vec![
            // Inheritance downward: subscription, group, resource, child (the linker).
            (
                SUB,
                &CONTRIBUTOR,
                LINKERS_WRITE,
                linker("rg-app", "web"),
                true,
            ),
            (
                &app_rg,
                &CONTRIBUTOR,
                LINKERS_WRITE,
                linker("rg-app", "web"),
                true,
            ),
            (
                &site,
                &CONTRIBUTOR,
                LINKERS_WRITE,
                linker("rg-app", "web"),
                true,
            ),
            ("/", &OWNER, LINKERS_DELETE, linker("rg-app", "web"), true),
            // Never upward or sideways.
            (
                &site,
                &CONTRIBUTOR,
                LINKERS_WRITE,
                linker("rg-app", "api"),
                false,
            ),
            (
                &app_rg,
                &CONTRIBUTOR,
                LINKERS_WRITE,
                linker("rg-other", "web"),
                false,
            ),
            (
                &web_linker,
                &OWNER,
                ROLE_ASSIGNMENTS_WRITE,
                site.clone(),
                false,
            ),
            (&app_rg, &OWNER, LINKERS_WRITE, SUB.to_string(), false),
            // Cross resource group and cross subscription targets.
            (&app_rg, &CONTRIBUTOR, pg_write, db(SUB, "rg-data"), false),
            (&data_rg, &CONTRIBUTOR, pg_write, db(SUB, "rg-data"), true),
            (&data_rg, &READER, pg_write, db(SUB, "rg-data"), false),
            (
                &data_rg,
                &SERVICE_LINKER_CONTRIBUTOR,
                pg_write,
                db(SUB, "rg-data"),
                false,
            ),
            (SUB, &OWNER, pg_write, db(SUB2, "rg-data"), false),
            (SUB2, &OWNER, pg_write, db(SUB2, "rg-data"), true),
            // Actions per role, including notActions.
            (SUB, &READER, LINKERS_READ, linker("rg-app", "web"), true),
            (SUB, &READER, LINKERS_WRITE, linker("rg-app", "web"), false),
            (
                SUB,
                &READER,
                LINKERS_LIST_CONFIGURATIONS,
                linker("rg-app", "web"),
                false,
            ),
            (
                SUB,
                &CONTRIBUTOR,
                ROLE_ASSIGNMENTS_WRITE,
                app_rg.clone(),
                false,
            ),
            (
                SUB,
                &CONTRIBUTOR,
                ROLE_ASSIGNMENTS_READ,
                app_rg.clone(),
                true,
            ),
            (
                SUB,
                &USER_ACCESS_ADMINISTRATOR,
                ROLE_ASSIGNMENTS_WRITE,
                app_rg.clone(),
                true,
            ),
            (
                SUB,
                &SERVICE_LINKER_CONTRIBUTOR,
                LINKERS_VALIDATE,
                linker("rg-app", "web"),
                true,
            ),
            (SUB, &OWNER, OPERATOR_AUDIT_LIST, "/".to_string(), false),
            (
                "/",
                &TETHER_OPERATOR,
                OPERATOR_AUDIT_LIST,
                "/".to_string(),
                true,
            ),
            (
                "/",
                &TETHER_OPERATOR,
                LINKERS_READ,
                linker("rg-app", "web"),
                false,
            ),
        ];
        for (scope, role, action, requested, expected) in cases {
            let assignments = vec![at(scope, role, ALICE)];
            let alice = PrincipalId::parse(ALICE).unwrap();
            let bob = PrincipalId::parse(BOB).unwrap();
            let requested = Scope::parse(&requested).unwrap();
            assert_eq!(
                allows(&assignments, &alice, action, &requested),
                expected,
                "{} at {scope}: {action} over {requested}",
                role.name
            );
            assert!(
                !allows(&assignments, &bob, action, &requested),
                "someone else's assignment never grants"
            );
        }
    }

    #[test]
    fn not_actions_subtract_within_their_role_only() {
        let alice = PrincipalId::parse(ALICE).unwrap();
        let scope = Scope::parse(SUB).unwrap();
        let contributor = vec![at(SUB, &CONTRIBUTOR, ALICE)];
        assert!(!allows(
            &contributor,
            &alice,
            ROLE_ASSIGNMENTS_WRITE,
            &scope
        ));
        let both = vec![
            at(SUB, &CONTRIBUTOR, ALICE),
            at(SUB, &USER_ACCESS_ADMINISTRATOR, ALICE),
        ];
        assert!(allows(&both, &alice, ROLE_ASSIGNMENTS_WRITE, &scope));
        assert!(!allows(&[], &alice, LINKERS_READ, &scope));
        let mut unknown = at(SUB, &OWNER, ALICE);
        unknown.role_definition = Uuid::nil();
        assert!(!allows(&[unknown], &alice, LINKERS_READ, &scope));
    }

    #[test]
    fn named_resources_need_write_on_themselves() {
        let id = |s: &str| ResourceId::parse(s).unwrap();
        assert_eq!(
            named_resource_action(&id(&db(SUB, "rg"))),
            "Microsoft.DBforPostgreSQL/flexibleServers/databases/write"
        );
        assert_eq!(
            named_resource_action(&id(&format!("{SUB}/resourceGroups/rg"))),
            "Microsoft.Resources/subscriptions/resourceGroups/write"
        );
        assert_eq!(
            named_resource_action(&id(SUB)),
            "Microsoft.Resources/subscriptions/write"
        );
    }
}
