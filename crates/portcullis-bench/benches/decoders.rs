//! Hostile-input cost: decoder time per byte for the worst inputs an
//! anonymous caller can send, across sizes. The point is the shape: cost per
//! byte stays flat (linear) as inputs grow, and once a cap is hit the total
//! cost stops growing at all (the decoder refuses at the cap).
//!
//! ```text
//! cargo bench -p portcullis-bench --bench decoders
//! scripts/bench-decoders-table     # ns/byte table from target/criterion
//! ```

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method};
use portcullis::__private::body::{self, BodyKind, BodyLimits};
use portcullis::__private::input::{self, InputShape, Opening};
use portcullis::__private::seal::{Binding, Sealer};
use portcullis::security::OriginPolicy;
use portcullis::security::TrustedProxies;
use portcullis::security::{KeyRing, MasterSecret};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Input {
    name: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

fn opening() -> Opening {
    let keys = KeyRing::new(&MasterSecret::from_bytes(vec![1; 32]).unwrap(), None);
    Opening::new(Arc::new(Sealer::new(&keys)), "bench", Binding::Anonymous, 0)
}

/// Default caps, and caps lifted to "anything below the 1 MiB body cap"
/// (to show the parser's own per-byte cost when no count cap stops it).
fn caps() -> [(&'static str, BodyLimits); 2] {
    let uncapped = BodyLimits {
        max_fields: usize::MAX,
        max_parts: usize::MAX,
        ..BodyLimits::default()
    };
    [("capped", BodyLimits::default()), ("uncapped", uncapped)]
}

fn run(kind: &BodyKind, body: &Bytes, shape: &InputShape, limits: &BodyLimits, opening: &Opening) {
    let r = futures::executor::block_on(input::decode::<Input>(
        kind,
        input::Payload::Bytes(body.clone()),
        shape,
        limits,
        opening,
    ));
    let _ = black_box(r);
}

fn urlencoded(c: &mut Criterion) {
    let shape = InputShape::of::<Input>().unwrap();
    let opening = opening();
    let mut g = c.benchmark_group("urlencoded_fields");
    for n in [100usize, 1_000, 10_000, 80_000] {
        let body = Bytes::from("tags=abcdefgh&".repeat(n));
        g.throughput(Throughput::Bytes(body.len() as u64));
        for (label, limits) in caps() {
            g.bench_with_input(BenchmarkId::new(label, n), &body, |b, body| {
                b.iter(|| run(&BodyKind::UrlEncoded, body, &shape, &limits, &opening))
            });
        }
    }
    g.finish();
}

fn multipart(c: &mut Criterion) {
    let shape = InputShape::of::<Input>().unwrap();
    let opening = opening();
    let kind = BodyKind::Multipart {
        boundary: "XX".into(),
    };
    let part = "--XX\r\nContent-Disposition: form-data; name=\"tags\"\r\n\r\nabcdefgh\r\n";
    let mut g = c.benchmark_group("multipart_parts");
    for n in [16usize, 64, 1_000, 10_000] {
        let body = Bytes::from(format!("{}--XX--\r\n", part.repeat(n)));
        g.throughput(Throughput::Bytes(body.len() as u64));
        for (label, limits) in caps() {
            g.bench_with_input(BenchmarkId::new(label, n), &body, |b, body| {
                b.iter(|| run(&kind, body, &shape, &limits, &opening))
            });
        }
    }
    g.finish();
}

fn json(c: &mut Criterion) {
    let shape = InputShape::of::<Input>().unwrap();
    let opening = opening();
    let limits = BodyLimits::default();
    let mut g = c.benchmark_group("json_nested");
    // `[[[[…` to the brim: refused at depth 33 whatever the size.
    for n in [1_000usize, 10_000, 100_000, 1_000_000] {
        let body = Bytes::from("[".repeat(n));
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::new("deep_decode", n), &body, |b, body| {
            b.iter(|| run(&BodyKind::Json, body, &shape, &limits, &opening))
        });
    }
    // `{"tags":[[],[],…]}`: legal depth, so the depth check scans every byte.
    for n in [1_000usize, 10_000, 100_000, 400_000] {
        let body = Bytes::from(format!("{{\"tags\":[{}[]]}}", "[],".repeat(n)));
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::new("depth_check_scan", n), &body, |b, body| {
            b.iter(|| black_box(input::check_json_depth(body, limits.max_depth)))
        });
        g.bench_with_input(BenchmarkId::new("wide_decode", n), &body, |b, body| {
            b.iter(|| run(&BodyKind::Json, body, &shape, &limits, &opening))
        });
    }
    g.finish();
}

fn headers(c: &mut Criterion) {
    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let policy = OriginPolicy::new(["https://**.example.com"], false).unwrap();
    let proxies = TrustedProxies::parse(["127.0.0.0/8"]).unwrap();
    let mut g = c.benchmark_group("header_lines");
    // hyper refuses a request head above its buffer (~400 KiB) with 431.
    for n in [64usize, 1_024, 8_192, 65_536] {
        let mut ct = HeaderMap::new();
        let value = format!("multipart/form-data; boundary={}", "a".repeat(n));
        ct.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_str(&value).unwrap(),
        );
        ct.insert(
            http::header::CONTENT_LENGTH,
            HeaderValue::from_str(&"9".repeat(n)).unwrap(),
        );
        g.throughput(Throughput::Bytes((value.len() + n) as u64));
        g.bench_with_input(BenchmarkId::new("content_type_length", n), &ct, |b, h| {
            b.iter(|| {
                black_box(BodyKind::from_headers(h).ok());
                black_box(body::check_declared_length(h, 1 << 20).ok());
            })
        });
        let mut o = HeaderMap::new();
        let host = format!("{}.example.com", "a.".repeat(n / 2));
        o.insert(
            http::header::ORIGIN,
            HeaderValue::from_str(&format!("https://{host}")).unwrap(),
        );
        o.insert(http::header::HOST, HeaderValue::from_str(&host).unwrap());
        o.insert(
            "x-forwarded-for",
            HeaderValue::from_str(&"10.0.0.1, ".repeat(n / 10)).unwrap(),
        );
        o.insert(
            "forwarded",
            HeaderValue::from_str(&format!("for=1.2.3.4;host={host};proto=https")).unwrap(),
        );
        let bytes: usize = o.values().map(|v| v.len()).sum();
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_with_input(BenchmarkId::new("origin_proxy", n), &o, |b, h| {
            b.iter(|| {
                black_box(policy.check(&Method::POST, h, PEER, &proxies).ok());
                black_box(proxies.client_ip(PEER, h));
            })
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1200))
}

criterion_group! { name = benches; config = config(); targets = urlencoded, multipart, json, headers }
criterion_main!(benches);
