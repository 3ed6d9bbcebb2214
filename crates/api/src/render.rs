//! Response bodies in ARM's shapes. Linker properties are rendered from the one superset model
//! and then stripped of what the requested api-version does not define.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use tether_model::ApiVersion;
use tether_model::ids::LINKER_TYPE;
use tether_model::linker::Linker;
use tether_model::operation::{Operation, OperationKind, OperationState};

/// A JSON response with ARM's exact content type.
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).expect("json values serialize");
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// A response without a body (202, 204).
pub fn empty_response(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A linker resource as the given api-version defines it.
pub fn linker(l: &Linker, version: ApiVersion) -> Value {
    let mut properties = serde_json::to_value(&l.properties).expect("linker properties serialize");
    version.strip_response(&mut properties);
    if let Value::Object(map) = &mut properties {
        map.insert(
            "provisioningState".into(),
            json!(l.provisioning_state.as_str()),
        );
    }
    let s = &l.system_data;
    json!({
        "id": l.at.resource_id(),
        "name": l.at.name.as_str(),
        "type": LINKER_TYPE,
        "systemData": {
            "createdBy": s.created_by,
            "createdByType": s.created_by_type,
            "createdAt": time(s.created_at),
            "lastModifiedBy": s.last_modified_by,
            "lastModifiedByType": s.last_modified_by_type,
            "lastModifiedAt": time(s.last_modified_at),
        },
        "properties": properties,
    })
}

/// The `ValidateResult` of a finished validation, with the report times of its operation.
fn validate_result(op: &Operation) -> Option<Value> {
    let mut result = op.result.clone()?;
    if let Value::Object(map) = &mut result {
        map.insert("reportStartTimeUtc".into(), json!(time(op.start_time)));
        if let Some(end) = op.end_time {
            map.insert("reportEndTimeUtc".into(), json!(time(end)));
        }
    }
    Some(result)
}

/// `ValidateOperationResult`: what a finished validation answers.
pub fn validate_operation_result(op: &Operation) -> Value {
    let mut body = json!({ "resourceId": op.resource_id, "status": op.status.as_str() });
    if let Some(result) = validate_result(op) {
        body["properties"] = result;
    }
    body
}

/// The operation status body (`Azure-AsyncOperation` target). A finished validation also
/// carries its result under `properties`: 2022-05-01 clients read the final
/// `ValidateOperationResult` from this body (`final-state-via: azure-async-operation`).
pub fn operation_status(op: &Operation, path: &str) -> Value {
    let mut body = Map::new();
    body.insert("id".into(), json!(path));
    body.insert("name".into(), json!(op.id.to_string()));
    body.insert("resourceId".into(), json!(op.resource_id));
    body.insert("status".into(), json!(op.status.as_str()));
    body.insert("startTime".into(), json!(time(op.start_time)));
    if let Some(end) = op.end_time {
        body.insert("endTime".into(), json!(time(end)));
    }
    match (&op.stuck, &op.error) {
        // Still InProgress (the vocabulary clients rely on), but say why it takes so long.
        (Some(undo), original) => {
            let details: Vec<Value> = original.iter().chain([undo]).map(|e| json!(e)).collect();
            body.insert(
                "error".into(),
                json!({
                    "code": "RollbackStuck",
                    "message": "The operation failed and undoing its changes keeps failing; the undo is retried automatically.",
                    "details": details,
                }),
            );
        }
        (None, Some(error)) => {
            body.insert("error".into(), json!(error));
        }
        (None, None) => {}
    }
    if op.kind == OperationKind::Validate && op.status == OperationState::Succeeded {
        if let Some(result) = validate_result(op) {
            body.insert("properties".into(), result);
        }
    }
    Value::Object(body)
}

/// The provider's operations catalogue (identical for every caller).
pub fn operations() -> Value {
    let entry = |name: &str, resource: &str, operation: &str, description: &str| {
        json!({
            "name": format!("Microsoft.ServiceLinker/{name}"),
            "isDataAction": false,
            "display": {
                "provider": "Microsoft.ServiceLinker",
                "resource": resource,
                "operation": operation,
                "description": description,
            },
            "origin": "user,system",
        })
    };
    json!({ "value": [
        entry("register/action", "Microsoft.ServiceLinker", "Register the provider", "Registers the subscription for Microsoft.ServiceLinker."),
        entry("operations/read", "Operations", "List operations", "Lists the operations of Microsoft.ServiceLinker."),
        entry("linkers/read", "Linker", "Read a linker", "Reads a linker (service connection)."),
        entry("linkers/write", "Linker", "Create or update a linker", "Creates or updates a linker (service connection)."),
        entry("linkers/delete", "Linker", "Delete a linker", "Deletes a linker and removes what it set up."),
        entry("linkers/validateLinker/action", "Linker", "Validate a linker", "Checks that a linker's connection works."),
        entry("linkers/listConfigurations/action", "Linker", "List a linker's configurations", "Lists the configuration a linker provides to its source."),
        entry("locations/operationStatuses/read", "Operation status", "Read an operation status", "Reads the status of a long-running operation."),
        entry("locations/operationStatuses/write", "Operation status", "Write an operation status", "Writes the status of a long-running operation."),
    ]})
}
