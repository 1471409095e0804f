//! `cargo xtask bench bot`: the webhook front door under load.
//!
//! The server (the `kfops-bot` library's router over a SQLite store) runs in
//! its own process (`xtask bench-bot-server`) so its peak memory is its own.
//! The load generator posts signed, recorded GitHub `issue_comment`
//! deliveries (half command comments, half ordinary comments) over
//! keep-alive loopback connections:
//!
//! * **open loop** at a fixed rate: every request has a scheduled send time
//!   and its latency is measured from that time, so a stalled server is not
//!   hidden by the generator waiting (no coordinated omission);
//! * **closed loop**: every connection sends as fast as answers come back,
//!   for the sustained rate.
//!
//! The anchor, measured in the same run, is the raw durable-insert rate of the
//! store (`Store::accept` in a loop, one fsync'd transaction each): the
//! front door cannot accept commands faster than that.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use kfops_bot::Store;
use kfops_core::Command;
use kfops_core::scm::{ChatOpsEvent, CommentId, PrRef, RepoRef};
use kfops_scm::signature::SignatureVerifier;

/// The webhook secret shared by the generator and the server under test.
pub const SECRET: &str = "kfops-bench-secret";
/// The repository the recorded deliveries come from (allowlisted by the server).
pub const REPO: &str = "Codertocat/Hello-World";

/// Everything the bot benchmark measured.
#[derive(Debug, Clone)]
pub struct BotBenchResult {
    /// Sequential durable inserts per second into a fresh store (anchor).
    pub insert_rate: f64,
    /// Target rate of the open-loop phase.
    pub open_rate: u32,
    /// Seconds of the open-loop phase.
    pub open_secs: u32,
    /// Open-loop latencies from scheduled send to full response (sorted).
    pub open_latencies: Vec<Duration>,
    /// Closed-loop webhooks per second.
    pub sustained_rate: f64,
    /// Connections used.
    pub connections: usize,
    /// Command deliveries answered 202.
    pub commands_accepted: u64,
    /// Commands found in the store after the server stopped.
    pub commands_stored: u64,
    /// Requests that got no 2xx (should be 0).
    pub failures: u64,
    /// Peak resident memory of the server process, KiB.
    pub server_peak_kib: u64,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The server side: serve on loopback, print the address, stop when stdin closes.
pub fn serve(dir: &Path) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let store = Arc::new(Store::open(&dir.join("state.db")).map_err(|e| e.to_string())?);
        let verifier = kfops_scm::github::GithubWebhooks::new(
            SignatureVerifier::new([SECRET]),
            kfops_scm::github::RepoAllowlist::new([REPO])?,
        );
        let state = kfops_bot::server::AppState::new(Arc::new(verifier), store, Arc::new(tokio::sync::Notify::new()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{addr}").and_then(|()| out.flush()).map_err(|e| e.to_string())?;
        }
        let stdin_closed = async {
            let _ = tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink())).await;
        };
        let router = kfops_bot::server::router(state, kfops_bot::server::DEFAULT_BODY_LIMIT);
        kfops_bot::server::serve(listener, router, stdin_closed).await.map_err(|e| e.to_string())
    })
}

/// The anchor: sequential durable inserts per second into a fresh store.
pub fn insert_rate(dir: &Path, n: usize) -> Result<f64, String> {
    let store = Store::open(&dir.join("anchor.db")).map_err(|e| e.to_string())?;
    let pr = PrRef { repo: RepoRef { owner: "acme".into(), name: "churn".into() }, number: 1 };
    let started = Instant::now();
    for i in 0..n {
        let event = ChatOpsEvent {
            delivery_id: format!("anchor-{i}"),
            pr: pr.clone(),
            comment: CommentId(i.to_string()),
            author: "alice".into(),
            installation: None,
            command: Command::BuildRun,
        };
        store.accept(&event).map_err(|e| e.to_string())?;
    }
    #[allow(clippy::cast_precision_loss)]
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Signed request bodies from GitHub's recorded deliveries: `(body, signature)`
/// for a command comment and an ordinary one.
pub fn bodies() -> Result<[(Vec<u8>, String); 2], String> {
    let verifier = SignatureVerifier::new([SECRET]);
    let make = |text: &str| -> Result<(Vec<u8>, String), String> {
        let p = kfops_scm::github::examples::pr_comment("created", text)?;
        let body = serde_json::to_vec(&p).map_err(|e| e.to_string())?;
        let sig = verifier.sign(&body).ok_or("no webhook secret")?;
        Ok((body, sig))
    };
    Ok([make("/build_run")?, make("Looks good to me, thanks!")?])
}

struct Conn {
    reader: BufReader<tokio::io::ReadHalf<TcpStream>>,
    writer: tokio::io::WriteHalf<TcpStream>,
}

impl Conn {
    async fn open(addr: &str) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (r, w) = tokio::io::split(stream);
        Ok(Conn { reader: BufReader::new(r), writer: w })
    }

    /// One POST on the keep-alive connection; returns the status.
    async fn post(&mut self, addr: &str, delivery: &str, body: &[u8], signature: &str) -> std::io::Result<u16> {
        let head = format!(
            "POST /webhooks/github HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             X-GitHub-Event: issue_comment\r\nX-GitHub-Delivery: {delivery}\r\nX-Hub-Signature-256: {signature}\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        self.writer.write_all(head.as_bytes()).await?;
        self.writer.write_all(body).await?;
        let mut line = String::new();
        self.reader.read_line(&mut line).await?;
        let status = line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut length = 0usize;
        loop {
            line.clear();
            if self.reader.read_line(&mut line).await? == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).await?;
        Ok(status)
    }
}

/// Counts shared by the generator tasks.
#[derive(Default)]
struct Tally {
    accepted: u64,
    failures: u64,
}

/// Run both load phases against the server at `addr`.
pub fn load(
    addr: &str,
    bodies: &[(Vec<u8>, String); 2],
    rate: u32,
    secs: u32,
    connections: usize,
    sustained_secs: u32,
) -> Result<(Vec<Duration>, f64, u64, u64), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let bodies = Arc::new(bodies.clone());
        let tally = Arc::new(std::sync::Mutex::new(Tally::default()));
        // Open loop.
        let total = u64::from(rate) * u64::from(secs);
        let start = tokio::time::Instant::now() + Duration::from_millis(100);
        let mut tasks = Vec::new();
        for k in 0..connections {
            let (bodies, tally, addr) = (Arc::clone(&bodies), Arc::clone(&tally), addr.to_owned());
            let conns = connections as u64;
            tasks.push(tokio::spawn(async move {
                let mut conn = Conn::open(&addr).await?;
                let mut latencies = Vec::new();
                let mut i = k as u64;
                while i < total {
                    let due = start + Duration::from_secs_f64(i as f64 / f64::from(rate));
                    tokio::time::sleep_until(due).await;
                    let (body, sig) = &bodies[(i % 2) as usize];
                    let status = conn.post(&addr, &format!("open-{i}"), body, sig).await?;
                    latencies.push(due.elapsed());
                    let mut t = tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    match status {
                        202 => t.accepted += 1,
                        200 => {}
                        _ => t.failures += 1,
                    }
                    i += conns;
                }
                Ok::<_, std::io::Error>(latencies)
            }));
        }
        let mut latencies = Vec::new();
        for t in tasks {
            latencies.extend(t.await.map_err(|e| e.to_string())?.map_err(|e| format!("open loop: {e}"))?);
        }
        latencies.sort();
        // Closed loop.
        let until = Instant::now() + Duration::from_secs(u64::from(sustained_secs));
        let began = Instant::now();
        let mut tasks = Vec::new();
        for k in 0..connections {
            let (bodies, tally, addr) = (Arc::clone(&bodies), Arc::clone(&tally), addr.to_owned());
            tasks.push(tokio::spawn(async move {
                let mut conn = Conn::open(&addr).await?;
                let mut n = 0u64;
                while Instant::now() < until {
                    let (body, sig) = &bodies[(n % 2) as usize];
                    let status = conn.post(&addr, &format!("closed-{k}-{n}"), body, sig).await?;
                    let mut t = tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    match status {
                        202 => t.accepted += 1,
                        200 => {}
                        _ => t.failures += 1,
                    }
                    n += 1;
                }
                Ok::<_, std::io::Error>(n)
            }));
        }
        let mut done = 0u64;
        for t in tasks {
            done += t.await.map_err(|e| e.to_string())?.map_err(|e| format!("closed loop: {e}"))?;
        }
        #[allow(clippy::cast_precision_loss)]
        let sustained = done as f64 / began.elapsed().as_secs_f64();
        let t = tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok((latencies, sustained, t.accepted, t.failures))
    })
}

/// The BENCHMARKS.md section.
pub fn render(r: &BotBenchResult, machine: &str) -> String {
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
    let p50 = percentile(&r.open_latencies, 0.50);
    let p99 = percentile(&r.open_latencies, 0.99);
    let max = r.open_latencies.last().copied().unwrap_or_default();
    let lost = r.commands_accepted.saturating_sub(r.commands_stored);
    #[allow(clippy::cast_precision_loss)]
    let mem = r.server_peak_kib as f64 / 1024.0;
    format!(
        "## kfops-bot webhook front door (`cargo xtask bench bot`)\n\n\
         Signed recorded GitHub `issue_comment` deliveries (half `/build_run` commands, half ordinary comments) posted over \
         {conns} keep-alive loopback connections to the bot's router in its own process; every command is committed to the \
         SQLite store (WAL, `synchronous=FULL`) before its 202. Open loop: {rate} webhooks/s for {secs} s, latency measured from \
         each request's scheduled send time to its full response. Closed loop: as fast as answers come back. Anchor: the raw \
         durable-insert rate of the store, measured in the same run. Machine: {machine}.\n\n\
         | measure | value | ratio to anchor |\n|---|---|---|\n\
         | raw durable inserts/s (anchor, sequential `Store::accept`) | {ins:.0} /s | 1.000 |\n\
         | sustained webhooks/s (closed loop; half are commands) | {sus:.0} /s | {sus_ratio:.3} |\n\
         | open loop {rate}/s: p50 time to 2xx | {p50} | |\n\
         | open loop {rate}/s: p99 time to 2xx (target < 20 ms) | {p99} | |\n\
         | open loop {rate}/s: max | {max} | |\n\
         | commands answered 202 / found in the store / lost | {acc} / {stored} / {lost} | |\n\
         | non-2xx answers | {fail} | |\n\
         | server peak memory (VmHWM) | {mem:.1} MiB | |\n",
        conns = r.connections,
        rate = r.open_rate,
        secs = r.open_secs,
        ins = r.insert_rate,
        sus = r.sustained_rate,
        sus_ratio = r.sustained_rate / r.insert_rate.max(1e-9),
        p50 = ms(p50),
        p99 = ms(p99),
        max = ms(max),
        acc = r.commands_accepted,
        stored = r.commands_stored,
        fail = r.failures,
    )
}
