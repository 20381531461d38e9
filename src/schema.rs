//! The JSON Schema of the stack file, for editors (yaml-language-server, VS Code) and CI.
//!
//! The structure — every key, its type, which keys are required, that unknown keys are
//! refused — is derived from [`crate::spec::raw`], the very types the file is parsed
//! into. What a type cannot say (a description to show on hover, the ranges and
//! patterns `validate` checks) is laid over it here, by JSON pointer; a pointer that
//! no longer matches a key is a test failure, so the two cannot drift apart silently.
//! The schema only ever accepts less than `stack validate`: cross-field rules (CIDRs
//! that fit the VPC, `min ≤ desired ≤ max`, rules naming known services) stay there.

use crate::spec::raw::RawStack;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

/// Where the generated schema is kept in the repository.
pub const SCHEMA_PATH: &str = "schema/stack.schema.json";

/// The schema as `stack schema` prints it (draft-07: what yaml-language-server and
/// VS Code read without configuration).
pub fn generate() -> Value {
    let (schema, unmatched) = generate_checked();
    debug_assert!(unmatched.is_empty(), "schema overlay: {unmatched:?}");
    schema
}

/// The schema and the overlay pointers that matched no key (always empty in a
/// consistent build; the unit tests check it).
pub fn generate_checked() -> (Value, Vec<String>) {
    let schema = SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<RawStack>();
    let mut schema = rename_definitions(schema.to_value());
    drop_null_defaults(&mut schema);
    let mut unmatched = Vec::new();
    for (pointer, extra) in overlay() {
        match schema.pointer_mut(pointer) {
            Some(target @ Value::Object(_)) => merge(target, extra),
            _ => unmatched.push(pointer.to_string()),
        }
    }
    (schema, unmatched)
}

/// Objects merge key by key; anything else replaces.
fn merge(target: &mut Value, extra: Value) {
    match (target, extra) {
        (Value::Object(t), Value::Object(e)) => {
            for (k, v) in e {
                match t.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        t.insert(k, v);
                    }
                }
            }
        }
        (t, e) => *t = e,
    }
}

/// `"default": null` is what an absent optional key means to serde, not a value to
/// offer in an editor; the real defaults come from the overlay.
fn drop_null_defaults(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if map.get("default") == Some(&Value::Null) {
                map.remove("default");
            }
            map.values_mut().for_each(drop_null_defaults);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_null_defaults),
        _ => {}
    }
}

/// The text of [`SCHEMA_PATH`]: pretty JSON and a final newline.
pub fn text() -> String {
    let mut s = serde_json::to_string_pretty(&generate()).unwrap_or_default();
    s.push('\n');
    s
}

/// `RawNetwork` → `Network`: the parser's naming is no business of an editor's.
fn rename_definitions(mut schema: Value) -> Value {
    fn strip(name: &str) -> &str {
        name.strip_prefix("Raw").unwrap_or(name)
    }
    fn refs(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    match v {
                        Value::String(r) if k == "$ref" => {
                            if let Some(name) = r.strip_prefix("#/definitions/") {
                                *r = format!("#/definitions/{}", strip(name));
                            }
                        }
                        other => refs(other),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(refs),
            _ => {}
        }
    }
    if let Some(Value::Object(defs)) = schema.get_mut("definitions") {
        let renamed: Map<String, Value> = std::mem::take(defs)
            .into_iter()
            .map(|(k, v)| (strip(&k).to_string(), v))
            .collect();
        *defs = renamed;
    }
    refs(&mut schema);
    schema
}

const NAME: &str = "^[a-z]([a-z0-9]|-[a-z0-9])*$";
const SERVICE_NAME: &str = "^[a-z]([a-z0-9-]*[a-z0-9])?$";

/// Descriptions and the single-value checks of `stack validate`, by JSON pointer.
fn overlay() -> Vec<(&'static str, Value)> {
    let d = "/definitions";
    let p = |def: &str, key: &str| -> &'static str {
        Box::leak(format!("{d}/{def}/properties/{key}").into_boxed_str())
    };
    vec![
        (
            "",
            json!({
                "title": "stack file",
                "description": "One YAML file describing an AWS web stack; `stack plan FILE` shows what `stack up FILE` would change.",
            }),
        ),
        (
            "/properties/stack",
            json!({
                "description": "The stack's name: prefixes AWS names and tags everything (stack:name). Lowercase letters, digits and single hyphens, at most 20 characters.",
                "pattern": NAME,
                "minLength": 1,
                "maxLength": 20,
            }),
        ),
        (
            "/properties/region",
            json!({ "description": "AWS region; else --region, else the AWS config chain." }),
        ),
        (
            "/properties/services",
            json!({
                "description": "Each service gets a security group, target group, launch template, Auto Scaling group and CPU policy.",
                "minProperties": 1,
                "propertyNames": { "pattern": SERVICE_NAME, "not": { "const": "alb" } },
            }),
        ),
        (
            "/properties/table",
            json!({ "description": "A DynamoDB table named `<stack>-<name>`." }),
        ),
        (
            "/properties/bucket",
            json!({ "description": "An S3 bucket: public access blocked, AES256 default encryption." }),
        ),
        (
            "/properties/instance_profile",
            json!({
                "description": "An existing IAM instance profile (its name) for the instances; without it the stack creates its own role and profile.",
                "pattern": "^[A-Za-z0-9+=,.@_-]{1,128}$",
            }),
        ),
        (
            p("App", "build"),
            json!({ "description": "A cargo package to build for Amazon Linux 2023, relative to the stack file." }),
        ),
        (
            p("App", "bin"),
            json!({ "description": "Which binary of the package (with `build`)." }),
        ),
        (
            p("App", "artifact"),
            json!({ "description": "A prebuilt binary, relative to the stack file (instead of `build`)." }),
        ),
        (
            p("Network", "cidr"),
            json!({ "description": "The VPC's IPv4 CIDR, /16 to /28.", "pattern": "^[0-9.]+/[0-9]+$" }),
        ),
        (
            p("Network", "subnets"),
            json!({ "description": "Public subnets, one per zone, at least two zones.", "minItems": 2 }),
        ),
        (
            p("Subnet", "az"),
            json!({ "description": "Zone letter (a, b, …); the region comes from `region`.", "pattern": "^[a-z]$" }),
        ),
        (
            p("Subnet", "cidr"),
            json!({ "description": "Inside the VPC's CIDR, not overlapping another subnet.", "pattern": "^[0-9.]+/[0-9]+$" }),
        ),
        (
            p("LoadBalancer", "ingress"),
            json!({ "description": "CIDRs allowed to reach the listener.", "items": { "pattern": "^[0-9.]+/[0-9]+$" } }),
        ),
        (
            p("LoadBalancer", "default_service"),
            json!({ "description": "The service requests go to when no rule matches." }),
        ),
        (
            p("LoadBalancer", "rules"),
            json!({ "description": "Path rules, each to a service." }),
        ),
        (
            p("Listener", "port"),
            json!({ "description": "The HTTP listener's port.", "minimum": 1 }),
        ),
        (
            p("Rule", "name"),
            json!({ "description": "The rule's name in addresses (listener_rule.<name>); defaults to the service." }),
        ),
        (
            p("Rule", "path"),
            json!({ "description": "An ALB path pattern (`*` and `?` wildcards), starting with `/`.", "pattern": "^/", "maxLength": 128 }),
        ),
        (
            p("Rule", "priority"),
            json!({ "description": "Unique among the rules; lower is evaluated first.", "minimum": 1, "maximum": 50000 }),
        ),
        (
            p("Service", "port"),
            json!({ "description": "The port the instances serve on.", "minimum": 1 }),
        ),
        (
            p("Service", "user_data"),
            json!({ "description": "User-data template, relative to the stack file; `{{ name }}` placeholders." }),
        ),
        (
            p("Health", "path"),
            json!({ "description": "Health check path.", "pattern": "^/", "maxLength": 1024 }),
        ),
        (
            p("Health", "interval"),
            json!({ "description": "Seconds between checks.", "default": 15, "minimum": 5, "maximum": 300 }),
        ),
        (
            p("Health", "healthy"),
            json!({ "description": "Healthy threshold.", "default": 2, "minimum": 2, "maximum": 10 }),
        ),
        (
            p("Health", "unhealthy"),
            json!({ "description": "Unhealthy threshold.", "default": 3, "minimum": 2, "maximum": 10 }),
        ),
        (
            p("Health", "grace_period"),
            json!({ "description": "Seconds before a new instance's health counts.", "default": 120, "minimum": 0, "maximum": 7200 }),
        ),
        (
            p("Instance", "type"),
            json!({ "description": "EC2 instance type, like t3.micro.", "pattern": "^[a-z0-9-]+\\.[a-z0-9-]+$" }),
        ),
        (
            p("Instance", "ami"),
            json!({ "description": "`al2023` (the latest Amazon Linux 2023, from SSM) or an image id.", "pattern": "^(al2023|ami-[0-9a-fA-F]{8,17})$" }),
        ),
        (
            p("Scaling", "max"),
            json!({ "description": "Largest group size; min ≤ desired ≤ max.", "minimum": 1 }),
        ),
        (
            p("Scaling", "desired"),
            json!({ "description": "What `up` sets; target tracking moves the live number, which `up` does not fight." }),
        ),
        (
            p("Scaling", "cpu_target"),
            json!({ "description": "Average CPU percentage target tracking aims at.", "exclusiveMinimum": 0, "maximum": 100 }),
        ),
        (
            p("Table", "name"),
            json!({ "description": "Table name after the stack prefix.", "pattern": "^[A-Za-z0-9_.-]+$" }),
        ),
        (
            p("Table", "billing"),
            json!({ "description": "provisioned needs read_capacity and write_capacity.", "default": "pay_per_request", "enum": ["pay_per_request", "provisioned", null] }),
        ),
        (
            p("Table", "pitr"),
            json!({ "description": "Point-in-time recovery.", "default": true }),
        ),
        (
            p("Key", "type"),
            json!({ "description": "S (string), N (number) or B (binary).", "enum": ["S", "N", "B"] }),
        ),
        (
            p("Key", "name"),
            json!({ "minLength": 1, "maxLength": 255 }),
        ),
        (
            p("Bucket", "name"),
            json!({ "description": "Globally unique S3 bucket name.", "pattern": "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$" }),
        ),
        (
            p("Bucket", "versioning"),
            json!({ "description": "Keep every object version.", "default": false }),
        ),
        (
            p("Bucket", "force_destroy"),
            json!({ "description": "Let `down` empty a non-empty bucket (`down --force` does it once).", "default": false }),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    fn yaml(path: &Path) -> Value {
        let text = std::fs::read_to_string(path).unwrap();
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn validator() -> (boon::Schemas, boon::SchemaIndex) {
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        compiler
            .add_resource("stack.schema.json", generate())
            .unwrap();
        let index = compiler
            .compile("stack.schema.json", &mut schemas)
            .unwrap_or_else(|e| panic!("the generated schema does not compile: {e:#}"));
        (schemas, index)
    }

    #[test]
    fn the_committed_schema_is_the_generated_one() {
        let path = root().join(SCHEMA_PATH);
        if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
            std::fs::write(&path, text()).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == text(),
            "{SCHEMA_PATH} differs from the schema the code generates; regenerate it with\n  cargo run -q -- schema > {SCHEMA_PATH}\nor\n  UPDATE_GOLDEN=1 cargo test --lib schema"
        );
    }

    #[test]
    fn every_overlay_pointer_names_a_key() {
        let (_, unmatched) = generate_checked();
        assert!(
            unmatched.is_empty(),
            "no such key in the schema: {unmatched:?}"
        );
    }

    #[test]
    fn the_schema_follows_the_parser_types() {
        let s = generate();
        assert_eq!(s["$schema"], "http://json-schema.org/draft-07/schema#");
        // deny_unknown_fields, serde defaults and renames carry over.
        assert_eq!(s["additionalProperties"], false);
        let required: Vec<&str> = s["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for key in ["stack", "network", "load_balancer", "services"] {
            assert!(required.contains(&key), "{key} not required: {required:?}");
        }
        assert!(!required.contains(&"table"));
        assert_eq!(
            s["definitions"]["Service"]["additionalProperties"], false,
            "{s:#}"
        );
        assert!(s["definitions"]["Instance"]["properties"]["type"].is_object());
        assert_eq!(
            s["properties"]["services"]["additionalProperties"]["$ref"],
            "#/definitions/Service"
        );
    }

    #[test]
    fn example_stacks_validate_against_the_schema() {
        let (schemas, index) = validator();
        let mut checked = 0;
        let examples = std::fs::read_dir(root().join("stacks"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .chain([root().join("tests/golden/stack.yaml")]);
        for path in examples {
            if path.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                let doc = yaml(&path);
                if let Err(err) = schemas.validate(&doc, index) {
                    panic!("{} does not match the schema: {err}", path.display());
                }
                checked += 1;
            }
        }
        assert!(checked >= 3, "only {checked} example stacks found");
    }

    #[test]
    fn invalid_files_are_rejected_by_the_schema() {
        let (schemas, index) = validator();
        // The corpus files whose one mistake a schema can see on its own: unknown or
        // missing keys, wrong types, values out of range, patterns, enumerations.
        // (The others need the whole file: overlapping CIDRs, rules naming services…)
        for name in [
            "unknown-top-key.yaml",
            "unknown-service-key.yaml",
            "misspelled-section.yaml",
            "missing-field.yaml",
            "wrong-type-port.yaml",
            "bad-key-type.yaml",
            "cpu-target-out-of-range.yaml",
            "health-interval-out-of-range.yaml",
            "bad-stack-name.yaml",
            "long-stack-name.yaml",
            "bad-ami.yaml",
            "bad-az.yaml",
            "path-without-slash.yaml",
            "bucket-uppercase.yaml",
            "ingress-not-a-list.yaml",
            "not-a-boolean.yaml",
        ] {
            let path = root().join("tests/invalid").join(name);
            let doc = yaml(&path);
            assert!(
                schemas.validate(&doc, index).is_err(),
                "{} passes the schema",
                path.display()
            );
        }
        // The smallest change to a valid file: one unknown key.
        let mut doc = yaml(&root().join("stacks/minimal.yaml"));
        assert!(schemas.validate(&doc, index).is_ok());
        doc["services"]["web"]["scaling"]["maximum"] = json!(4);
        let err = schemas.validate(&doc, index).unwrap_err().to_string();
        assert!(err.contains("maximum"), "{err}");
    }
}
