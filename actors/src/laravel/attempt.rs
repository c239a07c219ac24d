//! What one HTTP attempt to Laravel came to, and why: the verdict
//! ([`Attempt`]) and, for failures, a [`Failure`] with a stable kind for
//! `/health` (`lastError.kind`) and `wagate_laravel_failures_total{kind}`.
//! Pure classification of statuses, transport errors and `Retry-After`;
//! `LaravelClient` sends and acts on the verdict.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use awc::error::{ConnectError, SendRequestError};
use awc::http::StatusCode;

/// Why an attempt did not deliver, in the words `/health` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The TLS handshake failed: untrusted, expired or misnamed certificate.
    Tls,
    /// The host name did not resolve.
    Dns,
    /// Nothing listens on the port (connection refused).
    Refused,
    /// No answer within `LARAVEL_TIMEOUT` (connect or whole request).
    Timeout,
    /// Another connection-level error (reset, unreachable network, …).
    Connect,
    /// Laravel answered, but not HTTP we could read.
    Protocol,
    /// Laravel answered with this status.
    Http(u16),
}

impl FailureKind {
    /// The label: `tls`, `dns`, `refused`, `timeout`, `connect`, `protocol`
    /// or `http_<status>`.
    pub fn label(self) -> Cow<'static, str> {
        match self {
            FailureKind::Tls => "tls".into(),
            FailureKind::Dns => "dns".into(),
            FailureKind::Refused => "refused".into(),
            FailureKind::Timeout => "timeout".into(),
            FailureKind::Connect => "connect".into(),
            FailureKind::Protocol => "protocol".into(),
            FailureKind::Http(status) => format!("http_{status}").into(),
        }
    }
}

/// A failed attempt: its kind and a message an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

/// The verdict on one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// 2xx.
    Ok,
    /// Worth retrying / holding, and a breaker failure: transport error,
    /// timeout, 5xx, 3xx, 408, 425, 401/403/404 (a misconfiguration the
    /// operator can fix).
    Failed(Failure),
    /// Laravel asks us to slow down: 429, or 503 with `Retry-After`. Not a
    /// breaker failure (see `throttle`); `retry_after` is what it asked for.
    Throttled {
        retry_after: Option<Duration>,
        failure: Failure,
    },
    /// Laravel understood and refused (any other 4xx): retrying would not help.
    Refused(Failure),
}

/// The verdict on an answered request. `retry_after` is the raw header.
pub fn classify_status(status: StatusCode, retry_after: Option<&str>, now: SystemTime) -> Attempt {
    if status.is_success() {
        return Attempt::Ok;
    }
    let code = status.as_u16();
    let failure = Failure {
        kind: FailureKind::Http(code),
        message: describe_status(status),
    };
    let wait = retry_after.and_then(|v| parse_retry_after(v, now));
    match code {
        429 => Attempt::Throttled {
            retry_after: wait,
            failure,
        },
        503 if wait.is_some() => Attempt::Throttled {
            retry_after: wait,
            failure,
        },
        401 | 403 | 404 | 408 | 425 => Attempt::Failed(failure),
        // Redirects are not followed: a 3xx means a wrong URL or a login
        // page, never "delivered"; hold, do not drop.
        _ if status.is_server_error() || status.is_redirection() => Attempt::Failed(failure),
        _ => Attempt::Refused(failure),
    }
}

/// What a status most likely means for the operator.
fn describe_status(status: StatusCode) -> String {
    let hint = match status.as_u16() {
        401 => ": wrong LARAVEL_TOKEN or LARAVEL_SIGNING_SECRET (Laravel rejected the token or the signature)",
        403 => ": the token is not allowed on this route, or the signature was rejected",
        404 => ": wrong LARAVEL_API path (the route does not exist)",
        429 => ": Laravel's rate limit (throttle middleware) on these routes",
        _ if status.is_redirection() => ": redirects are not followed; check LARAVEL_API (http vs https, path) and that no login page guards the route",
        _ => "",
    };
    format!("Laravel answered {status}{hint}")
}

/// The failure of a request that got no usable answer.
pub fn classify_error(error: &SendRequestError) -> Failure {
    let message = error.to_string();
    let kind = match error {
        SendRequestError::Timeout => FailureKind::Timeout,
        SendRequestError::Connect(connect) => match connect {
            ConnectError::Resolver(_) | ConnectError::NoRecords | ConnectError::Unresolved => {
                FailureKind::Dns
            }
            ConnectError::Timeout => FailureKind::Timeout,
            ConnectError::SslIsNotSupported => FailureKind::Tls,
            ConnectError::Io(io) => io_kind(io),
            _ => FailureKind::Connect,
        },
        SendRequestError::Send(io) => io_kind(io),
        SendRequestError::Response(_) | SendRequestError::H2(_) => FailureKind::Protocol,
        _ => FailureKind::Connect,
    };
    let message = match kind {
        FailureKind::Tls => format!(
            "TLS handshake with Laravel failed: {message} (a private CA needs LARAVEL_CA_FILE; the certificate must name the host of LARAVEL_API and be in date)"
        ),
        FailureKind::Dns => format!("cannot resolve the host of LARAVEL_API: {message}"),
        FailureKind::Refused => format!("Laravel refused the connection (nothing listens there?): {message}"),
        FailureKind::Timeout => format!("Laravel did not answer within LARAVEL_TIMEOUT: {message}"),
        _ => message,
    };
    Failure { kind, message }
}

fn io_kind(io: &std::io::Error) -> FailureKind {
    // rustls reports handshake failures (bad certificate, wrong name,
    // expired) as an io::Error wrapping its own error.
    let tls = io
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
    if tls {
        return FailureKind::Tls;
    }
    match io.kind() {
        std::io::ErrorKind::ConnectionRefused => FailureKind::Refused,
        std::io::ErrorKind::TimedOut => FailureKind::Timeout,
        _ => FailureKind::Connect,
    }
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3); a
/// date in the past means "now".
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(status: u16, retry_after: Option<&str>) -> Attempt {
        classify_status(
            StatusCode::from_u16(status).unwrap(),
            retry_after,
            SystemTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn statuses_map_to_verdicts() {
        assert_eq!(at(204, None), Attempt::Ok);
        assert!(matches!(at(500, None), Attempt::Failed(_)));
        assert!(
            matches!(at(503, None), Attempt::Failed(_)),
            "503 without Retry-After is an outage"
        );
        assert!(matches!(at(302, None), Attempt::Failed(_)));
        assert!(matches!(at(404, None), Attempt::Failed(_)));
        assert!(matches!(at(422, None), Attempt::Refused(_)));
        assert_eq!(
            at(429, Some("7")),
            Attempt::Throttled {
                retry_after: Some(Duration::from_secs(7)),
                failure: Failure {
                    kind: FailureKind::Http(429),
                    message: describe_status(StatusCode::TOO_MANY_REQUESTS)
                }
            }
        );
        assert!(matches!(
            at(429, None),
            Attempt::Throttled {
                retry_after: None,
                ..
            }
        ));
        assert!(matches!(
            at(503, Some("2")),
            Attempt::Throttled { retry_after: Some(d), .. } if d == Duration::from_secs(2)
        ));
    }

    #[test]
    fn a_401_names_the_token_or_signing_secret() {
        let Attempt::Failed(f) = at(401, None) else {
            panic!("401 is a failure")
        };
        assert_eq!(f.kind.label(), "http_401");
        assert!(
            f.message.contains("LARAVEL_SIGNING_SECRET"),
            "{}",
            f.message
        );
        assert!(f.message.contains("LARAVEL_TOKEN"), "{}", f.message);
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        // 1445412480 is Wed, 21 Oct 2015 07:28:00 GMT.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO),
            "a past date means now"
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn transport_errors_have_kinds() {
        let refused = SendRequestError::Connect(ConnectError::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert_eq!(classify_error(&refused).kind, FailureKind::Refused);
        let tls = SendRequestError::Connect(ConnectError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::Expired),
        )));
        let f = classify_error(&tls);
        assert_eq!(f.kind, FailureKind::Tls);
        assert!(f.message.contains("LARAVEL_CA_FILE"));
        assert_eq!(
            classify_error(&SendRequestError::Timeout).kind,
            FailureKind::Timeout
        );
        let dns = SendRequestError::Connect(ConnectError::Resolver("nope".into()));
        assert_eq!(classify_error(&dns).kind.label(), "dns");
    }
}

#[cfg(test)]
#[path = "attempt_props.rs"]
mod props;
