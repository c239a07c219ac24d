//! The chaos run's faults, drawn from the seeded [`Schedule`] one at a time:
//! SIGKILL of the gateway and a restart after a random downtime, Redis
//! stopped and started again (AOF: its data comes back), and Laravel
//! answering 5xx, slowly (past the gateway's `LARAVEL_TIMEOUT`), hanging
//! far past it, with garbage bodies, or 429 with `Retry-After`. Each fault
//! is healed before the next is drawn; [`FaultLog`] says what happened when.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use wagate_testkit::{FakeLaravel, GatewayProcess, RedisServer};

use crate::convergence::Schedule;

/// The gateway's `LARAVEL_TIMEOUT` in the chaos run: an answer held longer
/// than this was never seen by the gateway.
pub const LARAVEL_TIMEOUT_MS: u64 = 1000;
/// `LARAVEL_RETRY_MAX`: the longest wait before the gateway tries a batch again.
pub const LARAVEL_RETRY_MAX_MS: u64 = 1000;

/// The processes the faults hit. The gateway and Redis are moved into a
/// blocking task while they stop and start (the clients keep running
/// against the dead port meanwhile), hence the `Option`s.
pub struct Rig {
    pub gateway: RefCell<Option<GatewayProcess>>,
    pub redis: RefCell<Option<RedisServer>>,
    pub laravel: FakeLaravel,
}

impl Rig {
    /// Runs `f` on the Redis server (present whenever no fault holds it).
    pub fn redis<T>(&self, f: impl FnOnce(&RedisServer) -> T) -> T {
        f(self
            .redis
            .borrow()
            .as_ref()
            .expect("Redis is back between faults"))
    }

    /// The gateway's log, every run included, for a failure message.
    pub fn gateway_log(&self) -> String {
        self.gateway
            .borrow()
            .as_ref()
            .map(GatewayProcess::log)
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Kill,
    RedisDown,
    Laravel5xx,
    LaravelSlow,
    LaravelHang,
    LaravelGarbage,
    Laravel429,
}

impl Fault {
    /// Draws a fault; the weights are out of 100.
    fn draw(schedule: &mut Schedule) -> Self {
        match schedule.below(100) {
            0..=19 => Fault::Kill,
            20..=34 => Fault::RedisDown,
            35..=49 => Fault::Laravel5xx,
            50..=61 => Fault::LaravelSlow,
            62..=69 => Fault::LaravelHang,
            70..=84 => Fault::LaravelGarbage,
            _ => Fault::Laravel429,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Fault::Kill => "gateway SIGKILL + restart",
            Fault::RedisDown => "Redis stopped + started",
            Fault::Laravel5xx => "Laravel 5xx",
            Fault::LaravelSlow => "Laravel slow (past the timeout)",
            Fault::LaravelHang => "Laravel hangs (10x the timeout)",
            Fault::LaravelGarbage => "Laravel garbage bodies",
            Fault::Laravel429 => "Laravel 429 + Retry-After",
        }
    }
}

/// What the faults did and when.
#[derive(Default)]
pub struct FaultLog {
    /// Faults injected, by kind.
    pub counts: BTreeMap<&'static str, u64>,
    /// When each SIGKILL landed.
    pub kills: Vec<Instant>,
    /// Redis outages: stopped at, answering again at.
    pub redis_down: Vec<(Instant, Instant)>,
    /// How long each restarted gateway took to answer `/health/live`.
    pub restarts: Vec<Duration>,
}

impl FaultLog {
    /// Kills and Redis outages: what may make the gateway do again
    /// something it did (a send, a batch Laravel took) without knowing.
    pub fn disruptions(&self) -> usize {
        self.kills.len() + self.redis_down.len()
    }

    /// Whether a kill or a Redis outage fell within `from..=to`.
    pub fn disrupted_between(&self, from: Instant, to: Instant) -> bool {
        self.kills.iter().any(|k| (from..=to).contains(k))
            || self
                .redis_down
                .iter()
                .any(|(down, up)| *down <= to && *up >= from)
    }
}

/// Injects faults until `until`, each healed before the next; returns with
/// everything healed.
pub async fn inject(rig: &Rig, mut schedule: Schedule, until: Instant, log: &RefCell<FaultLog>) {
    // The random moments are the schedule itself, not synchronisation.
    let ms = |s: &mut Schedule, lo: u64, spread: u64| Duration::from_millis(lo + s.below(spread));
    while Instant::now() < until {
        actix_rt::time::sleep(ms(&mut schedule, 300, 1500)).await;
        let fault = Fault::draw(&mut schedule);
        let hold = ms(&mut schedule, 500, 2500);
        *log.borrow_mut().counts.entry(fault.label()).or_default() += 1;
        let laravel = &rig.laravel;
        match fault {
            Fault::Kill => {
                let mut gateway = rig.gateway.borrow_mut().take().expect("the gateway runs");
                let downtime = ms(&mut schedule, 0, 1000);
                let (gateway, killed, ready) = actix_rt::task::spawn_blocking(move || {
                    gateway.kill();
                    let killed = Instant::now();
                    std::thread::sleep(downtime);
                    let started = Instant::now();
                    gateway.restart();
                    (gateway, killed, started.elapsed())
                })
                .await
                .expect("the gateway restarts (a failed start panics with its log)");
                *rig.gateway.borrow_mut() = Some(gateway);
                let mut log = log.borrow_mut();
                log.kills.push(killed);
                log.restarts.push(ready);
            }
            Fault::RedisDown => {
                let mut redis = rig.redis.borrow_mut().take().expect("Redis runs");
                let (redis, down, up) = actix_rt::task::spawn_blocking(move || {
                    // Down from the moment the stop begins: the gateway
                    // loses Redis before `stop` returns (the 1-hour run
                    // counted a batch replayed twice inside that gap as a
                    // duplicate "with no outage between").
                    let down = Instant::now();
                    redis.stop();
                    std::thread::sleep(hold);
                    redis.start_again();
                    (redis, down, Instant::now())
                })
                .await
                .expect("Redis starts again");
                *rig.redis.borrow_mut() = Some(redis);
                log.borrow_mut().redis_down.push((down, up));
            }
            laravel_fault => {
                match laravel_fault {
                    Fault::Laravel5xx => {
                        laravel.set_status([500, 502, 503, 504][schedule.below(4) as usize])
                    }
                    Fault::LaravelSlow => {
                        laravel.set_delay(ms(&mut schedule, LARAVEL_TIMEOUT_MS + 200, 800))
                    }
                    Fault::LaravelHang => {
                        laravel.set_delay(Duration::from_millis(10 * LARAVEL_TIMEOUT_MS))
                    }
                    Fault::LaravelGarbage => {
                        laravel.set_garbage(true);
                        laravel.set_status([200, 500][schedule.below(2) as usize]);
                    }
                    _ => {
                        laravel.set_status(429);
                        laravel.set_retry_after(Some("1"));
                    }
                }
                actix_rt::time::sleep(hold).await;
                heal_laravel(laravel);
            }
        }
    }
}

/// Laravel answers 200 at once with JSON again.
fn heal_laravel(laravel: &FakeLaravel) {
    laravel.set_status(200);
    laravel.set_delay(Duration::ZERO);
    laravel.set_garbage(false);
    laravel.set_retry_after(None);
}
