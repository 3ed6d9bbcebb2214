//! The role definitions Tether knows (ARM's built-in Owner, Contributor, Reader and User
//! Access Administrator with their real ids, plus two of its own), the actions it checks, and
//! ARM's action-pattern matching.
//!
//! A role grants an action when one of its `actions` patterns matches it and none of its
//! `not_actions` does. Patterns compare case-insensitively and `*` matches any run of
//! characters, `/` included (`*/read` matches `Microsoft.ServiceLinker/linkers/read`,
//! `Microsoft.Authorization/*/Write` matches `Microsoft.Authorization/roleAssignments/write`).

use uuid::Uuid;

/// The actions Tether checks. The linker actions are checked over the linker's id (its
/// source scope and everything above covers it); see `docs/security.md`.
pub mod actions {
    /// Read a linker (GET, list).
    pub const LINKERS_READ: &str = "Microsoft.ServiceLinker/linkers/read";
    /// Create or change a linker (PUT, PATCH).
    pub const LINKERS_WRITE: &str = "Microsoft.ServiceLinker/linkers/write";
    /// Delete a linker.
    pub const LINKERS_DELETE: &str = "Microsoft.ServiceLinker/linkers/delete";
    /// `POST .../listConfigurations`.
    pub const LINKERS_LIST_CONFIGURATIONS: &str =
        "Microsoft.ServiceLinker/linkers/listConfigurations/action";
    /// `POST .../validateLinker`.
    pub const LINKERS_VALIDATE: &str = "Microsoft.ServiceLinker/linkers/validateLinker/action";
    /// Poll an operation (checked over the linker the operation acts on).
    pub const OPERATION_STATUSES_READ: &str =
        "Microsoft.ServiceLinker/locations/operationStatuses/read";
    /// Read role assignments at a scope.
    pub const ROLE_ASSIGNMENTS_READ: &str = "Microsoft.Authorization/roleAssignments/read";
    /// Create role assignments at a scope.
    pub const ROLE_ASSIGNMENTS_WRITE: &str = "Microsoft.Authorization/roleAssignments/write";
    /// Delete role assignments at a scope.
    pub const ROLE_ASSIGNMENTS_DELETE: &str = "Microsoft.Authorization/roleAssignments/delete";
    /// Read role definitions.
    pub const ROLE_DEFINITIONS_READ: &str = "Microsoft.Authorization/roleDefinitions/read";
    /// `GET /admin/sagas` (checked at `/`).
    pub const OPERATOR_SAGAS_LIST: &str = "Tether.Operator/sagas/list/action";
    /// `POST /admin/sagas/{id}/retry` (checked at `/`).
    pub const OPERATOR_SAGAS_RETRY: &str = "Tether.Operator/sagas/retry/action";
    /// `GET /admin/audit` (checked at `/`).
    pub const OPERATOR_AUDIT_LIST: &str = "Tether.Operator/audit/list/action";
}

/// A role: a set of action patterns minus a set of excluded ones.
#[derive(Debug, PartialEq, Eq)]
pub struct RoleDefinition {
    /// Its GUID (the last segment of `.../roleDefinitions/{id}`).
    pub id: Uuid,
    /// `roleName`.
    pub name: &'static str,
    /// `description`.
    pub description: &'static str,
    /// Action patterns granted.
    pub actions: &'static [&'static str],
    /// Action patterns excluded from `actions`.
    pub not_actions: &'static [&'static str],
    /// ARM's `type`: `BuiltInRole` (Azure's) or `CustomRole` (Tether's own).
    pub role_type: &'static str,
}

impl RoleDefinition {
    /// Whether the role grants `action`.
    pub fn grants(&self, action: &str) -> bool {
        self.actions.iter().any(|p| pattern_matches(p, action))
            && !self.not_actions.iter().any(|p| pattern_matches(p, action))
    }
}

/// Full access, including assigning roles.
pub const OWNER: RoleDefinition = RoleDefinition {
    id: Uuid::from_u128(0x8e3af657_a8ff_443c_a75c_2fe8c4bcb635),
    name: "Owner",
    description: "Grants full access to manage all resources, including the ability to assign roles in Azure RBAC.",
    actions: &["*"],
    not_actions: &[],
    role_type: "BuiltInRole",
};

/// Full access, but no role assignments.
pub const CONTRIBUTOR: RoleDefinition = RoleDefinition {
    id: Uuid::from_u128(0xb24988ac_6180_42a0_ab88_20f7382dd24c),
    name: "Contributor",
    description: "Grants full access to manage all resources, but does not allow you to assign roles in Azure RBAC.",
    actions: &["*"],
    not_actions: &[
        "Microsoft.Authorization/*/Delete",
        "Microsoft.Authorization/*/Write",
        "Microsoft.Authorization/elevateAccess/Action",
    ],
    role_type: "BuiltInRole",
};

/// Read everything.
pub const READER: RoleDefinition = RoleDefinition {
    id: Uuid::from_u128(0xacdd72a7_3385_48ef_bd42_f606fba81ae7),
    name: "Reader",
    description: "View all resources, but does not allow you to make any changes.",
    actions: &["*/read"],
    not_actions: &[],
    role_type: "BuiltInRole",
};

/// Read everything and manage role assignments.
pub const USER_ACCESS_ADMINISTRATOR: RoleDefinition = RoleDefinition {
    id: Uuid::from_u128(0x18d7d88d_d35e_4fb5_a5c3_7773c20a72d9),
    name: "User Access Administrator",
    description: "Lets you manage user access to Azure resources.",
    actions: &["*/read", "Microsoft.Authorization/*"],
    not_actions: &[],
    role_type: "BuiltInRole",
};

/// Manage service connections on sources, read everything; no rights on targets beyond
/// reading (connecting to a target also needs a write role there).
pub const SERVICE_LINKER_CONTRIBUTOR: RoleDefinition = RoleDefinition {
    id: Uuid::from_u128(0x02357fd4_926d_45df_a1c5_9d42eb88257b),
    name: "ServiceLinker Contributor",
    description: "Lets you manage service connections (Microsoft.ServiceLinker) and read all resources. Connecting to a target also needs a role that can write the target.",
    actions: &["Microsoft.ServiceLinker/*", "*/read"],
    not_actions: &[],
    role_type: "CustomRole",
};

/// Operate Tether itself: the `/admin` endpoints (assign it at `/`).
pub const TETHER_OPERATOR: RoleDefinition = RoleDefinition {
    id: Uuid::from_u128(0x476413f8_95e5_42b0_9625_6506af082e5e),
    name: "Tether Operator",
    description: "Lets you use Tether's operator endpoints (/admin): sagas, retries and the audit trail. Assign it at the root scope '/'.",
    actions: &["Tether.Operator/*"],
    not_actions: &[],
    role_type: "CustomRole",
};

/// Every role Tether knows.
pub const ROLES: [&RoleDefinition; 6] = [
    &OWNER,
    &CONTRIBUTOR,
    &READER,
    &USER_ACCESS_ADMINISTRATOR,
    &SERVICE_LINKER_CONTRIBUTOR,
    &TETHER_OPERATOR,
];

/// The role with this id.
pub fn role(id: Uuid) -> Option<&'static RoleDefinition> {
    ROLES.into_iter().find(|r| r.id == id)
}

/// The role with this name (case-insensitive).
pub fn role_named(name: &str) -> Option<&'static RoleDefinition> {
    ROLES
        .into_iter()
        .find(|r| r.name.eq_ignore_ascii_case(name))
}

/// ARM's action matching: case-insensitive, `*` matches any run of characters (including
/// none and including `/`).
pub fn pattern_matches(pattern: &str, action: &str) -> bool {
    let (p, a) = (pattern.as_bytes(), action.as_bytes());
    // Classic wildcard matching with backtracking to the last star: O(len(p) * len(a)).
    let (mut pi, mut ai) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ai < a.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ai));
            pi += 1;
        } else if pi < p.len() && p[pi].eq_ignore_ascii_case(&a[ai]) {
            pi += 1;
            ai += 1;
        } else if let Some((sp, sa)) = star {
            pi = sp + 1;
            ai = sa + 1;
            star = Some((sp, sa + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::actions::*;
    use super::*;

    #[test]
    fn patterns_match_like_arm() {
        for (pattern, action, expected) in [
            ("*", "Microsoft.ServiceLinker/linkers/write", true),
            ("*/read", "Microsoft.ServiceLinker/linkers/read", true),
            ("*/read", "Microsoft.ServiceLinker/linkers/write", false),
            (
                "*/read",
                "Microsoft.ServiceLinker/linkers/listConfigurations/action",
                false,
            ),
            (
                "Microsoft.ServiceLinker/*",
                "microsoft.servicelinker/linkers/delete",
                true,
            ),
            (
                "Microsoft.ServiceLinker/*",
                "Microsoft.ServiceLinkerX/linkers/delete",
                false,
            ),
            (
                "Microsoft.Authorization/*/Write",
                "Microsoft.Authorization/roleAssignments/write",
                true,
            ),
            (
                "Microsoft.Authorization/*/Write",
                "Microsoft.Authorization/roleAssignments/read",
                false,
            ),
            (
                "Microsoft.Authorization/*/Delete",
                "Microsoft.Authorization/roleAssignments/delete",
                true,
            ),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("", "", true),
            ("", "a", false),
            ("**", "", true),
        ] {
            assert_eq!(
                pattern_matches(pattern, action),
                expected,
                "{pattern} ~ {action}"
            );
        }
    }

    #[test]
    fn roles_grant_what_their_definitions_say() {
        let table: [(&RoleDefinition, &str, bool); 22] = [
            (&OWNER, LINKERS_WRITE, true),
            (&OWNER, ROLE_ASSIGNMENTS_WRITE, true),
            (&OWNER, OPERATOR_AUDIT_LIST, true),
            (&CONTRIBUTOR, LINKERS_WRITE, true),
            (&CONTRIBUTOR, LINKERS_DELETE, true),
            (&CONTRIBUTOR, ROLE_ASSIGNMENTS_WRITE, false),
            (&CONTRIBUTOR, ROLE_ASSIGNMENTS_DELETE, false),
            (&CONTRIBUTOR, ROLE_ASSIGNMENTS_READ, true),
            (
                &CONTRIBUTOR,
                "Microsoft.DBforPostgreSQL/flexibleServers/databases/write",
                true,
            ),
            (&READER, LINKERS_READ, true),
            (&READER, LINKERS_WRITE, false),
            (&READER, LINKERS_LIST_CONFIGURATIONS, false),
            (&READER, OPERATOR_AUDIT_LIST, false),
            (
                &READER,
                "Microsoft.DBforPostgreSQL/flexibleServers/databases/write",
                false,
            ),
            (&USER_ACCESS_ADMINISTRATOR, ROLE_ASSIGNMENTS_WRITE, true),
            (&USER_ACCESS_ADMINISTRATOR, LINKERS_WRITE, false),
            (&SERVICE_LINKER_CONTRIBUTOR, LINKERS_WRITE, true),
            (&SERVICE_LINKER_CONTRIBUTOR, LINKERS_VALIDATE, true),
            (
                &SERVICE_LINKER_CONTRIBUTOR,
                "Microsoft.DBforPostgreSQL/flexibleServers/databases/write",
                false,
            ),
            (&SERVICE_LINKER_CONTRIBUTOR, ROLE_ASSIGNMENTS_WRITE, false),
            (&TETHER_OPERATOR, OPERATOR_SAGAS_RETRY, true),
            (&TETHER_OPERATOR, LINKERS_READ, false),
        ];
        for (role, action, expected) in table {
            assert_eq!(role.grants(action), expected, "{} {action}", role.name);
        }
    }

    #[test]
    fn roles_are_found_by_id_and_name() {
        assert_eq!(role(READER.id), Some(&READER));
        assert_eq!(role_named("owner"), Some(&OWNER));
        assert!(role(Uuid::nil()).is_none());
        let mut ids: Vec<Uuid> = ROLES.iter().map(|r| r.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), ROLES.len());
    }
}
