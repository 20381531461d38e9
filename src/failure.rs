//! How a command ends when it does not succeed: `cli::run` returns one [`Failure`],
//! and [`report`] — pure — turns it into what the user sees (a line on stderr with
//! the cause chain, AWS's code and request id; with `--json` one document on stdout)
//! and the exit code: 1 for an error, 130 for Ctrl-C.

use crate::aws::Error;
use crate::spec::SpecErrors;
use serde_json::{Value, json};
use std::path::PathBuf;

/// Why a command did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// The stack file is invalid; nothing was sent to AWS.
    InvalidFile { file: PathBuf, errors: SpecErrors },
    /// A call, a wait, a check or the machine failed.
    Error(Error),
    /// Refused on purpose, before any write (data loss, services missing) or after
    /// the apply (the services do not answer): a code for scripts, a message for
    /// people, and the document the command's JSON output carries the error in.
    Refused {
        code: &'static str,
        message: String,
        doc: Option<Value>,
    },
    /// Steps failed or were stopped by Ctrl-C: each failure was reported as it
    /// happened, and the summary says what is left.
    Incomplete { interrupted: bool },
    /// A plan the command refuses: its output already says why.
    PlanRefused,
    /// Ctrl-C before anything was changed, or a second one during the apply.
    Interrupted(String),
    /// The answer at the prompt was not "yes".
    Declined,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Error(e)
    }
}

/// What to print and how to exit.
#[derive(Debug, PartialEq)]
pub struct Report {
    pub stderr: Option<String>,
    pub json: Option<Value>,
    pub code: u8,
}

/// The JSON document every `--json` command prints when it fails.
pub fn error_doc(code: &str, message: &str, extra: Option<Value>) -> Value {
    let mut error = json!({ "code": code, "message": message });
    if let (Some(map), Some(Value::Object(more))) = (error.as_object_mut(), extra) {
        map.extend(more);
    }
    json!({ "format_version": crate::render::JSON_SCHEMA_VERSION, "error": error })
}

/// The one rendering of a failure. `json`: the command was asked for `--json`.
pub fn report(f: &Failure, json: bool, verbose: bool) -> Report {
    let line = |m: &str| Some(format!("stack: {m}"));
    match f {
        Failure::InvalidFile { file, errors } => Report {
            stderr: Some(format!(
                "{errors}\nstack: {} has {} error(s); nothing was sent to AWS",
                file.display(),
                errors.0.len()
            )),
            json: json.then(|| {
                let located: Vec<Value> = errors
                    .0
                    .iter()
                    .map(|d| {
                        json!({
                            "file": d.file,
                            "line": d.line,
                            "column": d.column,
                            "message": d.message,
                        })
                    })
                    .collect();
                error_doc(
                    "InvalidStackFile",
                    &format!("{} has {} error(s)", file.display(), errors.0.len()),
                    Some(json!({ "diagnostics": located })),
                )
            }),
            code: 1,
        },
        Failure::Error(e) => {
            let message = e.to_string();
            Report {
                stderr: line(&if verbose { e.detailed() } else { e.to_string() }),
                json: json.then(|| error_doc(e.kind_code(), &message, Some(error_extra(e)))),
                code: if matches!(e, Error::Cancelled | Error::Interrupted { .. }) {
                    130
                } else {
                    1
                },
            }
        }
        Failure::Refused { code, message, doc } => Report {
            stderr: line(message),
            json: json.then(|| match doc {
                Some(doc) => {
                    let mut doc = doc.clone();
                    doc["error"] = json!({ "code": code, "message": message });
                    doc
                }
                None => error_doc(code, message, None),
            }),
            code: 1,
        },
        Failure::Incomplete { interrupted } => Report {
            stderr: None,
            json: None,
            code: if *interrupted { 130 } else { 1 },
        },
        Failure::PlanRefused => Report {
            stderr: None,
            json: None,
            code: 1,
        },
        Failure::Interrupted(m) => Report {
            stderr: Some(format!("\nstack: {m}")),
            json: json.then(|| error_doc("Interrupted", m, None)),
            code: 130,
        },
        Failure::Declined => Report {
            stderr: line("cancelled; nothing was changed"),
            json: json.then(|| error_doc("Declined", "cancelled; nothing was changed", None)),
            code: 1,
        },
    }
}

/// What a JSON error document says beyond code and message: the resource, AWS's
/// request id.
fn error_extra(e: &Error) -> Value {
    let mut extra = serde_json::Map::new();
    match e {
        Error::Aws { resource, .. }
        | Error::Refused { resource, .. }
        | Error::Timeout { resource, .. }
        | Error::Interrupted { resource, .. } => {
            extra.insert("resource".into(), json!(resource));
        }
        Error::Io { .. } | Error::Config(_) | Error::Cancelled => {}
    }
    if let Some(id) = e.request_id() {
        extra.insert("request_id".into(), json!(id));
    }
    if let Error::Aws {
        detail: Some(d), ..
    } = e
        && !d.causes.is_empty()
    {
        extra.insert("causes".into(), json!(d.causes));
    }
    Value::Object(extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_aws_error_names_code_resource_and_request_id() {
        let e = Error::Aws {
            action: "creating".into(),
            resource: "vpc.main".into(),
            code: "UnauthorizedOperation".into(),
            message: "You are not authorized".into(),
            detail: Some(Box::new(crate::aws::Detail {
                request_id: Some("7a62c49f-347e-4fc4-9331-6e8eEXAMPLE".into()),
                causes: Vec::new(),
            })),
        };
        let r = report(&Failure::Error(e), true, false);
        assert_eq!(r.code, 1);
        assert_eq!(
            r.stderr.as_deref(),
            Some(
                "stack: creating vpc.main: UnauthorizedOperation: You are not authorized (request id 7a62c49f-347e-4fc4-9331-6e8eEXAMPLE)"
            )
        );
        let doc = r.json.unwrap();
        assert_eq!(doc["error"]["code"], "UnauthorizedOperation");
        assert_eq!(doc["error"]["resource"], "vpc.main");
        assert_eq!(
            doc["error"]["request_id"],
            "7a62c49f-347e-4fc4-9331-6e8eEXAMPLE"
        );
    }

    /// A request that never got an answer names its root cause; `-v` adds every cause,
    /// and the JSON document always carries them.
    #[test]
    fn a_transport_failure_shows_its_causes_with_verbose() {
        let e = Error::Aws {
            action: "listing".into(),
            resource: "VPCs".into(),
            code: "ConnectionError".into(),
            message: "connection failed: Connection refused (os error 111)".into(),
            detail: Some(Box::new(crate::aws::Detail {
                request_id: None,
                causes: vec![
                    "dispatch failure".into(),
                    "io error".into(),
                    "Connection refused (os error 111)".into(),
                ],
            })),
        };
        let f = Failure::Error(e);
        let short = report(&f, false, false).stderr.unwrap();
        assert_eq!(
            short,
            "stack: listing VPCs: ConnectionError: connection failed: Connection refused (os error 111)"
        );
        let long = report(&f, false, true).stderr.unwrap();
        assert_eq!(
            long,
            format!(
                "{short}\n  caused by: dispatch failure\n  caused by: io error\n  caused by: Connection refused (os error 111)"
            )
        );
        let doc = report(&f, true, false).json.unwrap();
        assert_eq!(doc["error"]["causes"][1], "io error");
    }

    #[test]
    fn an_io_error_keeps_its_cause() {
        let e = Error::io("cannot read plan.json")(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "No such file or directory (os error 2)",
        ));
        assert!(std::error::Error::source(&e).is_some(), "the cause is kept");
        let r = report(&Failure::Error(e), false, false);
        assert_eq!(
            r.stderr.as_deref(),
            Some("stack: cannot read plan.json: No such file or directory (os error 2)")
        );
        assert_eq!(r.json, None);
    }

    #[test]
    fn exit_codes() {
        let code = |f: Failure| report(&f, false, false).code;
        assert_eq!(code(Failure::Incomplete { interrupted: false }), 1);
        assert_eq!(code(Failure::Incomplete { interrupted: true }), 130);
        assert_eq!(code(Failure::Interrupted("quitting".into())), 130);
        assert_eq!(code(Failure::Declined), 1);
        assert_eq!(code(Failure::PlanRefused), 1);
        assert_eq!(code(Failure::Error(Error::Config("x".into()))), 1);
    }

    #[test]
    fn a_refusal_goes_into_the_commands_own_document() {
        let f = Failure::Refused {
            code: "DataLoss",
            message: "would delete 3 items".into(),
            doc: Some(json!({ "applied": false, "changes": [] })),
        };
        let doc = report(&f, true, false).json.unwrap();
        assert_eq!(doc["applied"], false);
        assert_eq!(doc["error"]["code"], "DataLoss");
        assert_eq!(report(&f, false, false).json, None);
    }
}
