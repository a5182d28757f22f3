//! Measures limiter check latency: the in-memory backend, and Redis over
//! loopback (one EVALSHA per check). Run:
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --release -p portcullis --example limiter_latency
//! ```

use std::time::{Duration, Instant};

use portcullis::store::{Bucket, CounterStore, MemoryCounters, Quota, RedisCounters};

fn buckets(n: usize, run: u64) -> Vec<Bucket> {
    (0..n)
        .map(|i| Bucket {
            key: format!("bench:{run}:{i}"),
            quota: Quota {
                count: u32::MAX / 2,
                period: Duration::from_secs(3600),
            },
        })
        .collect()
}

fn report(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "{label:<34} n={:<7} mean={:>9.2?} p50={:>9.2?} p99={:>9.2?} p99.9={:>9.2?} max={:>9.2?}",
        samples.len(),
        mean,
        pct(0.50),
        pct(0.99),
        pct(0.999),
        samples[samples.len() - 1]
    );
}

async fn sample(limiter: &dyn CounterStore, b: &[Bucket], n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let d = limiter.check(b, None).await.expect("check");
        std::hint::black_box(d);
        out.push(t.elapsed());
    }
    out
}

#[tokio::main]
async fn main() {
    let run = std::process::id() as u64;
    let memory = MemoryCounters::new();
    for n in [1, 2] {
        let b = buckets(n, run);
        sample(&memory, &b, 10_000).await;
        let total = 1_000_000;
        let t = Instant::now();
        for _ in 0..total {
            std::hint::black_box(memory.check(&b, None).await.unwrap());
        }
        println!(
            "memory, {n} limit(s): {:.0} ns/check over {total} checks",
            t.elapsed().as_nanos() as f64 / total as f64
        );
    }
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("portcullis-bench:{run}:");
    let redis = RedisCounters::new(&url, &prefix, Duration::from_secs(1)).expect("redis url");
    for n in [1, 2] {
        let b = buckets(n, run);
        sample(&redis, &b, 1_000).await; // warm-up, script cached
        report(
            &format!("redis sequential, {n} limit(s)"),
            sample(&redis, &b, 10_000).await,
        );
    }
    // 64 concurrent callers sharing the one multiplexed connection.
    let b = buckets(2, run + 1);
    let redis = std::sync::Arc::new(redis);
    let t = Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (r, b) = (redis.clone(), b.clone());
            tokio::spawn(async move { sample(&*r, &b, 500).await })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let took = t.elapsed();
    println!(
        "redis 64 concurrent, 2 limits: {:.0} checks/s",
        all.len() as f64 / took.as_secs_f64()
    );
    report("redis 64 concurrent, 2 limits", all);
}
