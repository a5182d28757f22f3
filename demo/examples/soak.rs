//! The soak: a long mixed load against a running demo, then a check that
//! every acknowledged mutation is in the database exactly once. Run by
//! `scripts/soak`, which builds the release demo, seeds the bench workload
//! (`demo seed --bench`: 10 users, 1,000 projects, 100 sessions), starts the
//! server and hands this driver its address, PID and database.
//!
//! Load (closed loop, `SOAK_WORKERS` workers, no think time), per request a
//! weighted pick of:
//! * read     — `GET /projects` or `GET /projects/{id}` as a signed-in user;
//! * rename   — `projects.rename` of one of the worker's own projects;
//! * comment  — `comments.post` with a unique body (20/min per user limit);
//! * login    — `auth.sign_in` with the right password (argon2; per-IP and
//!   per-account limits);
//! * contact  — `contact.send` with a unique message (5/min per IP limit).
//!
//! What it reports: outcomes by operation, status and error code (429s of
//! the limited actions are expected; 5xx and transport errors are not),
//! latency percentiles per operation, and the server's RSS sampled every
//! `SOAK_SAMPLE_SECS` seconds.
//!
//! What it checks afterwards, on the database itself:
//! * every comment and contact message the server acknowledged (2xx) is
//!   stored exactly once, and nothing it refused is stored at all;
//! * every project ends with the name of its last acknowledged rename (each
//!   project is renamed by exactly one worker, one request at a time, so
//!   the last acknowledgement is the final state).
//!
//! Exit status 1 if a check fails or any 5xx / transport error happened.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use demo::actions::{auth, comments, contact, projects};
use portcullis::AnyActionRef;
use portcullis::wire;
use rand::{Rng, SeedableRng};
use sqlx::Row;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Read,
    Rename,
    Comment,
    Login,
    Contact,
}

/// Percent of requests per operation.
const MIX: [(Op, u32); 5] = [
    (Op::Read, 45),
    (Op::Rename, 35),
    (Op::Comment, 10),
    (Op::Login, 3),
    (Op::Contact, 7),
];

struct Session {
    cookie: String,
    user: String,
    first_project: i64,
}

struct Config {
    base: String,
    origin: String,
    seconds: u64,
    workers: usize,
    sample_secs: u64,
    pid: u32,
    database_url: String,
    sessions: Vec<Session>,
    ids: HashMap<String, String>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Config {
    fn from_env() -> Result<Config, String> {
        let need = |n: &str| env(n).ok_or_else(|| format!("{n} is not set (run scripts/soak)"));
        let base = need("SOAK_BASE")?;
        let sessions = std::fs::read_to_string(need("SOAK_SESSIONS")?)
            .map_err(|e| format!("SOAK_SESSIONS: {e}"))?
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                Session {
                    cookie: f[0].to_owned(),
                    user: f[1].to_owned(),
                    first_project: f[2].parse().unwrap_or(0),
                }
            })
            .collect::<Vec<_>>();
        let manifest: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(need("SOAK_MANIFEST")?)
                .map_err(|e| format!("SOAK_MANIFEST: {e}"))?,
        )
        .map_err(|e| format!("SOAK_MANIFEST: {e}"))?;
        let ids = manifest["actions"]
            .as_array()
            .ok_or("manifest has no actions")?
            .iter()
            .filter_map(|a| Some((a["name"].as_str()?.to_owned(), a["id"].as_str()?.to_owned())))
            .collect();
        let workers: usize = env("SOAK_WORKERS")
            .and_then(|v| v.parse().ok())
            .unwrap_or(16);
        if sessions.len() < workers || workers > 100 {
            return Err(format!(
                "{workers} workers need as many seeded sessions (have {}), at most 100",
                sessions.len()
            ));
        }
        Ok(Config {
            origin: base.clone(),
            base,
            seconds: env("SOAK_SECONDS")
                .and_then(|v| v.parse().ok())
                .unwrap_or(600),
            workers,
            sample_secs: env("SOAK_SAMPLE_SECS")
                .and_then(|v| v.parse().ok())
                .unwrap_or(30),
            pid: need("SOAK_PID")?.parse().map_err(|_| "SOAK_PID")?,
            database_url: need("DATABASE_URL")?,
            sessions,
            ids,
        })
    }

    fn action(&self, action: AnyActionRef) -> String {
        format!(
            "{}{}{}",
            self.base,
            wire::ACTION_PREFIX,
            self.ids[action.name()]
        )
    }
}

/// What one worker saw.
#[derive(Default)]
struct Log {
    /// (operation, outcome) → count; outcome is `ok` or `<status> <code>`.
    outcomes: BTreeMap<(Op, String), u64>,
    latencies: BTreeMap<Op, Vec<Duration>>,
    /// Comment bodies / contact messages sent, and whether acknowledged.
    comments: Vec<(String, Ack)>,
    contacts: Vec<(String, Ack)>,
    /// Per project, the renames sent in order.
    renames: HashMap<i64, Vec<(String, Ack)>>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ack {
    /// 2xx: the server said it was done.
    Yes,
    /// A 4xx answer: the server said it was not done.
    Refused,
    /// 5xx or no answer: either may be true.
    Unknown,
}

struct Answer {
    ack: Ack,
    outcome: String,
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    match req.send().await {
        Err(e) => Answer {
            ack: Ack::Unknown,
            outcome: format!(
                "transport {}",
                if e.is_timeout() { "timeout" } else { "error" }
            ),
        },
        Ok(resp) => {
            let status = resp.status();
            if status.is_success() || status.is_redirection() {
                let _ = resp.bytes().await;
                return Answer {
                    ack: Ack::Yes,
                    outcome: "ok".into(),
                };
            }
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            let code = body["error"]["code"].as_str().unwrap_or("-").to_owned();
            Answer {
                ack: if status.is_server_error() {
                    Ack::Unknown
                } else {
                    Ack::Refused
                },
                outcome: format!("{} {code}", status.as_u16()),
            }
        }
    }
}

async fn worker(cfg: Arc<Config>, w: usize, deadline: Instant) -> Log {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let session = &cfg.sessions[w];
    // The user's projects are first, first+10, …, first+990; workers sharing
    // a user take disjoint tenths of them, so each project has one writer.
    let share = (w / 10) as i64;
    let projects: Vec<i64> = (0..100i64)
        .filter(|j| j % 10 == share)
        .map(|j| session.first_project + 10 * j)
        .collect();
    let post = |action: AnyActionRef, form: &[(&str, String)]| {
        client
            .post(cfg.action(action))
            .header("origin", &cfg.origin)
            .header("sec-fetch-site", "same-origin")
            .header("accept", "application/json")
            .form(form)
    };
    // An action on one of the worker's projects, as its signed-in user.
    let signed_in = |action: AnyActionRef, project: i64, (field, text): (&str, &str)| {
        post(
            action,
            &[("projectId", project.to_string()), (field, text.to_owned())],
        )
        .header("cookie", &session.cookie)
    };
    let mut log = Log::default();
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut seq = 0u64;
    while Instant::now() < deadline {
        seq += 1;
        let roll = rng.gen_range(0..100);
        let mut acc = 0;
        let op = MIX
            .iter()
            .find(|(_, p)| {
                acc += p;
                roll < acc
            })
            .map(|(op, _)| *op)
            .unwrap_or(Op::Read);
        let project = projects[rng.gen_range(0..projects.len())];
        let started = Instant::now();
        let answer = match op {
            Op::Read => {
                let path = if rng.gen_bool(0.5) {
                    "/projects".to_owned()
                } else {
                    format!("/projects/{project}")
                };
                send(
                    client
                        .get(format!("{}{path}", cfg.base))
                        .header("cookie", &session.cookie),
                )
                .await
            }
            Op::Rename => {
                let name = format!("soak w{w} #{seq}");
                let a = send(signed_in(projects::RENAME.into(), project, ("name", &name))).await;
                log.renames.entry(project).or_default().push((name, a.ack));
                a
            }
            Op::Comment => {
                let body = format!("soak comment w{w} #{seq}");
                let a = send(signed_in(comments::POST.into(), project, ("body", &body))).await;
                log.comments.push((body, a.ack));
                a
            }
            Op::Login => {
                send(post(
                    auth::SIGN_IN.into(),
                    &[
                        ("email", format!("{}@bench.local", session.user)),
                        ("password", demo::seed::SAMPLE_PASSWORD.to_owned()),
                        // The form's empty honeypot (a missing one is refused).
                        (wire::field::HONEYPOT, String::new()),
                    ],
                ))
                .await
            }
            Op::Contact => {
                let message = format!("soak contact message w{w} #{seq}");
                let a = send(post(
                    contact::SEND.into(),
                    &[
                        ("name", format!("Soak {w}")),
                        ("email", format!("soak{w}@example.com")),
                        ("message", message.clone()),
                        (wire::field::HONEYPOT, String::new()),
                    ],
                ))
                .await;
                log.contacts.push((message, a.ack));
                a
            }
        };
        log.latencies.entry(op).or_default().push(started.elapsed());
        *log.outcomes.entry((op, answer.outcome)).or_default() += 1;
    }
    log
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// How many rows hold each of `texts` in `column` of `table`.
async fn stored_counts(
    pool: &sqlx::AnyPool,
    table: &str,
    column: &str,
    prefix: &str,
) -> Result<HashMap<String, i64>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {column}, COUNT(*) AS n FROM {table} WHERE {column} LIKE $1 GROUP BY {column}"
    ))
    .bind(format!("{prefix}%"))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
        .collect())
}

/// Checks sent texts against the stored ones; returns problems found.
fn check_exactly_once(
    what: &str,
    sent: &[(String, Ack)],
    stored: &HashMap<String, i64>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (text, ack) in sent {
        let n = stored.get(text).copied().unwrap_or(0);
        match ack {
            Ack::Yes if n != 1 => {
                problems.push(format!("{what} acknowledged but stored {n}×: {text}"))
            }
            Ack::Refused if n != 0 => {
                problems.push(format!("{what} refused but stored {n}×: {text}"))
            }
            Ack::Unknown if n > 1 => problems.push(format!("{what} stored {n}×: {text}")),
            _ => {}
        }
    }
    let known: std::collections::HashSet<&str> = sent.iter().map(|(t, _)| t.as_str()).collect();
    for text in stored.keys() {
        if !known.contains(text.as_str()) {
            problems.push(format!("{what} stored but never sent: {text}"));
        }
    }
    problems
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cfg = Arc::new(Config::from_env()?);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(cfg.seconds);
    let samples = Arc::new(Mutex::new(Vec::<(u64, u64)>::new()));
    let sampler = {
        let (samples, pid, every) = (samples.clone(), cfg.pid, cfg.sample_secs);
        tokio::spawn(async move {
            loop {
                if let Some(kib) = rss_kib(pid) {
                    samples
                        .lock()
                        .expect("samples")
                        .push((started.elapsed().as_secs(), kib));
                }
                if Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(every)).await;
            }
        })
    };
    eprintln!(
        "[soak] {} workers for {} s against {}",
        cfg.workers, cfg.seconds, cfg.base
    );
    let handles: Vec<_> = (0..cfg.workers)
        .map(|w| tokio::spawn(worker(cfg.clone(), w, deadline)))
        .collect();
    let mut total = Log::default();
    for h in handles {
        let log = h.await?;
        for (k, n) in log.outcomes {
            *total.outcomes.entry(k).or_default() += n;
        }
        for (op, l) in log.latencies {
            total.latencies.entry(op).or_default().extend(l);
        }
        total.comments.extend(log.comments);
        total.contacts.extend(log.contacts);
        for (p, r) in log.renames {
            total.renames.entry(p).or_default().extend(r);
        }
    }
    sampler.await?;
    // One sample after the load, once the server is idle again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = rss_kib(cfg.pid);
    let elapsed = started.elapsed().as_secs_f64();

    // ---- report ---------------------------------------------------------
    let requests: u64 = total.outcomes.values().sum();
    println!(
        "## Soak: {} workers, {:.0} s, {requests} requests ({:.0} req/s)\n",
        cfg.workers,
        elapsed,
        requests as f64 / elapsed
    );
    println!("| operation | outcome | count |\n|---|---|---:|");
    for ((op, outcome), n) in &total.outcomes {
        println!("| {op:?} | {outcome} | {n} |");
    }
    println!("\n| operation | requests | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|");
    for (op, l) in &mut total.latencies {
        l.sort();
        println!(
            "| {op:?} | {} | {:.2} | {:.2} | {:.2} |",
            l.len(),
            percentile(l, 0.5),
            percentile(l, 0.99),
            percentile(l, 1.0)
        );
    }
    let samples = samples.lock().expect("samples").clone();
    println!("\n| t (s) | RSS MiB |\n|---:|---:|");
    for (t, kib) in &samples {
        println!("| {t} | {:.1} |", *kib as f64 / 1024.0);
    }
    if let Some(kib) = idle_rss {
        println!("| idle after | {:.1} |", kib as f64 / 1024.0);
    }
    // Trend: the mean of the last third of the samples against the middle
    // third (the first third is warm-up: caches fill, pools open).
    if samples.len() >= 6 {
        let third = samples.len() / 3;
        let mean = |s: &[(u64, u64)]| s.iter().map(|x| x.1 as f64).sum::<f64>() / s.len() as f64;
        let middle = mean(&samples[third..2 * third]);
        let last = mean(&samples[2 * third..]);
        println!(
            "\nRSS trend: middle third {:.1} MiB → last third {:.1} MiB ({:+.1} %)",
            middle / 1024.0,
            last / 1024.0,
            (last / middle - 1.0) * 100.0
        );
    }

    // ---- exactly once ---------------------------------------------------
    let pool = demo::db::Db::connect(&cfg.database_url).await?.pool;
    let mut problems = Vec::new();
    let comments = stored_counts(&pool, "comments", "body", "soak comment ").await?;
    problems.extend(check_exactly_once("comment", &total.comments, &comments));
    let contacts = stored_counts(&pool, "contact_messages", "message", "soak contact ").await?;
    problems.extend(check_exactly_once(
        "contact message",
        &total.contacts,
        &contacts,
    ));
    let mut renamed = 0;
    for (project, sent) in &total.renames {
        let name: String = sqlx::query_scalar("SELECT name FROM projects WHERE id = $1")
            .bind(project)
            .fetch_one(&pool)
            .await?;
        let last_acked = sent.iter().rposition(|(_, a)| *a == Ack::Yes);
        let Some(i) = last_acked else { continue };
        renamed += 1;
        // A later attempt without an answer may or may not have landed.
        let acceptable: Vec<&str> = std::iter::once(sent[i].0.as_str())
            .chain(
                sent[i + 1..]
                    .iter()
                    .filter(|(_, a)| *a == Ack::Unknown)
                    .map(|(n, _)| n.as_str()),
            )
            .collect();
        if !acceptable.contains(&name.as_str()) {
            problems.push(format!(
                "project {project}: stored name {name:?}, last acknowledged {:?}",
                sent[i].0
            ));
        }
    }
    let acked = |s: &[(String, Ack)]| s.iter().filter(|(_, a)| *a == Ack::Yes).count();
    println!(
        "\nExactly-once check: {} acknowledged comments, {} acknowledged contact messages, \
         {renamed} projects' final names against their last acknowledged rename: {}",
        acked(&total.comments),
        acked(&total.contacts),
        if problems.is_empty() {
            "all as acknowledged".to_owned()
        } else {
            format!("{} problems", problems.len())
        }
    );
    for p in problems.iter().take(20) {
        println!("- {p}");
    }
    let failures: u64 = total
        .outcomes
        .iter()
        .filter(|((_, o), _)| o.starts_with('5') || o.starts_with("transport"))
        .map(|(_, n)| n)
        .sum();
    println!("Server errors (5xx) and transport errors: {failures}");
    if !problems.is_empty() || failures > 0 {
        std::process::exit(1);
    }
    Ok(())
}
