//! Strict response checks against the published Swagger (OpenAPI 2.0) documents of
//! `Microsoft.ServiceLinker`, in the spirit of Azure's response validators (`oav`).
//!
//! End-to-end tests feed every response of our server through [`OpenApi::check`] for the
//! api-version that was requested. The checker owns route matching (path template to
//! `operationId`), status-code lookup and a small schema validator for the subset of
//! Swagger 2.0 plus `x-ms-*` extensions that the ServiceLinker documents use:
//!
//! * `type`, `enum` (exact match, even for extensible enums, except values a test declares
//!   with [`OpenApi::allow_extension`]), `required`, `format`
//!   (`date-time`, `date`, `uri`, `int32`, `int64`), `minLength`/`maxLength`,
//!   `minimum`/`maximum` (with the boolean `exclusive*` flags), `minItems`/`maxItems`;
//! * `$ref` (local and into the shared ARM `common-types`), `allOf` merging where a
//!   derived schema's own property declaration overrides an inherited one of the same name;
//! * `discriminator` polymorphism: the concrete model is the descendant (through `allOf`)
//!   whose `x-ms-discriminator-value`, or else whose definition name, equals the value;
//! * unknown properties are violations unless `additionalProperties` is declared; a schema
//!   that declares no properties at all (e.g. `ErrorAdditionalInfo.info`) is free-form;
//! * `null` is valid only where `x-nullable: true`;
//! * `x-ms-secret: true` properties are write-only: returned → violation; they are exempt
//!   from `required`.
//!
//! `pattern` is not checked (the only occurrence, ARM `kind`, is unused by this API, and a
//! regex engine is not worth a dependency here). `readOnly` never matters for responses.
//!
//! This module must not depend on the server: it reads only the JSON documents.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::{Map, Value};

/// The api-versions whose documents ship in `crates/api/openapi`.
pub const API_VERSIONS: [&str; 3] = ["2022-05-01", "2024-04-01", "2024-07-01-preview"];

/// How the documents spell references into the shared ARM types (the upstream repo layout).
const UPSTREAM_COMMON_PREFIX: &str = "../../../../../../common-types/";

/// Bound on value nesting and on `$ref`-only chains; real bodies are far shallower.
const MAX_DEPTH: usize = 128;

/// Folder holding `<api-version>/servicelinker.json` and `common-types/`.
fn openapi_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../api/openapi"))
}

/// One parsed Swagger document of one api-version, with every `$ref` resolvable.
///
/// Cheap to query and immutable after [`OpenApi::load`]; share it freely between threads.
pub struct OpenApi {
    api_version: String,
    /// `docs[0]` is the version's `servicelinker.json`; the rest are the files it references.
    docs: Vec<Doc>,
    routes: Vec<Route>,
    /// operationId → (path template, lowercase method) in `docs[0]`.
    operations: HashMap<String, (String, String)>,
    /// Definition → definitions that name it in their `allOf` (direct subtypes).
    children: HashMap<DefKey, Vec<DefKey>>,
    /// Values a server deliberately adds to extensible enums: (lower-cased `x-ms-enum`
    /// name, value).
    extensions: Vec<(String, String)>,
}

impl fmt::Debug for OpenApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenApi")
            .field("api_version", &self.api_version)
            .field(
                "documents",
                &self.docs.iter().map(|d| d.rel.as_str()).collect::<Vec<_>>(),
            )
            .field("operations", &self.operations.len())
            .finish()
    }
}

struct Doc {
    /// Path relative to the openapi folder, `/`-separated.
    rel: String,
    json: Value,
    /// File part of each `$ref` written in this document → index in `OpenApi::docs`.
    files: HashMap<String, usize>,
}

/// A named definition: (document index, definition name).
type DefKey = (usize, String);

/// A schema object together with the document its local `$ref`s resolve against.
#[derive(Clone, Copy)]
struct Node<'a> {
    doc: usize,
    schema: &'a Value,
}

struct Route {
    method: String,
    segments: Vec<Seg>,
    literals: usize,
    operation_id: String,
}

enum Seg {
    Literal(String),
    /// `{name}`: exactly one non-empty segment.
    Param,
    /// `{name}` marked `x-ms-skip-url-encoding` (`resourceUri`): one or more segments.
    Rest,
}

/// The keywords of a schema after following `$ref`s and merging `allOf`.
#[derive(Default)]
struct Merged<'a> {
    name: Option<&'a str>,
    ty: Option<&'a str>,
    properties: Vec<(&'a str, Node<'a>)>,
    required: Vec<&'a str>,
    additional: Option<Node<'a>>,
    discriminator: Option<&'a str>,
    items: Option<Node<'a>>,
    enumeration: Option<&'a [Value]>,
    /// `x-ms-enum.name` of an extensible (`modelAsString: true`) enum.
    extensible_enum: Option<&'a str>,
    format: Option<&'a str>,
    min_length: Option<u64>,
    max_length: Option<u64>,
    minimum: Option<(f64, bool)>,
    maximum: Option<(f64, bool)>,
    min_items: Option<u64>,
    max_items: Option<u64>,
}

impl OpenApi {
    /// Loads the document of one api-version ("2022-05-01", "2024-04-01", "2024-07-01-preview").
    ///
    /// Also loads the ARM common-types files it references and fails if any `$ref` does
    /// not resolve, so a broken copy of the spec is reported here rather than as odd
    /// violations later.
    pub fn load(api_version: &str) -> anyhow::Result<Self> {
        if !API_VERSIONS.contains(&api_version) {
            bail!(
                "unknown api-version {api_version:?} (known: {})",
                API_VERSIONS.join(", ")
            );
        }
        let dir = openapi_dir();
        Self::build(
            api_version,
            &format!("{api_version}/servicelinker.json"),
            |rel| read_json(&dir.join(rel)),
        )
    }

    /// The api-version this document describes.
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// Parses `main_rel` and every file it references (through `read`), then indexes
    /// routes, operations and subtypes.
    fn build(
        api_version: &str,
        main_rel: &str,
        mut read: impl FnMut(&str) -> anyhow::Result<Value>,
    ) -> anyhow::Result<Self> {
        let mut docs: Vec<Doc> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::from([(main_rel.to_owned(), 0)]);
        let mut rels = vec![main_rel.to_owned()];
        while let Some(rel) = rels.get(docs.len()).cloned() {
            let json = read(&rel)?;
            let mut refs = Vec::new();
            collect_refs(&json, &mut refs);
            let mut files = HashMap::new();
            for r in refs {
                let file = r.split_once('#').map_or(r, |(file, _)| file);
                if file.is_empty() || files.contains_key(file) {
                    continue;
                }
                let target = join_rel(&rel, file)?;
                let idx = *index.entry(target.clone()).or_insert_with(|| {
                    rels.push(target);
                    rels.len() - 1
                });
                files.insert(file.to_owned(), idx);
            }
            docs.push(Doc { rel, json, files });
        }
        let mut api = Self {
            api_version: api_version.to_owned(),
            docs,
            routes: Vec::new(),
            operations: HashMap::new(),
            children: HashMap::new(),
            extensions: Vec::new(),
        };
        api.verify_refs()?;
        api.index_subtypes();
        api.index_routes()?;
        Ok(api)
    }

    fn verify_refs(&self) -> anyhow::Result<()> {
        for (i, doc) in self.docs.iter().enumerate() {
            let mut refs = Vec::new();
            collect_refs(&doc.json, &mut refs);
            for r in refs {
                if self.resolve(i, r).is_none() {
                    bail!("unresolvable $ref {r:?} in {}", doc.rel);
                }
            }
        }
        Ok(())
    }

    fn index_subtypes(&mut self) {
        let mut children: HashMap<DefKey, Vec<DefKey>> = HashMap::new();
        for (i, doc) in self.docs.iter().enumerate() {
            let Some(defs) = doc.json.get("definitions").and_then(Value::as_object) else {
                continue;
            };
            for (name, def) in defs {
                let bases = def.get("allOf").and_then(Value::as_array);
                for base in bases.into_iter().flatten() {
                    let Some(r) = base.get("$ref").and_then(Value::as_str) else {
                        continue;
                    };
                    if let Some((_, Some(parent))) = self.resolve(i, r) {
                        children.entry(parent).or_default().push((i, name.clone()));
                    }
                }
            }
        }
        self.children = children;
    }

    fn index_routes(&mut self) -> anyhow::Result<()> {
        let paths = self.docs[0]
            .json
            .get("paths")
            .and_then(Value::as_object)
            .context("document has no paths")?;
        let mut routes = Vec::new();
        let mut operations = HashMap::new();
        for (template, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            for (method, op) in item {
                if method == "parameters" || method.starts_with("x-") {
                    continue;
                }
                let operation_id = op
                    .get("operationId")
                    .and_then(Value::as_str)
                    .with_context(|| format!("{method} {template} has no operationId"))?;
                let multi = self.multi_segment_params(item.get("parameters"), op.get("parameters"));
                let segments: Vec<Seg> = template
                    .trim_start_matches('/')
                    .split('/')
                    .map(
                        |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                            Some(name) if multi.contains(&name) => Seg::Rest,
                            Some(_) => Seg::Param,
                            None => Seg::Literal(s.to_owned()),
                        },
                    )
                    .collect();
                let literals = segments
                    .iter()
                    .filter(|s| matches!(s, Seg::Literal(_)))
                    .count();
                routes.push(Route {
                    method: method.to_ascii_lowercase(),
                    segments,
                    literals,
                    operation_id: operation_id.to_owned(),
                });
                operations.insert(operation_id.to_owned(), (template.clone(), method.clone()));
            }
        }
        self.routes = routes;
        self.operations = operations;
        Ok(())
    }

    /// Names of path parameters marked `x-ms-skip-url-encoding` (they may contain `/`).
    fn multi_segment_params<'a>(
        &'a self,
        item_params: Option<&'a Value>,
        op_params: Option<&'a Value>,
    ) -> Vec<&'a str> {
        let mut names = Vec::new();
        let all = [item_params, op_params];
        for p in all
            .into_iter()
            .flatten()
            .filter_map(Value::as_array)
            .flatten()
        {
            let p = match p.get("$ref").and_then(Value::as_str) {
                Some(r) => match self.resolve(0, r) {
                    Some((node, _)) => node.schema,
                    None => continue,
                },
                None => p,
            };
            let in_path = p.get("in").and_then(Value::as_str) == Some("path");
            let skip = p.get("x-ms-skip-url-encoding").and_then(Value::as_bool) == Some(true);
            if let (true, true, Some(name)) = (in_path, skip, p.get("name").and_then(Value::as_str))
            {
                names.push(name);
            }
        }
        names
    }

    /// The operationId whose path template and method match a concrete request path
    /// (e.g. "/subscriptions/x/resourceGroups/y/providers/Microsoft.Web/sites/z/providers/Microsoft.ServiceLinker/linkers/l").
    /// `{resourceUri}` is x-ms-skip-url-encoding and spans several segments; match literal segments case-insensitively.
    ///
    /// A query string is ignored, as is one trailing `/`. When several templates match, the
    /// one with the most literal segments wins, and `{resourceUri}` takes as many segments
    /// as it can (ARM splits on the last `/providers/Microsoft.ServiceLinker/`).
    pub fn operation_for(&self, method: &str, path: &str) -> Option<String> {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        let path = path.strip_prefix('/').unwrap_or(path);
        let path = path.strip_suffix('/').unwrap_or(path);
        let segs: Vec<&str> = path.split('/').collect();
        self.routes
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && match_segments(&r.segments, &segs))
            .max_by_key(|r| r.literals)
            .map(|r| r.operation_id.clone())
    }

    /// Checks one response: the status must be declared for the operation (a non-2xx status may fall
    /// back to `default`), and the body must validate against that response's schema (a declared
    /// response without schema must have no body). Returns every violation with a JSON path.
    ///
    /// `body` is `None` for an empty body; `Some(Value::Null)` is a JSON `null` body.
    pub fn check_response(
        &self,
        operation_id: &str,
        status: u16,
        body: Option<&Value>,
    ) -> Result<(), Vec<String>> {
        let Some(responses) = self
            .operation(operation_id)
            .and_then(|op| op.get("responses"))
            .and_then(Value::as_object)
        else {
            return Err(vec![format!(
                "unknown operation {operation_id:?} in api-version {}",
                self.api_version
            )]);
        };
        let code = status.to_string();
        let declared = || responses.keys().cloned().collect::<Vec<_>>().join(", ");
        let response = match responses.get(&code) {
            Some(r) => r,
            None if !(200..300).contains(&status) && responses.contains_key("default") => {
                &responses["default"]
            }
            None => {
                return Err(vec![format!(
                    "status {status} is not declared for {operation_id} (declared: {})",
                    declared()
                )]);
            }
        };
        // A response may itself be a `$ref` into `#/responses`.
        let response = match response.get("$ref").and_then(Value::as_str) {
            Some(r) => match self.resolve(0, r) {
                Some((node, _)) => node.schema,
                None => return Err(vec![format!("unresolvable response $ref {r:?}")]),
            },
            None => response,
        };
        match (response.get("schema"), body) {
            (None, None) => Ok(()),
            (None, Some(_)) => Err(vec![format!(
                "$: response {status} of {operation_id} declares no body, but one was returned"
            )]),
            (Some(_), None) => Err(vec![format!(
                "$: response {status} of {operation_id} declares a body, but none was returned"
            )]),
            (Some(schema), Some(body)) => {
                let mut errs = Vec::new();
                self.check_slot(Node { doc: 0, schema }, body, "$", &mut errs, 0);
                finish(errs)
            }
        }
    }

    /// Convenience: operation_for + check_response; an unknown route is a violation.
    pub fn check(
        &self,
        method: &str,
        path: &str,
        status: u16,
        body: Option<&Value>,
    ) -> Result<(), Vec<String>> {
        match self.operation_for(method, path) {
            Some(op) => self.check_response(&op, status, body),
            None => Err(vec![format!(
                "no operation of api-version {} matches {} {path}",
                self.api_version,
                method.to_ascii_uppercase()
            )]),
        }
    }

    /// Accepts `value` in the extensible enum named `enum_name` (its `x-ms-enum` name,
    /// compared case-insensitively). A server may add values to an enum the document marks
    /// `modelAsString: true` (clients must tolerate them); declaring each one here keeps every
    /// other value, and every closed enum, strictly checked.
    pub fn allow_extension(mut self, enum_name: &str, value: &str) -> Self {
        self.extensions
            .push((enum_name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    fn is_declared_extension(&self, m: &Merged<'_>, value: &Value) -> bool {
        let (Some(name), Some(value)) = (m.extensible_enum, value.as_str()) else {
            return false;
        };
        self.extensions
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case(name) && v == value)
    }

    /// Validates a value against a named definition of the document (or of the common types it
    /// references, e.g. "OperationStatusResult", "ErrorResponse").
    ///
    /// The version's own definitions shadow common ones of the same name.
    pub fn check_definition(&self, name: &str, value: &Value) -> Result<(), Vec<String>> {
        let Some(doc) = (0..self.docs.len()).find(|&i| self.definition(i, name).is_some()) else {
            return Err(vec![format!(
                "unknown definition {name:?} in api-version {}",
                self.api_version
            )]);
        };
        // Validate through a `$ref` so that polymorphic dispatch sees the definition's name.
        let reference = Value::Object(Map::from_iter([(
            "$ref".to_owned(),
            Value::String(format!("#/definitions/{}", escape_pointer(name))),
        )]));
        let mut errs = Vec::new();
        self.check_slot(
            Node {
                doc,
                schema: &reference,
            },
            value,
            "$",
            &mut errs,
            0,
        );
        finish(errs)
    }

    fn operation(&self, operation_id: &str) -> Option<&Value> {
        let (template, method) = self.operations.get(operation_id)?;
        self.docs[0].json.get("paths")?.get(template)?.get(method)
    }

    fn definition(&self, doc: usize, name: &str) -> Option<&Value> {
        self.docs.get(doc)?.json.get("definitions")?.get(name)
    }

    /// Resolves a `$ref` written in document `doc`; also names the definition it points at.
    fn resolve(&self, doc: usize, r: &str) -> Option<(Node<'_>, Option<DefKey>)> {
        let (file, fragment) = r.split_once('#').unwrap_or((r, ""));
        let doc = if file.is_empty() {
            doc
        } else {
            *self.docs.get(doc)?.files.get(file)?
        };
        let schema = self.docs.get(doc)?.json.pointer(fragment)?;
        let def = fragment
            .strip_prefix("/definitions/")
            .filter(|name| !name.contains('/'))
            .map(|name| (doc, name.replace("~1", "/").replace("~0", "~")));
        Some((Node { doc, schema }, def))
    }

    /// The definition a schema names through its `$ref` chain, if any.
    fn def_of<'a>(&'a self, mut node: Node<'a>) -> Option<DefKey> {
        let mut def = None;
        for _ in 0..MAX_DEPTH {
            let Some(r) = node.schema.get("$ref").and_then(Value::as_str) else {
                break;
            };
            let (target, key) = self.resolve(node.doc, r)?;
            def = key.or(def);
            node = target;
        }
        def
    }

    /// Reads a boolean extension (`x-nullable`, `x-ms-secret`) on a schema or, when the
    /// schema does not set it, on what its `$ref` points at.
    fn flag<'a>(&'a self, mut node: Node<'a>, key: &str) -> bool {
        for _ in 0..MAX_DEPTH {
            if let Some(b) = node.schema.get(key).and_then(Value::as_bool) {
                return b;
            }
            match node.schema.get("$ref").and_then(Value::as_str) {
                Some(r) => match self.resolve(node.doc, r) {
                    Some((target, _)) => node = target,
                    None => return false,
                },
                None => return false,
            }
        }
        false
    }

    /// Follows `$ref`s and merges `allOf` into `out`. Keywords already set win, so a
    /// derived schema's own declarations override inherited ones. `seen` breaks cycles.
    fn merge<'a>(&'a self, node: Node<'a>, out: &mut Merged<'a>, seen: &mut Vec<*const Value>) {
        let ptr: *const Value = node.schema;
        if seen.contains(&ptr) || seen.len() > MAX_DEPTH {
            return;
        }
        seen.push(ptr);
        let Some(obj) = node.schema.as_object() else {
            return;
        };
        if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
            // Unresolvable references were rejected at load time.
            if let Some((target, _)) = self.resolve(node.doc, r) {
                if out.name.is_none() {
                    out.name = r.rsplit('/').next();
                }
                self.merge(target, out, seen);
            }
            return;
        }
        let str_of = |k: &str| obj.get(k).and_then(Value::as_str);
        let u64_of = |k: &str| obj.get(k).and_then(Value::as_u64);
        let bound = |k: &str, ex: &str| {
            let exclusive = obj.get(ex).and_then(Value::as_bool).unwrap_or(false);
            obj.get(k).and_then(Value::as_f64).map(|v| (v, exclusive))
        };
        let sub = |k: &str| {
            obj.get(k).map(|schema| Node {
                doc: node.doc,
                schema,
            })
        };
        out.ty = out.ty.or(str_of("type"));
        out.discriminator = out.discriminator.or(str_of("discriminator"));
        out.format = out.format.or(str_of("format"));
        out.items = out.items.or(sub("items"));
        out.additional = out.additional.or(sub("additionalProperties"));
        out.enumeration = out
            .enumeration
            .or(obj.get("enum").and_then(Value::as_array).map(Vec::as_slice));
        let x_ms_enum = obj.get("x-ms-enum");
        if x_ms_enum.and_then(|e| e.get("modelAsString")) == Some(&Value::Bool(true)) {
            out.extensible_enum = out.extensible_enum.or(x_ms_enum
                .and_then(|e| e.get("name"))
                .and_then(Value::as_str));
        }
        out.min_length = out.min_length.or(u64_of("minLength"));
        out.max_length = out.max_length.or(u64_of("maxLength"));
        out.min_items = out.min_items.or(u64_of("minItems"));
        out.max_items = out.max_items.or(u64_of("maxItems"));
        out.minimum = out.minimum.or(bound("minimum", "exclusiveMinimum"));
        out.maximum = out.maximum.or(bound("maximum", "exclusiveMaximum"));
        if let Some(props) = obj.get("properties").and_then(Value::as_object) {
            for (name, schema) in props {
                if !out.properties.iter().any(|(n, _)| *n == name) {
                    let schema = Node {
                        doc: node.doc,
                        schema,
                    };
                    out.properties.push((name, schema));
                }
            }
        }
        let required = obj.get("required").and_then(Value::as_array);
        for name in required.into_iter().flatten().filter_map(Value::as_str) {
            if !out.required.contains(&name) {
                out.required.push(name);
            }
        }
        for base in obj
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.merge(
                Node {
                    doc: node.doc,
                    schema: base,
                },
                out,
                seen,
            );
        }
    }

    fn merged<'a>(&'a self, node: Node<'a>) -> Merged<'a> {
        let mut out = Merged::default();
        self.merge(node, &mut out, &mut Vec::new());
        out
    }

    /// The discriminator value that selects a definition.
    fn discriminator_value<'a>(&'a self, def: &'a DefKey) -> &'a str {
        self.definition(def.0, &def.1)
            .and_then(|d| d.get("x-ms-discriminator-value"))
            .and_then(Value::as_str)
            .unwrap_or(&def.1)
    }

    /// The definition among `base` and its descendants selected by `value`, or the list
    /// of values that would have been accepted.
    fn subtype(&self, base: &DefKey, value: &str) -> Result<DefKey, Vec<String>> {
        let mut family = vec![base.clone()];
        let mut i = 0;
        while let Some(def) = family.get(i).cloned() {
            for child in self.children.get(&def).into_iter().flatten() {
                if !family.contains(child) {
                    family.push(child.clone());
                }
            }
            i += 1;
        }
        if let Some(hit) = family
            .iter()
            .find(|def| self.discriminator_value(def) == value)
        {
            return Ok(hit.clone());
        }
        Err(family
            .iter()
            .map(|def| self.discriminator_value(def).to_owned())
            .collect())
    }

    fn is_secret(&self, node: Node<'_>) -> bool {
        self.flag(node, "x-ms-secret")
    }

    /// Validates a value in a slot (property, item, body) whose schema is `node`.
    fn check_slot(
        &self,
        node: Node<'_>,
        value: &Value,
        path: &str,
        errs: &mut Vec<String>,
        depth: usize,
    ) {
        if value.is_null() {
            if !self.flag(node, "x-nullable") {
                errs.push(format!("{path}: null is not allowed (not x-nullable)"));
            }
            return;
        }
        if depth > MAX_DEPTH {
            errs.push(format!("{path}: nested deeper than {MAX_DEPTH} levels"));
            return;
        }
        let mut merged = self.merged(node);
        if let (Some(disc), Some(base), Some(obj)) =
            (merged.discriminator, self.def_of(node), value.as_object())
        {
            match obj.get(disc) {
                None => {
                    errs.push(format!(
                        "{path}: missing required discriminator property {disc:?}"
                    ));
                    return;
                }
                Some(Value::String(v)) => match self.subtype(&base, v) {
                    Ok(def) if def == base => {}
                    Ok(def) => {
                        let schema = &self.docs[def.0].json["definitions"][&def.1];
                        merged = self.merged(Node { doc: def.0, schema });
                        merged.name = self.docs[def.0].json["definitions"]
                            .as_object()
                            .and_then(|d| d.get_key_value(&def.1))
                            .map(|(k, _)| k.as_str());
                    }
                    Err(known) => {
                        errs.push(format!(
                            "{}: unknown discriminator value {v:?} of {} (known: {})",
                            child_path(path, disc),
                            base.1,
                            known.join(", ")
                        ));
                        return;
                    }
                },
                Some(other) => {
                    errs.push(format!(
                        "{}: discriminator must be a string, found {}",
                        child_path(path, disc),
                        kind(other)
                    ));
                    return;
                }
            }
        }
        self.check_merged(&merged, value, path, errs, depth);
    }

    fn check_merged(
        &self,
        m: &Merged<'_>,
        value: &Value,
        path: &str,
        errs: &mut Vec<String>,
        depth: usize,
    ) {
        let implied_object =
            !m.properties.is_empty() || m.discriminator.is_some() || m.additional.is_some();
        let ty = m.ty.or(implied_object.then_some("object"));
        if let Some(ty) = ty {
            if !type_matches(ty, value) {
                errs.push(format!("{path}: expected {ty}, found {}", kind(value)));
                return;
            }
        }
        if let Some(allowed) = m.enumeration {
            if !allowed.contains(value) && !self.is_declared_extension(m, value) {
                let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
                errs.push(format!(
                    "{path}: {value} is not an allowed value{} (allowed: {})",
                    m.name.map(|n| format!(" of {n}")).unwrap_or_default(),
                    list.join(", ")
                ));
            }
        }
        match value {
            Value::String(s) => check_string(m, s, path, errs),
            Value::Number(n) => check_number(m, n, path, errs),
            Value::Array(items) => {
                let count = items.len() as u64;
                if m.min_items.is_some_and(|min| count < min)
                    || m.max_items.is_some_and(|max| count > max)
                {
                    errs.push(format!(
                        "{path}: {count} items is outside the allowed range"
                    ));
                }
                if let Some(item) = m.items {
                    for (i, v) in items.iter().enumerate() {
                        self.check_slot(item, v, &format!("{path}[{i}]"), errs, depth + 1);
                    }
                }
            }
            Value::Object(obj) => self.check_object(m, obj, path, errs, depth),
            Value::Null | Value::Bool(_) => {}
        }
    }

    fn check_object(
        &self,
        m: &Merged<'_>,
        obj: &Map<String, Value>,
        path: &str,
        errs: &mut Vec<String>,
        depth: usize,
    ) {
        let free_form =
            m.properties.is_empty() && m.additional.is_none() && m.discriminator.is_none();
        for (key, v) in obj {
            let child = child_path(path, key);
            if let Some((_, prop)) = m.properties.iter().find(|(n, _)| *n == key) {
                if self.is_secret(*prop) {
                    errs.push(format!(
                        "{child}: secret property returned (x-ms-secret is write-only)"
                    ));
                } else {
                    self.check_slot(*prop, v, &child, errs, depth + 1);
                }
            } else if let Some(extra) = m.additional {
                match extra.schema {
                    Value::Bool(true) => {}
                    Value::Bool(false) => errs.push(format!(
                        "{child}: unknown property (additionalProperties is false)"
                    )),
                    _ => self.check_slot(extra, v, &child, errs, depth + 1),
                }
            } else if !free_form {
                errs.push(format!(
                    "{child}: unknown property (not defined by {})",
                    m.name.unwrap_or("the schema")
                ));
            }
        }
        for name in &m.required {
            if obj.contains_key(*name) {
                continue;
            }
            let secret = m
                .properties
                .iter()
                .find(|(n, _)| n == name)
                .is_some_and(|(_, p)| self.is_secret(*p));
            if !secret {
                errs.push(format!("{path}: missing required property {name:?}"));
            }
        }
    }
}

fn check_string(m: &Merged<'_>, s: &str, path: &str, errs: &mut Vec<String>) {
    let len = s.chars().count() as u64;
    if m.min_length.is_some_and(|min| len < min) || m.max_length.is_some_and(|max| len > max) {
        errs.push(format!("{path}: length {len} is outside the allowed range"));
    }
    let ok = match m.format {
        Some("date-time") => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        Some("date") => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        Some("uri") => is_absolute_uri(s),
        _ => true,
    };
    if !ok {
        let format = m.format.unwrap_or_default();
        errs.push(format!("{path}: {s:?} is not a valid {format}"));
    }
}

fn check_number(m: &Merged<'_>, n: &serde_json::Number, path: &str, errs: &mut Vec<String>) {
    let in_range = match m.format {
        Some("int32") => n.as_i64().is_some_and(|v| i32::try_from(v).is_ok()),
        Some("int64") => n.as_i64().is_some(),
        _ => true,
    };
    if !in_range {
        errs.push(format!(
            "{path}: {n} does not fit {}",
            m.format.unwrap_or_default()
        ));
    }
    let Some(v) = n.as_f64() else {
        return;
    };
    let below = m
        .minimum
        .is_some_and(|(min, ex)| if ex { v <= min } else { v < min });
    let above = m
        .maximum
        .is_some_and(|(max, ex)| if ex { v >= max } else { v > max });
    if below || above {
        errs.push(format!("{path}: {n} is outside the allowed range"));
    }
}

/// Matches template segments against path segments; `Rest` is greedy (longest first).
fn match_segments(template: &[Seg], path: &[&str]) -> bool {
    match template.split_first() {
        None => path.is_empty(),
        Some((Seg::Literal(lit), rest)) => path
            .split_first()
            .is_some_and(|(s, p)| s.eq_ignore_ascii_case(lit) && match_segments(rest, p)),
        Some((Seg::Param, rest)) => path
            .split_first()
            .is_some_and(|(s, p)| !s.is_empty() && match_segments(rest, p)),
        Some((Seg::Rest, rest)) => (1..=path.len())
            .rev()
            .any(|n| path[..n].iter().all(|s| !s.is_empty()) && match_segments(rest, &path[n..])),
    }
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        _ => true,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `scheme:rest` with an RFC 3986 scheme, a non-empty rest and no whitespace.
fn is_absolute_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn child_path(path: &str, key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", Value::String(key.to_owned()))
    }
}

fn escape_pointer(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

fn finish(errs: Vec<String>) -> Result<(), Vec<String>> {
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("failed to parse {}", path.display()))
}

/// Every `$ref` string in a document, except the example-file links of `x-ms-examples`.
fn collect_refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(obj) => {
            for (k, child) in obj {
                match (k.as_str(), child) {
                    ("$ref", Value::String(r)) => out.push(r),
                    ("x-ms-examples", _) => {}
                    _ => collect_refs(child, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|child| collect_refs(child, out)),
        _ => {}
    }
}

/// Resolves the file part of a `$ref` written in document `base` to a path relative to
/// the openapi folder. The upstream six-levels-up prefix maps to our `common-types/`.
fn join_rel(base: &str, file: &str) -> anyhow::Result<String> {
    if let Some(rest) = file.strip_prefix(UPSTREAM_COMMON_PREFIX) {
        return Ok(format!("common-types/{rest}"));
    }
    let mut parts: Vec<&str> = base.split('/').collect();
    parts.pop();
    for seg in file.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    bail!("reference {file:?} in {base} leaves the openapi folder");
                }
            }
            seg => parts.push(seg),
        }
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn examples(version: &str) -> Vec<(String, Value)> {
        let dir = openapi_dir().join(version).join("examples");
        let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, read_json(&p).unwrap())
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Every object node of `v` as a JSON pointer.
    fn object_pointers(v: &Value, at: String, out: &mut Vec<String>) {
        match v {
            Value::Object(obj) => {
                out.push(at.clone());
                for (k, c) in obj {
                    object_pointers(c, format!("{at}/{}", escape_pointer(k)), out);
                }
            }
            Value::Array(items) => {
                for (i, c) in items.iter().enumerate() {
                    object_pointers(c, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }

    /// Every scalar leaf of `v` as a JSON pointer.
    fn leaf_pointers(v: &Value, at: String, out: &mut Vec<String>) {
        match v {
            Value::Object(obj) => {
                for (k, c) in obj {
                    leaf_pointers(c, format!("{at}/{}", escape_pointer(k)), out);
                }
            }
            Value::Array(items) => {
                for (i, c) in items.iter().enumerate() {
                    leaf_pointers(c, format!("{at}/{i}"), out);
                }
            }
            Value::Null => {}
            _ => out.push(at),
        }
    }

    /// (operationId, status, body) of every example response of one version folder.
    fn example_responses(folder: &str) -> Vec<(String, String, u16, Option<Value>)> {
        let mut out = Vec::new();
        for (file, ex) in examples(folder) {
            let op = ex["operationId"].as_str().unwrap().to_owned();
            for (status, resp) in ex["responses"].as_object().unwrap() {
                let status: u16 = status.parse().unwrap();
                out.push((file.clone(), op.clone(), status, resp.get("body").cloned()));
            }
        }
        out
    }

    fn ok(r: Result<(), Vec<String>>) {
        if let Err(e) = r {
            panic!("unexpected violations: {e:#?}");
        }
    }

    /// Asserts a violation list contains an entry containing `needle`.
    #[track_caller]
    fn violates(r: Result<(), Vec<String>>, needle: &str) -> Vec<String> {
        let errs = r.expect_err("expected violations, got none");
        assert!(
            errs.iter().any(|e| e.contains(needle)),
            "no violation contains {needle:?}: {errs:#?}"
        );
        errs
    }

    fn api(version: &str) -> OpenApi {
        OpenApi::load(version).unwrap()
    }

    const SOURCE: &str = "subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/test-rg/providers/Microsoft.Web/sites/test-app";

    /// A linker as our server returns it; valid under every api-version.
    fn linker() -> Value {
        serde_json::json!({
            "id": format!("/{SOURCE}/providers/Microsoft.ServiceLinker/linkers/l1"),
            "name": "l1",
            "type": "Microsoft.ServiceLinker/linkers",
            "systemData": {
                "createdBy": "someone@example.com",
                "createdByType": "User",
                "createdAt": "2024-05-01T10:00:00Z",
                "lastModifiedAt": "2024-05-01T10:05:00.123+02:00"
            },
            "properties": {
                "provisioningState": "Succeeded",
                "clientType": "dotnet",
                "targetService": {
                    "type": "AzureResource",
                    "id": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/test-rg/providers/Microsoft.KeyVault/vaults/kv",
                    "resourceProperties": { "type": "KeyVault", "connectAsKubernetesCsiDriver": true }
                },
                "authInfo": { "authType": "servicePrincipalSecret", "clientId": "c", "principalId": "p" },
                "vNetSolution": { "type": "serviceEndpoint" },
                "secretStore": { "keyVaultId": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/test-rg/providers/Microsoft.KeyVault/vaults/kv" },
                "scope": null
            }
        })
    }

    fn with(mut v: Value, pointer: &str, new: Value) -> Value {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        v.pointer_mut(parent)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .insert(key.to_owned(), new);
        v
    }

    fn without(mut v: Value, pointer: &str) -> Value {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        v.pointer_mut(parent)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove(key);
        v
    }

    #[test]
    fn loads_every_version_and_rejects_unknown_ones() {
        for (version, ops) in [
            ("2022-05-01", 8),
            ("2024-04-01", 28),
            ("2024-07-01-preview", 28),
        ] {
            let api = api(version);
            assert_eq!(api.api_version(), version);
            assert_eq!(api.operations.len(), ops, "{version}");
            assert!(api.docs.iter().any(|d| d.rel.starts_with("common-types/")));
            assert!(format!("{api:?}").contains(version));
        }
        assert!(OpenApi::load("2023-01-01").is_err());
        assert!(OpenApi::load("../2024-04-01").is_err());
    }

    #[test]
    fn example_responses_validate_except_the_documented_quirk() {
        // The 2024-04-01 examples are not shipped; the preview ones have the same shapes.
        for (version, folder, checked) in [
            ("2022-05-01", "2022-05-01", 14),
            ("2024-07-01-preview", "2024-07-01-preview", 44),
            ("2024-04-01", "2024-07-01-preview", 44),
        ] {
            let api = api(version);
            let responses = example_responses(folder);
            assert_eq!(responses.len(), checked, "{folder}");
            let mut failures = Vec::new();
            for (file, op, status, body) in &responses {
                if let Err(e) = api.check_response(op, *status, body.as_ref()) {
                    failures.push((file.as_str(), *status, e));
                }
            }
            let expected: Vec<(&str, u16, Vec<String>)> = if folder == "2022-05-01" {
                vec![]
            } else {
                // README section 11: `nextLink` is not nullable here.
                vec![(
                    "ConfigurationNamesList.json",
                    200,
                    vec!["$.nextLink: null is not allowed (not x-nullable)".to_owned()],
                )]
            };
            assert_eq!(failures, expected, "{version}");
        }
    }

    #[test]
    fn every_object_of_every_example_rejects_an_unknown_property_and_a_wrong_type() {
        for (version, folder) in [
            ("2022-05-01", "2022-05-01"),
            ("2024-07-01-preview", "2024-07-01-preview"),
        ] {
            let api = api(version);
            let mut mutations = 0;
            for (file, op, status, body) in example_responses(folder) {
                let Some(mut body) = body else {
                    ok(api.check_response(&op, status, None));
                    continue;
                };
                if file == "ConfigurationNamesList.json" {
                    body = without(body, "/nextLink");
                }
                ok(api.check_response(&op, status, Some(&body)));
                let mut objects = Vec::new();
                object_pointers(&body, String::new(), &mut objects);
                for p in objects {
                    let bad = with(
                        body.clone(),
                        &format!("{p}/zzUnexpected"),
                        Value::Bool(true),
                    );
                    let errs =
                        violates(api.check_response(&op, status, Some(&bad)), "zzUnexpected");
                    // Maps (`additionalProperties`) reject it by value type instead.
                    assert!(
                        errs.iter()
                            .all(|e| e.contains(".zzUnexpected: unknown property")
                                || e.contains(".zzUnexpected: expected string, found boolean")),
                        "{file} {p}: {errs:?}"
                    );
                    mutations += 1;
                }
                let mut leaves = Vec::new();
                leaf_pointers(&body, String::new(), &mut leaves);
                for p in leaves {
                    let mut bad = body.clone();
                    *bad.pointer_mut(&p).unwrap() = serde_json::json!([[]]);
                    violates(api.check_response(&op, status, Some(&bad)), "found array");
                    mutations += 1;
                }
            }
            assert!(mutations >= 100, "{version}: only {mutations} mutations");
        }
    }

    #[test]
    fn hand_made_linker_is_valid_everywhere() {
        for version in API_VERSIONS {
            let api = api(version);
            for status in [200, 201] {
                ok(api.check_response("Linker_CreateOrUpdate", status, Some(&linker())));
            }
            ok(api.check_response("Linker_Get", 200, Some(&linker())));
            let list = serde_json::json!({ "value": [linker(), linker()], "nextLink": null });
            ok(api.check_response("Linker_List", 200, Some(&list)));
        }
    }

    #[test]
    fn unknown_properties_are_reported_with_their_path() {
        let api = api("2024-04-01");
        let bad = with(linker(), "/properties/colour", "blue".into());
        let errs = violates(
            api.check_response("Linker_Get", 200, Some(&bad)),
            "$.properties.colour: unknown property",
        );
        assert_eq!(errs.len(), 1, "{errs:?}");
        violates(
            api.check_response("Linker_Get", 200, Some(&bad)),
            "LinkerProperties",
        );
        // The ARM envelope of a proxy resource has no location.
        let bad = with(linker(), "/location", "westus".into());
        violates(
            api.check_response("Linker_Get", 200, Some(&bad)),
            "$.location: unknown property",
        );
        // Subtype properties and inherited base properties are known; others are not.
        let auth = with(
            linker(),
            "/properties/authInfo/authMode",
            "optOutAllAuth".into(),
        );
        ok(api.check_response("Linker_Get", 200, Some(&auth)));
        let bad = with(linker(), "/properties/authInfo/endpoint", "x".into());
        violates(
            api.check_response("Linker_Get", 200, Some(&bad)),
            "$.properties.authInfo.endpoint: unknown property (not defined by ServicePrincipalSecretAuthInfo)",
        );
        // `endpoint` belongs to another target subtype, not to AzureResource.
        let bad = with(linker(), "/properties/targetService/endpoint", "x".into());
        violates(
            api.check_response("Linker_Get", 200, Some(&bad)),
            "$.properties.targetService.endpoint: unknown property",
        );
        // Odd keys get a bracketed path.
        let bad = with(linker(), "/properties/a b", 1.into());
        violates(
            api.check_response("Linker_Get", 200, Some(&bad)),
            r#"$.properties["a b"]: unknown property"#,
        );
    }

    #[test]
    fn secret_properties_must_not_be_returned_but_are_not_required() {
        let api = api("2024-07-01-preview");
        // The hand-made linker omits the required `secret`: exempt because it is write-only.
        ok(api.check_response("Linker_Get", 200, Some(&linker())));
        let bad = with(linker(), "/properties/authInfo/secret", "hunter2".into());
        violates(
            api.check_response("Linker_Get", 200, Some(&bad)),
            "$.properties.authInfo.secret: secret property returned",
        );
        // Even an empty or null secret is a returned secret.
        let bad = with(linker(), "/properties/authInfo/secret", Value::Null);
        violates(
            api.check_response("Linker_Get", 200, Some(&bad)),
            "secret property returned",
        );
        // Other required properties are still required.
        let bad = without(linker(), "/properties/authInfo/clientId");
        violates(
            api.check_response("Linker_Get", 200, Some(&bad)),
            r#"$.properties.authInfo: missing required property "clientId""#,
        );
        // Secrets nested in a list item and in another union (rawValue secret info).
        let secret_auth = serde_json::json!({
            "authType": "secret",
            "name": "admin",
            "secretInfo": { "secretType": "rawValue", "value": "pw" }
        });
        let list = serde_json::json!({ "value": [linker(), with(linker(), "/properties/authInfo", secret_auth.clone())] });
        violates(
            api.check_response("Linker_List", 200, Some(&list)),
            "$.value[1].properties.authInfo.secretInfo.value: secret property returned",
        );
        let redacted = without(secret_auth, "/secretInfo/value");
        let list =
            serde_json::json!({ "value": [with(linker(), "/properties/authInfo", redacted)] });
        ok(api.check_response("Linker_List", 200, Some(&list)));
        // The certificate of certificate auth is a secret too.
        let cert = serde_json::json!({ "authType": "servicePrincipalCertificate", "clientId": "c", "principalId": "p", "certificate": "MII..." });
        let bad = with(linker(), "/properties/authInfo", cert);
        violates(
            api.check_response("Linker_Get", 200, Some(&bad)),
            "$.properties.authInfo.certificate: secret property returned",
        );
    }

    #[test]
    fn declared_extensions_of_extensible_enums_are_accepted() {
        let firewall = with(
            linker(),
            "/properties/vNetSolution",
            serde_json::json!({"type": "firewall"}),
        );
        for version in API_VERSIONS {
            violates(
                api(version).check_response("Linker_Get", 200, Some(&firewall)),
                "$.properties.vNetSolution.type",
            );
            let extended = api(version).allow_extension("VNetSolutionType", "firewall");
            ok(extended.check_response("Linker_Get", 200, Some(&firewall)));
            // Only the declared value, and only in that enum.
            let other = with(
                linker(),
                "/properties/vNetSolution",
                serde_json::json!({"type": "wormhole"}),
            );
            violates(
                extended.check_response("Linker_Get", 200, Some(&other)),
                "$.properties.vNetSolution.type",
            );
            let client = with(linker(), "/properties/clientType", "firewall".into());
            violates(
                extended.check_response("Linker_Get", 200, Some(&client)),
                "$.properties.clientType",
            );
        }
    }

    #[test]
    fn enums_are_strict_and_per_version() {
        let bad = with(linker(), "/properties/clientType", "cobol".into());
        for version in API_VERSIONS {
            violates(
                api(version).check_response("Linker_Get", 200, Some(&bad)),
                r#"$.properties.clientType: "cobol" is not an allowed value"#,
            );
        }
        violates(
            api("2024-04-01").check_response("Linker_Get", 200, Some(&bad)),
            "is not an allowed value of ClientType",
        );
        // `dapr` arrived after 2022-05-01.
        let dapr = with(linker(), "/properties/clientType", "dapr".into());
        violates(
            api("2022-05-01").check_response("Linker_Get", 200, Some(&dapr)),
            "$.properties.clientType",
        );
        ok(api("2024-04-01").check_response("Linker_Get", 200, Some(&dapr)));
        // Enum matching is case-sensitive.
        let bad = with(linker(), "/properties/clientType", "DotNet".into());
        violates(
            api("2024-04-01").check_response("Linker_Get", 200, Some(&bad)),
            "is not an allowed value",
        );
        // Enums of the common types are checked too.
        let bad = with(linker(), "/systemData/createdByType", "Robot".into());
        violates(
            api("2024-04-01").check_response("Linker_Get", 200, Some(&bad)),
            "$.systemData.createdByType",
        );
    }

    #[test]
    fn discriminators_select_the_subtype() {
        let api22 = api("2022-05-01");
        let api24 = api("2024-04-01");
        let bad = without(linker(), "/properties/authInfo/authType");
        violates(
            api24.check_response("Linker_Get", 200, Some(&bad)),
            r#"$.properties.authInfo: missing required discriminator property "authType""#,
        );
        // accessKey auth exists only from 2024-04-01 on.
        let access = with(
            linker(),
            "/properties/authInfo",
            serde_json::json!({ "authType": "accessKey", "permissions": ["Read", "Write"] }),
        );
        ok(api24.check_response("Linker_Get", 200, Some(&access)));
        violates(
            api22.check_response("Linker_Get", 200, Some(&access)),
            r#"$.properties.authInfo.authType: unknown discriminator value "accessKey" of AuthInfoBase"#,
        );
        // A subtype's properties are checked against that subtype only.
        let bad = with(
            access,
            "/properties/authInfo/permissions",
            serde_json::json!(["Fly"]),
        );
        violates(
            api24.check_response("Linker_Get", 200, Some(&bad)),
            "$.properties.authInfo.permissions[0]",
        );
        // The preview-only target type.
        let fabric = with(
            linker(),
            "/properties/targetService",
            serde_json::json!({ "type": "FabricPlatform", "endpoint": "https://x" }),
        );
        ok(api("2024-07-01-preview").check_response("Linker_Get", 200, Some(&fabric)));
        violates(
            api24.check_response("Linker_Get", 200, Some(&fabric)),
            "unknown discriminator value \"FabricPlatform\"",
        );
        let bad = with(linker(), "/properties/targetService/type", 7.into());
        violates(
            api24.check_response("Linker_Get", 200, Some(&bad)),
            "discriminator must be a string",
        );
        // Validating against a concrete subtype accepts only that subtype (or its descendants).
        ok(api24.check_definition(
            "SecretAuthInfo",
            &serde_json::json!({ "authType": "secret" }),
        ));
        ok(api24.check_definition(
            "AuthInfoBase",
            &serde_json::json!({ "authType": "systemAssignedIdentity" }),
        ));
        violates(
            api24.check_definition(
                "SecretAuthInfo",
                &serde_json::json!({ "authType": "systemAssignedIdentity" }),
            ),
            "unknown discriminator value",
        );
    }

    #[test]
    fn dry_run_unions_are_checked() {
        let api = api("2024-07-01-preview");
        let dryrun = serde_json::json!({
            "id": format!("/{SOURCE}/providers/Microsoft.ServiceLinker/dryruns/d"),
            "name": "d",
            "type": "Microsoft.ServiceLinker/dryruns",
            "properties": {
                "provisioningState": "Succeeded",
                "parameters": {
                    "actionName": "createOrUpdate",
                    "targetService": { "type": "AzureResource", "id": "/x" },
                    "authInfo": { "authType": "systemAssignedIdentity" }
                },
                "prerequisiteResults": [
                    { "type": "basicError", "code": "c", "message": "m" },
                    { "type": "permissionsMissing", "scope": "/x", "permissions": ["a"], "recommendedRole": "r" }
                ],
                "operationPreviews": []
            }
        });
        ok(api.check_response("Linkers_GetDryrun", 200, Some(&dryrun)));
        let bad = with(
            dryrun.clone(),
            "/properties/prerequisiteResults/0/type",
            "weird".into(),
        );
        violates(
            api.check_response("Linkers_GetDryrun", 200, Some(&bad)),
            "$.properties.prerequisiteResults[0].type: unknown discriminator value",
        );
        let bad = with(
            dryrun.clone(),
            "/properties/prerequisiteResults/0/scope",
            "/x".into(),
        );
        violates(
            api.check_response("Linkers_GetDryrun", 200, Some(&bad)),
            "$.properties.prerequisiteResults[0].scope: unknown property",
        );
        let bad = with(dryrun, "/properties/parameters/actionName", "delete".into());
        violates(
            api.check_response("Linkers_GetDryrun", 200, Some(&bad)),
            "unknown discriminator value \"delete\"",
        );
    }

    #[test]
    fn formats_and_ranges_are_checked() {
        let api = api("2024-07-01-preview");
        for bad_time in [
            "yesterday",
            "2024-05-01T10:00:00",
            "2024-13-01T10:00:00Z",
            "",
        ] {
            let bad = with(linker(), "/systemData/createdAt", bad_time.into());
            violates(
                api.check_response("Linker_Get", 200, Some(&bad)),
                "$.systemData.createdAt",
            );
            violates(
                api.check_response("Linker_Get", 200, Some(&bad)),
                "is not a valid date-time",
            );
        }
        // `nextLink` is `format: uri` in the preview, a plain string in 2024-04-01.
        let list = serde_json::json!({ "value": [], "nextLink": "next page" });
        violates(
            api.check_response("Linker_List", 200, Some(&list)),
            r#"$.nextLink: "next page" is not a valid uri"#,
        );
        ok(self::api("2024-04-01").check_response("Linker_List", 200, Some(&list)));
        let list = serde_json::json!({ "value": [], "nextLink": "https://tether.example/x?api-version=2024-07-01-preview&$skipToken=1" });
        ok(api.check_response("Linker_List", 200, Some(&list)));
        // minimum/maximum (common types).
        let status = serde_json::json!({ "id": "/x", "name": "op", "status": "InProgress", "percentComplete": 50.5, "startTime": "2024-05-01T10:00:00Z" });
        ok(api.check_definition("OperationStatusResult", &status));
        let bad = with(status.clone(), "/percentComplete", 150.into());
        violates(
            api.check_definition("OperationStatusResult", &bad),
            "$.percentComplete: 150 is outside the allowed range",
        );
        let bad = without(status.clone(), "/status");
        violates(
            api.check_definition("OperationStatusResult", &bad),
            r#"$: missing required property "status""#,
        );
        let bad = with(status, "/endTime", "soon".into());
        violates(
            api.check_definition("OperationStatusResult", &bad),
            "$.endTime",
        );
        // int32 and maxLength (common types).
        let bad = serde_json::json!({ "name": "S1", "capacity": 1.5 });
        violates(
            api.check_definition("Sku", &bad),
            "$.capacity: expected integer, found number",
        );
        let bad = serde_json::json!({ "name": "S1", "capacity": 1_u64 << 40 });
        violates(api.check_definition("Sku", &bad), "does not fit int32");
        let bad = serde_json::json!({ "name": "x".repeat(257) });
        violates(
            api.check_definition("locationData", &bad),
            "$.name: length 257",
        );
    }

    #[test]
    fn null_is_only_valid_where_nullable() {
        for version in API_VERSIONS {
            let api = api(version);
            for nullable in [
                "/properties/scope",
                "/properties/vNetSolution",
                "/properties/secretStore",
                "/properties/targetService/resourceProperties",
            ] {
                ok(api.check_response(
                    "Linker_Get",
                    200,
                    Some(&with(linker(), nullable, Value::Null)),
                ));
            }
            for strict in [
                "/properties/clientType",
                "/properties/authInfo",
                "/properties/targetService/id",
                "/name",
                "/properties/authInfo/clientId",
            ] {
                let bad = with(linker(), strict, Value::Null);
                let path = format!("${}: null is not allowed", strict.replace('/', "."));
                violates(api.check_response("Linker_Get", 200, Some(&bad)), &path);
            }
            violates(
                api.check_response("Linker_Get", 200, Some(&Value::Null)),
                "$: null is not allowed",
            );
        }
        // LinkerResource re-declares systemData as nullable in the hand-written versions; the
        // preview inherits the common (non-nullable) one: the derived declaration wins.
        let nulled = with(linker(), "/systemData", Value::Null);
        ok(api("2022-05-01").check_response("Linker_Get", 200, Some(&nulled)));
        ok(api("2024-04-01").check_response("Linker_Get", 200, Some(&nulled)));
        violates(
            api("2024-07-01-preview").check_response("Linker_Get", 200, Some(&nulled)),
            "$.systemData: null",
        );
    }

    #[test]
    fn types_and_required_properties_are_checked() {
        let api = api("2024-04-01");
        let bad = with(linker(), "/properties/scope", 42.into());
        violates(
            api.check_response("Linker_Get", 200, Some(&bad)),
            "$.properties.scope: expected string, found integer",
        );
        let bad = with(
            linker(),
            "/properties/targetService/resourceProperties/connectAsKubernetesCsiDriver",
            "true".into(),
        );
        violates(
            api.check_response("Linker_Get", 200, Some(&bad)),
            "expected boolean, found string",
        );
        let bad = without(linker(), "/properties");
        violates(
            api.check_response("Linker_Get", 200, Some(&bad)),
            r#"$: missing required property "properties""#,
        );
        let list = serde_json::json!({ "value": linker() });
        violates(
            api.check_response("Linker_List", 200, Some(&list)),
            "$.value: expected array, found object",
        );
        violates(
            api.check_response("Linker_Get", 200, Some(&serde_json::json!([]))),
            "$: expected object, found array",
        );
    }

    #[test]
    fn additional_properties_maps_are_validated() {
        let api = api("2024-04-01");
        let info = |keys: Value| {
            with(
                linker(),
                "/properties/configurationInfo",
                serde_json::json!({ "customizedKeys": keys }),
            )
        };
        ok(api.check_response(
            "Linker_Get",
            200,
            Some(&info(
                serde_json::json!({ "ANY_KEY": "MY_KEY", "other key": "x" }),
            )),
        ));
        violates(
            api.check_response(
                "Linker_Get",
                200,
                Some(&info(serde_json::json!({ "ANY_KEY": 1 }))),
            ),
            "$.properties.configurationInfo.customizedKeys.ANY_KEY: expected string",
        );
        // Free-form objects (`ErrorAdditionalInfo.info` declares no properties) accept anything.
        let error = serde_json::json!({ "error": {
            "code": "Conflict",
            "message": "busy",
            "details": [{ "code": "a", "details": [{ "message": "b" }] }],
            "additionalInfo": [{ "type": "PolicyViolation", "info": { "any": { "thing": [1, 2] } } }]
        }});
        ok(api.check_definition("ErrorResponse", &error));
        ok(api.check_response("Linker_Get", 409, Some(&error)));
        let bad = with(error, "/error/details/0/details/0/hint", "x".into());
        violates(
            api.check_definition("ErrorResponse", &bad),
            "$.error.details[0].details[0].hint: unknown property",
        );
    }

    #[test]
    fn status_codes_and_bodies_follow_the_operation() {
        let api = api("2024-04-01");
        let error = serde_json::json!({ "error": { "code": "NotFound", "message": "no linker" } });
        // Non-2xx falls back to `default`, whose schema is the ARM error body.
        for status in [400, 404, 409, 500, 503] {
            ok(api.check_response("Linker_Get", status, Some(&error)));
        }
        violates(
            api.check_response(
                "Linker_Get",
                404,
                Some(&serde_json::json!({ "code": "NotFound" })),
            ),
            "$.code: unknown property",
        );
        violates(
            api.check_response("Linker_Get", 404, None),
            "declares a body, but none was returned",
        );
        // An undeclared 2xx does not fall back to `default`.
        violates(
            api.check_response("Linker_Get", 201, Some(&linker())),
            "status 201 is not declared for Linker_Get (declared: 200, default)",
        );
        violates(
            api.check_response("Linker_Update", 202, Some(&linker())),
            "status 202 is not declared",
        );
        ok(api.check_response("Connector_Update", 202, Some(&linker())));
        // Responses without schema must not have a body.
        for status in [200, 202, 204] {
            ok(api.check_response("Linker_Delete", status, None));
        }
        violates(
            api.check_response("Linker_Delete", 204, Some(&serde_json::json!({}))),
            "declares no body",
        );
        violates(
            api.check_response("Linkers_DeleteDryrun", 202, None),
            "status 202 is not declared",
        );
        ok(api.check_response("Linker_Validate", 202, None));
        violates(
            api.check_response("Linker_Get", 200, None),
            "declares a body",
        );
        violates(
            api.check_response("Linker_Nope", 200, None),
            "unknown operation \"Linker_Nope\"",
        );
        // Operations_List uses the common OperationListResult.
        let ops = serde_json::json!({ "value": [{ "name": "Microsoft.ServiceLinker/linkers/read", "isDataAction": false,
            "display": { "provider": "p", "resource": "r", "operation": "o", "description": "d" }, "origin": "user,system" }] });
        ok(api.check(
            "GET",
            "/providers/Microsoft.ServiceLinker/operations",
            200,
            Some(&ops),
        ));
        let bad = with(ops, "/value/0/origin", "robot".into());
        violates(
            api.check(
                "GET",
                "/providers/Microsoft.ServiceLinker/operations",
                200,
                Some(&bad),
            ),
            "$.value[0].origin",
        );
    }

    #[test]
    fn public_network_solution_is_a_2024_property() {
        let body = with(
            linker(),
            "/properties/publicNetworkSolution",
            serde_json::json!({ "action": "enable", "firewallRules": { "callerClientIP": "true" } }),
        );
        let path = format!("/{SOURCE}/providers/Microsoft.ServiceLinker/linkers/l1");
        violates(
            api("2022-05-01").check("GET", &path, 200, Some(&body)),
            "$.properties.publicNetworkSolution: unknown property (not defined by LinkerProperties)",
        );
        ok(api("2024-04-01").check("GET", &path, 200, Some(&body)));
        ok(api("2024-07-01-preview").check("GET", &path, 200, Some(&body)));
        // The 2024 enums inside it are checked as well.
        let bad = with(
            body,
            "/properties/publicNetworkSolution/action",
            "maybe".into(),
        );
        violates(
            api("2024-04-01").check("GET", &path, 200, Some(&bad)),
            "$.properties.publicNetworkSolution.action",
        );
    }

    /// Fills a path template from example parameters.
    fn fill(template: &str, params: &Map<String, Value>) -> String {
        let mut out = String::new();
        for seg in template.trim_start_matches('/').split('/') {
            out.push('/');
            match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => out.push_str(params[name].as_str().unwrap()),
                None => out.push_str(seg),
            }
        }
        out
    }

    #[test]
    fn operation_for_maps_every_example_request() {
        // Paths are built from the preview templates (`resourceGroups`); 2024-04-01 spells
        // them `resourcegroups`, so it also exercises case-insensitive literals.
        let preview = api("2024-07-01-preview");
        for (version, folder) in [
            ("2022-05-01", "2022-05-01"),
            ("2024-07-01-preview", "2024-07-01-preview"),
            ("2024-04-01", "2024-07-01-preview"),
        ] {
            let api = api(version);
            let mut seen = std::collections::BTreeSet::new();
            for (file, ex) in examples(folder) {
                let op = ex["operationId"].as_str().unwrap();
                let source = if folder == "2022-05-01" {
                    &api
                } else {
                    &preview
                };
                let (template, method) = &source.operations[op];
                let path = fill(template, ex["parameters"].as_object().unwrap());
                assert_eq!(
                    api.operation_for(method, &path).as_deref(),
                    Some(op),
                    "{version} {file}: {method} {path}"
                );
                assert_eq!(
                    api.operation_for(&method.to_ascii_uppercase(), &path)
                        .as_deref(),
                    Some(op)
                );
                seen.insert(op.to_owned());
            }
            let missing: Vec<&str> = api
                .operations
                .keys()
                .map(String::as_str)
                .filter(|op| !seen.contains(*op))
                .collect();
            // The 2022-05-01 folder has no OperationsList example (README, 2022-05-01 section).
            let expected: &[&str] = if folder == "2022-05-01" {
                &["Operations_List"]
            } else {
                &[]
            };
            assert_eq!(
                missing, expected,
                "{version}: examples cover every operation"
            );
        }
    }

    #[test]
    fn operation_for_handles_nested_sources_and_odd_casing() {
        let api = api("2024-04-01");
        let cases = [
            (
                "GET",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/containerApps/app/providers/Microsoft.ServiceLinker/linkers/l",
                "Linker_Get",
            ),
            (
                "PUT",
                "/subscriptions/s/resourcegroups/rg/providers/Microsoft.ContainerService/managedClusters/aks/providers/Microsoft.ServiceLinker/linkers/l",
                "Linker_CreateOrUpdate",
            ),
            (
                "PATCH",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.AppPlatform/Spring/sp/apps/a/deployments/default/providers/Microsoft.ServiceLinker/linkers/l",
                "Linker_Update",
            ),
            (
                "DELETE",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app/slots/staging/providers/Microsoft.ServiceLinker/linkers/l",
                "Linker_Delete",
            ),
            (
                "GET",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app/providers/Microsoft.ServiceLinker/linkers",
                "Linker_List",
            ),
            (
                "POST",
                "/SUBSCRIPTIONS/s/RESOURCEGROUPS/rg/PROVIDERS/microsoft.web/sites/app/Providers/MICROSOFT.SERVICELINKER/Linkers/l/ValidateLinker",
                "Linker_Validate",
            ),
            (
                "post",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app/providers/microsoft.servicelinker/linkers/l/listconfigurations",
                "Linker_ListConfigurations",
            ),
            (
                "POST",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app/providers/Microsoft.ServiceLinker/linkers/l/generateConfigurations",
                "Linkers_GenerateConfigurations",
            ),
            (
                "GET",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app/providers/Microsoft.ServiceLinker/dryruns",
                "Linkers_ListDryrun",
            ),
            (
                "GET",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app/providers/Microsoft.ServiceLinker/daprConfigurations",
                "Linkers_ListDaprConfigurations",
            ),
            (
                "GET",
                "/providers/Microsoft.ServiceLinker/operations",
                "Operations_List",
            ),
            (
                "GET",
                "/PROVIDERS/microsoft.servicelinker/Operations?api-version=2024-04-01",
                "Operations_List",
            ),
            (
                "GET",
                "/providers/Microsoft.ServiceLinker/configurationNames?$filter=x",
                "ConfigurationNames_List",
            ),
            (
                "GET",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ServiceLinker/locations/westus/connectors/c",
                "Connector_Get",
            ),
            (
                "GET",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ServiceLinker/locations/westus/dryruns/d/",
                "Connector_GetDryrun",
            ),
            (
                "POST",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ServiceLinker/locations/westus/connectors/c/validate",
                "Connector_Validate",
            ),
            // A source id that itself contains the ServiceLinker namespace: split on the last one.
            (
                "GET",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ServiceLinker/locations/westus/connectors/c/providers/Microsoft.ServiceLinker/linkers/l",
                "Linker_Get",
            ),
            (
                "GET",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app/providers/Microsoft.ServiceLinker/linkers/linkers/providers/Microsoft.ServiceLinker/linkers",
                "Linker_List",
            ),
        ];
        for (method, path, op) in cases {
            assert_eq!(
                api.operation_for(method, path).as_deref(),
                Some(op),
                "{method} {path}"
            );
        }
        let misses = [
            (
                "POST",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app/providers/Microsoft.ServiceLinker/linkers/l",
            ),
            (
                "GET",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app/providers/Microsoft.ServiceLinker/linkers/l/validateLinker",
            ),
            ("GET", "/providers/Microsoft.ServiceLinker/linkers/l"),
            (
                "GET",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app/providers/Microsoft.ServiceLinker/widgets/w",
            ),
            (
                "GET",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app/providers/Microsoft.ServiceLinker/linkers/l/extra",
            ),
            (
                "GET",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app/providers/Microsoft.ServiceLinker/linkers//",
            ),
            ("GET", ""),
        ];
        for (method, path) in misses {
            assert_eq!(api.operation_for(method, path), None, "{method} {path}");
        }
        // 2022-05-01 has neither connectors nor dry runs.
        let old = self::api("2022-05-01");
        assert_eq!(old.operation_for("GET", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ServiceLinker/locations/westus/connectors/c"), None);
        assert_eq!(old.operation_for("GET", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app/providers/Microsoft.ServiceLinker/dryruns"), None);
        violates(
            old.check("GET", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ServiceLinker/locations/westus/connectors/c", 200, Some(&linker())),
            "no operation of api-version 2022-05-01 matches GET",
        );
    }

    #[test]
    fn check_definition_finds_common_types_and_rejects_unknown_names() {
        for version in API_VERSIONS {
            let api = api(version);
            ok(api.check_definition(
                "ErrorResponse",
                &serde_json::json!({ "error": { "code": "c", "message": "m" } }),
            ));
            ok(api.check_definition(
                "OperationStatusResult",
                &serde_json::json!({ "status": "Succeeded" }),
            ));
            ok(api.check_definition("LinkerResource", &linker()));
            violates(
                api.check_definition("Nope", &Value::Null),
                "unknown definition \"Nope\"",
            );
        }
    }

    /// Builds a checker from in-memory documents.
    fn synthetic(files: &[(&str, Value)]) -> anyhow::Result<OpenApi> {
        let files: HashMap<String, Value> = files
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        OpenApi::build("test", "v1/main.json", |rel| {
            files
                .get(rel)
                .cloned()
                .with_context(|| format!("no file {rel}"))
        })
    }

    #[test]
    fn reference_cycles_terminate_and_deep_hierarchies_dispatch() {
        let main = serde_json::json!({
            "paths": {},
            "definitions": {
                "A": { "type": "object", "allOf": [{ "$ref": "#/definitions/B" }], "properties": { "a": { "type": "string" } } },
                "B": { "type": "object", "allOf": [{ "$ref": "#/definitions/A" }], "properties": { "b": { "type": "string" } } },
                "Loop": { "$ref": "#/definitions/Loop" },
                "List": { "type": "object", "properties": { "next": { "$ref": "#/definitions/List", "x-nullable": true }, "v": { "type": "integer" } } },
                "Animal": { "type": "object", "discriminator": "kind", "required": ["kind"], "properties": { "kind": { "type": "string" } } },
                "Dog": { "type": "object", "allOf": [{ "$ref": "#/definitions/Animal" }], "properties": { "bark": { "type": "boolean" } } },
                "Puppy": { "type": "object", "x-ms-discriminator-value": "puppy", "allOf": [{ "$ref": "#/definitions/Dog" }], "properties": { "age": { "type": "integer" } } },
                "Pet": { "type": "object", "properties": { "animal": { "$ref": "../../../../../../common-types/zoo/types.json#/definitions/Holder" } } }
            }
        });
        let common = serde_json::json!({ "definitions": { "Holder": { "type": "object", "properties": { "inner": { "$ref": "#/definitions/Inner" } } }, "Inner": { "type": "string", "enum": ["x"] } } });
        let api = synthetic(&[
            ("v1/main.json", main),
            ("common-types/zoo/types.json", common),
        ])
        .unwrap();
        ok(api.check_definition("A", &serde_json::json!({ "a": "1", "b": "2" })));
        violates(
            api.check_definition("B", &serde_json::json!({ "c": 1 })),
            "$.c: unknown property",
        );
        ok(api.check_definition("Loop", &serde_json::json!({ "anything": 1 })));
        let mut deep = serde_json::json!({ "v": 0, "next": null });
        for v in 1..50 {
            deep = serde_json::json!({ "v": v, "next": deep });
        }
        ok(api.check_definition("List", &deep));
        *deep.pointer_mut("/next/next/next/v").unwrap() = "three".into();
        violates(
            api.check_definition("List", &deep),
            "$.next.next.next.v: expected integer",
        );
        // The definition name is the default discriminator value; grandchildren are found.
        ok(api.check_definition(
            "Animal",
            &serde_json::json!({ "kind": "Dog", "bark": true }),
        ));
        ok(api.check_definition(
            "Animal",
            &serde_json::json!({ "kind": "puppy", "bark": true, "age": 1 }),
        ));
        violates(
            api.check_definition("Animal", &serde_json::json!({ "kind": "Dog", "age": 1 })),
            "$.age: unknown property (not defined by Dog)",
        );
        violates(
            api.check_definition("Animal", &serde_json::json!({ "kind": "Puppy" })),
            "unknown discriminator value \"Puppy\"",
        );
        violates(
            api.check_definition("Dog", &serde_json::json!({ "kind": "Animal" })),
            "known: Dog, puppy",
        );
        // External references map the upstream prefix to our common-types folder.
        ok(api.check_definition("Pet", &serde_json::json!({ "animal": { "inner": "x" } })));
        violates(
            api.check_definition("Pet", &serde_json::json!({ "animal": { "inner": "y" } })),
            "$.animal.inner: \"y\" is not an allowed value of Inner",
        );
    }

    #[test]
    fn broken_references_fail_at_load() {
        let main = serde_json::json!({ "paths": {}, "definitions": { "A": { "$ref": "#/definitions/Missing" } } });
        let err = synthetic(&[("v1/main.json", main)]).err().unwrap();
        assert!(
            format!("{err:#}").contains("unresolvable $ref \"#/definitions/Missing\""),
            "{err:#}"
        );
        let main = serde_json::json!({ "paths": {}, "definitions": { "A": { "$ref": "../../escape.json#/definitions/X" } } });
        let err = synthetic(&[("v1/main.json", main)]).err().unwrap();
        assert!(
            format!("{err:#}").contains("leaves the openapi folder"),
            "{err:#}"
        );
        let main = serde_json::json!({ "paths": {}, "definitions": { "A": { "$ref": "./other.json#/definitions/X" } } });
        let err = synthetic(&[("v1/main.json", main)]).err().unwrap();
        assert!(
            format!("{err:#}").contains("no file v1/other.json"),
            "{err:#}"
        );
    }
}
