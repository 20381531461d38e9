//! User-data templates: shell scripts with `{{ name }}` placeholders filled from the
//! stack's values. Unknown placeholders are rejected when the stack file is checked,
//! so a typo never reaches an instance as literal braces.

use std::collections::BTreeMap;

/// The placeholders a template may use.
pub const TEMPLATE_VARIABLES: &[&str] = &[
    "stack",
    "service",
    "region",
    "port",
    "table",
    "bucket",
    "artifact_bucket",
    "artifact_key",
    "artifact_sha256",
    "endpoint_url",
    "stress",
    "write_token_verifier",
];

#[derive(Debug)]
pub struct TemplateError {
    pub line: u64,
    pub column: u64,
    pub message: String,
}

/// A placeholder: 1-based line and column, the variable name, its byte range.
type Placeholder<'a> = (u64, u64, &'a str, std::ops::Range<usize>);

/// Finds each `{{ ... }}` in the template.
fn placeholders(text: &str) -> Vec<Result<Placeholder<'_>, TemplateError>> {
    let mut out = Vec::new();
    let mut rest = 0;
    while let Some(open) = text[rest..].find("{{") {
        let start = rest + open;
        let before = &text[..start];
        let line = before.matches('\n').count() as u64 + 1;
        let column = (start - before.rfind('\n').map_or(0, |i| i + 1)) as u64 + 1;
        match text[start + 2..].find("}}") {
            Some(close) => {
                let end = start + 2 + close + 2;
                let name = text[start + 2..start + 2 + close].trim();
                out.push(Ok((line, column, name, start..end)));
                rest = end;
            }
            None => {
                out.push(Err(TemplateError {
                    line,
                    column,
                    message: "`{{` is never closed with `}}`".into(),
                }));
                break;
            }
        }
    }
    out
}

/// Rejects unknown or unclosed placeholders.
pub fn check(text: &str) -> Result<(), TemplateError> {
    for p in placeholders(text) {
        let (line, column, name, _) = p?;
        if !TEMPLATE_VARIABLES.contains(&name) {
            return Err(TemplateError {
                line,
                column,
                message: format!(
                    "unknown placeholder `{{{{ {name} }}}}` (known: {})",
                    TEMPLATE_VARIABLES.join(", ")
                ),
            });
        }
    }
    Ok(())
}

/// The placeholders a checked template uses, in order of first use.
pub fn used(text: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for (_, _, name, _) in placeholders(text).into_iter().flatten() {
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// Fills a checked template. A variable without a value renders empty.
pub fn render(text: &str, vars: &BTreeMap<&str, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (_, _, name, range) in placeholders(text).into_iter().flatten() {
        out.push_str(&text[last..range.start]);
        out.push_str(vars.get(name).map_or("", String::as_str));
        last = range.end;
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_known_placeholders_and_rejects_unknown() {
        let vars = BTreeMap::from([("port", "8080".to_string()), ("stack", "demo".into())]);
        assert_eq!(
            render("PORT={{port}} S={{ stack }} T={{table}}", &vars),
            "PORT=8080 S=demo T="
        );
        let err = check("#!/bin/sh\necho {{ nope }}\n").unwrap_err();
        assert_eq!((err.line, err.column), (2, 6));
        assert!(err.message.contains("unknown placeholder `{{ nope }}`"));
        assert!(
            check("echo {{ port")
                .unwrap_err()
                .message
                .contains("never closed")
        );
    }
}
