//! The deploy benchmark: a new build rolled out to a generated 5-service stack through
//! the proxy at 50 ms per call, each group's instance refresh taking a scripted 4 s
//! (AWS's own time). It prints the wall time of that `up` against the refresh
//! durations: what the engine adds on top of AWS. `tests/bench.sh` runs it with its
//! output shown; the assertions only check that the deploy happened.

mod support;

use std::time::{Duration, Instant};
use support::*;

const SERVICES: usize = 5;
const REFRESH: Duration = Duration::from_secs(4);

fn generated(n: usize) -> String {
    let mut y = String::new();
    y.push_str("stack: bench\n");
    y.push_str("network: { cidr: 10.50.0.0/16, subnets: [ { az: a, cidr: 10.50.1.0/24 }, { az: b, cidr: 10.50.2.0/24 } ] }\n");
    y.push_str("load_balancer:\n  ingress: [0.0.0.0/0]\n  listener: { port: 80 }\n  default_service: s1\n  rules:\n");
    for i in 2..=n {
        y.push_str(&format!(
            "    - {{ path: \"/s{i}/*\", service: s{i}, priority: {i} }}\n"
        ));
    }
    y.push_str("services:\n");
    for i in 1..=n {
        y.push_str(&format!("  s{i}: {{ port: 8080, health: {{ path: /health }}, instance: {{ type: t3.micro, ami: al2023 }}, user_data: ../userdata/app.sh, scaling: {{ min: 1, max: 2, desired: 1, cpu_target: 50 }} }}\n"));
    }
    y.push_str("table: { name: t, partition_key: { name: id, type: S } }\n");
    y.push_str("bucket: { name: bench-builds, force_destroy: true }\n");
    y.push_str("app: { artifact: ../bin/stack-app }\n");
    y
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_benchmark_prints_the_engine_time_on_top_of_the_refreshes() {
    let moto = Moto::start();
    let aws = Proxy::with_faults(
        Some(moto.port),
        Faults {
            latency: Duration::from_millis(50),
            refresh: Some(RefreshScript {
                duration: Some(REFRESH),
                ..Default::default()
            }),
            ..Faults::real()
        },
    )
    .await;
    let w = Workdir::new();
    std::fs::write(w.path("stacks/bench.yaml"), generated(SERVICES)).unwrap();
    let file = w.file("stacks/bench.yaml");
    let start = Instant::now();
    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));
    let first = start.elapsed();

    std::fs::write(
        w.path("bin/stack-app"),
        elf_stand_in(X86_64, b"the next build"),
    )
    .unwrap();
    // What every run spends before its first write: discovery and the plan.
    let start = Instant::now();
    assert_eq!(
        stack(&aws.url(), &["plan", &file, "--detailed-exitcode"])
            .status
            .code(),
        Some(2)
    );
    let plan = start.elapsed();
    let mark = aws.calls.mark();
    // Real patience: the engine's own polling is part of what is measured.
    let start = Instant::now();
    let up = stack_command(&aws.url(), &["up", &file, "--yes"])
        .env("STACK_PATIENCE_SCALE", "1")
        .output()
        .unwrap();
    let deploy = start.elapsed();
    assert_ok(&up);
    assert_eq!(aws.refresh_starts().len(), SERVICES, "{}", text(&up));
    let calls = aws.calls.since(mark).len();

    let sum = REFRESH * SERVICES as u32;
    println!("deploy benchmark: {SERVICES} services, 50 ms per call, each refresh {REFRESH:?}");
    println!("  first up                  {:>8.2} s", first.as_secs_f64());
    println!(
        "  deploy (new build)        {:>8.2} s  ({calls} calls)",
        deploy.as_secs_f64()
    );
    println!(
        "  refreshes, summed         {:>8.2} s  (longest {:.2} s; they run in parallel)",
        sum.as_secs_f64(),
        REFRESH.as_secs_f64()
    );
    println!("  of which plan             {:>8.2} s", plan.as_secs_f64());
    println!(
        "  engine on top of longest  {:>8.2} s  (wall / sum = {:.2})",
        (deploy.saturating_sub(REFRESH)).as_secs_f64(),
        deploy.as_secs_f64() / sum.as_secs_f64()
    );
}
