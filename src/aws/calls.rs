//! Counts AWS API calls per service and operation (once per call, not per retry), for
//! `--stats`, the JSON output and the benchmarks.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The calls of one run, by (service, operation): shared by every client the run
/// creates, owned by the command (no global).
#[derive(Debug, Clone, Default)]
pub struct Calls(Arc<Mutex<BTreeMap<(String, String), u64>>>);

impl Calls {
    /// Calls so far: service → operation → count.
    pub fn snapshot(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        let calls = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for ((service, op), n) in calls.iter() {
            out.entry(service.clone())
                .or_default()
                .insert(op.clone(), *n);
        }
        out
    }

    /// The number of write calls so far.
    pub fn writes(&self) -> u64 {
        self.snapshot()
            .values()
            .flat_map(|ops| ops.iter())
            .filter(|(op, _)| is_write(op))
            .map(|(_, n)| n)
            .sum()
    }
}

/// The SDK interceptor that counts into a [`Calls`].
#[derive(Debug, Clone)]
pub struct Counter(pub Calls);

impl Intercept for Counter {
    fn name(&self) -> &'static str {
        "stack-call-counter"
    }

    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(m) = cfg.load::<Metadata>() {
            let mut calls = (self.0).0.lock().unwrap_or_else(|e| e.into_inner());
            *calls
                .entry((m.service().to_string(), m.name().to_string()))
                .or_default() += 1;
        }
        Ok(())
    }
}

/// Whether an operation changes anything (reads are Describe/List/Get/Head/Scan/Query).
pub fn is_write(operation: &str) -> bool {
    !["Describe", "List", "Get", "Head", "Scan", "Query"]
        .iter()
        .any(|p| operation.starts_with(p))
}
