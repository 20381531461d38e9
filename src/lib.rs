//! `stack`: one YAML file to a running AWS web stack, and back.
//!
//! # Layout
//! - [`spec`]: the stack file, parsed and checked (every error located) — no AWS here.
//! - [`model`]: addresses, attribute values, ownership tags, typed references, and the
//!   one list of kinds (`kinds!`), which generates `Kind` and the dispatch to each kind.
//! - [`desired`]: a checked spec to the resources it wants.
//! - [`aws`]: clients, error codes, retry and wait helpers, the service probe, call counts.
//! - [`resources`]: one file per resource kind, its whole life on its attribute struct
//!   (`impl KindOps for VpcAttrs`): desired form, discovery by tag, create/update/delete/read;
//!   beside them `conflicts` (names someone else holds, found before any write) and
//!   `roll` (an Auto Scaling group's instance refresh, waited for).
//! - [`artifact`]: the app binary a stack ships, built for Amazon Linux 2023 or prebuilt.
//! - [`engine`]: connect, probe, discover and diff — what every command starts with.
//! - [`plan`]: the differ and the plan, pure data: replacements created first where
//!   the old resource can stay meanwhile, the data a change destroys, notes for people.
//! - [`apply`]: the dependency-graph executor; emits events, never prints, and runs each
//!   step through a [`apply::Provider`] (AWS: [`resources::Ctx`]; tests: in memory).
//! - [`status`]: `stack status`, the live summary of a stack (read-only).
//! - [`schema`]: the stack file's JSON Schema, derived from the [`spec`] parser types.
//! - [`render`]: plan and status as text and JSON, progress bars or lines.
//! - [`local`]: `up --local`: instances as processes behind HAProxy, target tracking.
//! - [`lock`]: the per-stack lock in AWS that `up` and `down` hold, and their Ctrl-C handling.
//! - [`verify`]: after a roll, the new build answering through the load balancer.
//! - [`failure`]: how a command ends when it does not succeed, and its one rendering
//!   (message with cause chain, AWS code and request id; JSON document; exit code).
//! - [`cli`]: the commands; each returns `Done` or a [`failure::Failure`], rendered once.

pub mod apply;
pub mod artifact;
pub mod aws;
pub mod cli;
pub mod desired;
pub mod engine;
pub mod failure;
pub mod local;
pub mod lock;
pub mod model;
pub mod plan;
pub mod render;
pub mod resources;
pub mod schema;
pub mod spec;
pub mod status;
pub mod verify;
