//! GitHub retry, rate-limit and pacing rules.

use std::time::{Duration, Instant};

use kfops_scm::github::retry::{Decision, Pacer, Response, RetryPolicy};

const NOW: u64 = 1_764_000_000;

fn decide(attempt: u32, status: Option<u16>, headers: &[(&str, &str)], body: &str, jitter: f64) -> Decision {
    let lookup = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| (*v).to_owned());
    RetryPolicy::default().decide(attempt, Response { status, header: &lookup, body }, NOW, jitter)
}

/// attempt, status, headers, body start, jitter → expected decision.
type Case<'a> = (u32, Option<u16>, Vec<(&'a str, &'a str)>, &'a str, f64, Decision);

fn secs(s: u64) -> Decision {
    Decision::RetryAfter(Duration::from_secs(s))
}

#[test]
fn the_rules_on_a_table() {
    let reset_in_90 = (NOW + 90).to_string();
    let reset_in_2h = (NOW + 7200).to_string();
    let cases: Vec<Case<'_>> = vec![
        (1, Some(200), vec![], "", 0.5, Decision::Done),
        (1, Some(201), vec![], "", 0.5, Decision::Done),
        (1, Some(304), vec![], "", 0.5, Decision::Done),
        (1, Some(404), vec![], "", 0.5, Decision::Done),
        (1, Some(422), vec![], "", 0.5, Decision::Done),
        // A plain 403 is a permission problem.
        (1, Some(403), vec![], "Resource not accessible by integration", 0.5, Decision::Done),
        // 5xx: equal jitter around base * 2^(attempt-1).
        (1, Some(502), vec![], "", 0.0, Decision::RetryAfter(Duration::from_millis(500))),
        (1, Some(502), vec![], "", 0.5, Decision::RetryAfter(Duration::from_millis(750))),
        (3, Some(503), vec![], "", 0.0, secs(2)),
        (2, None, vec![], "", 0.0, secs(1)),
        (4, Some(500), vec![], "", 0.0, secs(4)),
        // Secondary limit with Retry-After.
        (1, Some(403), vec![("Retry-After", "30")], "You have exceeded a secondary rate limit", 0.5, secs(30)),
        (1, Some(429), vec![("retry-after", " 7 ")], "", 0.5, secs(7)),
        // Primary limit: wait for the reset plus a second.
        (1, Some(403), vec![("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &reset_in_90)], "", 0.5, secs(91)),
        (1, Some(429), vec![("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "12")], "", 0.5, secs(1)),
        // Secondary limit without a hint: a minute, then longer.
        (1, Some(403), vec![], "You have exceeded a secondary rate limit.", 0.5, secs(60)),
        (2, Some(429), vec![], "", 0.5, secs(120)),
    ];
    for (attempt, status, headers, body, jitter, want) in cases {
        assert_eq!(decide(attempt, status, &headers, body, jitter), want, "attempt {attempt}, {status:?}, {headers:?}");
    }
    // Too long a wait, or too many attempts: give up with a reason.
    let Decision::GiveUp(why) =
        decide(1, Some(403), &[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &reset_in_2h)], "", 0.5)
    else {
        panic!("a 2 h wait is over the limit")
    };
    assert!(why.contains("7201 s") && why.contains("900 s"), "{why}");
    let Decision::GiveUp(why) = decide(5, Some(502), &[], "", 0.5) else { panic!("5 attempts is the limit") };
    assert!(why.contains("HTTP 502") && why.contains("5 attempts"), "{why}");
    let Decision::GiveUp(why) = decide(5, None, &[], "", 0.5) else { panic!("limit") };
    assert!(why.contains("connection failures"), "{why}");
}

#[test]
fn backoff_never_exceeds_its_cap() {
    let policy = RetryPolicy::default();
    for attempt in 1..=40 {
        let lookup = |_: &str| None;
        let response = Response { status: Some(500), header: &lookup, body: "" };
        let policy = RetryPolicy { max_attempts: 100, ..policy };
        match policy.decide(attempt, response, NOW, 0.999) {
            Decision::RetryAfter(d) => assert!(d <= policy.max_backoff, "attempt {attempt}: {d:?}"),
            other => panic!("attempt {attempt}: {other:?}"),
        }
    }
}

#[test]
fn content_creation_is_paced() {
    let t0 = Instant::now();
    let mut pacer = Pacer::new(Duration::from_secs(1));
    assert_eq!(pacer.reserve(t0), Duration::ZERO);
    assert_eq!(pacer.reserve(t0), Duration::from_secs(1));
    assert_eq!(pacer.reserve(t0 + Duration::from_millis(500)), Duration::from_millis(1500));
    // After a quiet spell, no wait.
    assert_eq!(pacer.reserve(t0 + Duration::from_secs(10)), Duration::ZERO);
    assert_eq!(pacer.reserve(t0 + Duration::from_millis(10_250)), Duration::from_millis(750));
}
