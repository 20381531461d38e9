//! The local load balancer benchmark: requests per second and p50/p99 latency through
//! HAProxy (`up --local`) to 2 and to 4 local instances, for the cached employee list
//! and `/info`, beside one instance hit directly: HAProxy's overhead as a ratio.
//! `tests/bench.sh` runs it with its output shown; the assertions only check that the
//! requests were answered. Client, HAProxy, the instances and moto share this
//! machine's cores: compare the rows, not the absolute numbers.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};
use support::local::*;
use support::*;

const CONNECTIONS: usize = 16;
const SECONDS: u64 = 4;

/// Keep-alive GETs of `path` on `port` from `CONNECTIONS` threads for `SECONDS`:
/// (requests per second, p50 ms, p99 ms, non-200 answers).
fn load(port: u16, path: &str) -> (f64, f64, f64, usize) {
    let until = Instant::now() + Duration::from_secs(SECONDS);
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let path = path.to_string();
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut bad = 0;
                let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                let req = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n");
                while Instant::now() < until {
                    let t = Instant::now();
                    w.write_all(req.as_bytes()).unwrap();
                    let mut status = String::new();
                    r.read_line(&mut status).unwrap();
                    let mut length = 0usize;
                    loop {
                        let mut h = String::new();
                        r.read_line(&mut h).unwrap();
                        if h == "\r\n" || h.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            length = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0u8; length];
                    r.read_exact(&mut body).unwrap();
                    lat.push(t.elapsed().as_micros() as u32);
                    if !status.contains(" 200 ") {
                        bad += 1;
                    }
                }
                (lat, bad)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut bad = 0;
    for w in workers {
        let (l, b) = w.join().unwrap();
        all.extend(l);
        bad += b;
    }
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    (all.len() as f64 / SECONDS as f64, pct(0.50), pct(0.99), bad)
}

#[tokio::test(flavor = "multi_thread")]
async fn local_load_balancer_benchmark_prints_haproxy_overhead() {
    let moto = Moto::start();
    let w = Workdir::new();
    let local = LocalRun::new(&moto, &w);
    // Fixed sizes: the benchmark's own load must not make the group scale.
    let scaling = "scaling: { min: 2, max: 6, desired: 2, cpu_target: 50 }";
    w.edit(
        "stacks/web.yaml",
        scaling,
        "scaling: { min: 2, max: 2, desired: 2, cpu_target: 50 }",
    );
    assert_ok(&local.run(&[
        "up",
        &local.file,
        "--yes",
        "--local",
        "--ready-timeout",
        "240",
    ]));
    let token = String::from_utf8(local.run(&["token", &local.file]).stdout).unwrap();
    let bearer = format!("Bearer {}", token.trim());
    for i in 0..20 {
        let (code, _, body) = http(
            "POST",
            &format!("{}/api/employees", local.base()),
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
            ],
            &format!(
                r#"{{"full_name":"Employee {i:02}","job_title":"Engineer","location":"Seattle"}}"#
            ),
        );
        assert_eq!(code, 201, "{body}");
    }
    println!(
        "local load balancer benchmark: {CONNECTIONS} keep-alive connections, {SECONDS} s per row"
    );
    println!(
        "  {:<28} {:<16} {:>9} {:>8} {:>8} {:>10}",
        "target", "path", "req/s", "p50 ms", "p99 ms", "vs direct"
    );
    for size in [2, 4] {
        if size == 4 {
            w.edit(
                "stacks/web.yaml",
                "scaling: { min: 2, max: 2, desired: 2, cpu_target: 50 }",
                "scaling: { min: 4, max: 4, desired: 4, cpu_target: 50 }",
            );
            assert_ok(&local.run(&[
                "up",
                &local.file,
                "--yes",
                "--local",
                "--ready-timeout",
                "240",
            ]));
        }
        let s = local.wait_for("every web instance up in HAProxy", 240, |s| {
            running(s, "web").len() == size
                && s["backends"]["directory-web"]
                    .as_object()
                    .is_some_and(|b| b.values().filter(|v| *v == "UP").count() == size)
        });
        let direct = s["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["service"] == "web" && i["state"] == "running")
            .and_then(|i| i["port"].as_u64())
            .unwrap() as u16;
        for path in ["/api/employees", "/info"] {
            // Warm the caches behind both before measuring.
            for _ in 0..(2 * size) {
                http("GET", &format!("{}{path}", local.base()), &[], "");
            }
            let (d_rps, d50, d99, d_bad) = load(direct, path);
            let (h_rps, h50, h99, h_bad) = load(local.http_port, path);
            assert_eq!((d_bad, h_bad), (0, 0), "every request answered 200");
            println!(
                "  {:<28} {:<16} {:>9.0} {:>8.2} {:>8.2} {:>10}",
                "one instance, direct", path, d_rps, d50, d99, "1.00"
            );
            println!(
                "  {:<28} {:<16} {:>9.0} {:>8.2} {:>8.2} {:>10.2}",
                format!("HAProxy → {size} instances"),
                path,
                h_rps,
                h50,
                h99,
                h_rps / d_rps
            );
        }
    }
    assert_ok(&local.run(&["down", &local.file, "--yes", "--force", "--local"]));
}
