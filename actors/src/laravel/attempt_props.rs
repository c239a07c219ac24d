//! Property tests of how Laravel's answers are read: any status code, any
//! `Retry-After` header (seconds, HTTP dates, garbage). Invariants: no
//! answer panics; 2xx is delivered and nothing else is; 429 always
//! throttles; a readable delay is honoured but the pause never exceeds the
//! throttle's cap; a redirect or a 5xx is never taken as a refusal (which
//! would drop the batch).

use std::time::{Duration, Instant, SystemTime};

use proptest::prelude::*;

use super::*;
use crate::laravel::throttle::{Throttle, ThrottleConfig};

fn retry_after() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        (0u64..4_000_000_000)
            .prop_map(|s| httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(s))),
        " *[0-9]{1,30} *",
        any::<String>(),
    ])
}

proptest! {
    #[test]
    fn any_answer_is_classified_and_pauses_stay_bounded(code in 100u16..1000, header in retry_after(), now_s in 0u64..4_000_000_000, max_wait_s in 1u64..600) {
        let status = StatusCode::from_u16(code).expect("100..1000 is a valid status");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now_s);
        let verdict = classify_status(status, header.as_deref(), now);
        prop_assert_eq!(matches!(verdict, Attempt::Ok), status.is_success());
        if code == 429 {
            prop_assert!(matches!(verdict, Attempt::Throttled { .. }), "429 throttles");
        }
        if status.is_server_error() || status.is_redirection() {
            prop_assert!(!matches!(verdict, Attempt::Refused(_)), "{} would drop the batch", code);
        }
        if let Attempt::Throttled { retry_after, .. } = verdict {
            if let Some(n) = header.as_deref().and_then(|h| h.trim().parse::<u64>().ok()) {
                prop_assert_eq!(retry_after, Some(Duration::from_secs(n)));
            }
            let mut throttle = Throttle::new(ThrottleConfig { max_wait: Duration::from_secs(max_wait_s), persist_after: Duration::from_secs(120) });
            let t0 = Instant::now();
            let paused = throttle.on_throttled(t0, retry_after, Duration::from_millis(500));
            prop_assert!(paused.resume_at <= t0 + Duration::from_secs(max_wait_s), "paused past the cap");
        }
    }

    #[test]
    fn retry_after_never_panics_and_reads_seconds_exactly(value in any::<String>(), secs in any::<u64>()) {
        let now = SystemTime::now();
        let _ = parse_retry_after(&value, now);
        prop_assert_eq!(parse_retry_after(&format!(" {secs} "), now), Some(Duration::from_secs(secs)));
    }
}
