//! Unit tests of the `SessionTable` with a hand-driven clock: `T0` plus
//! offsets for the unix-ms times, `Instant`s built from one base.

use super::*;

const T0: u64 = 1_700_000_000_000;

fn id(s: &str) -> SessionId {
    SessionId::parse(s).expect("valid id")
}

fn limits(max_active: usize, max_stored: usize) -> Limits {
    Limits {
        max_active,
        max_stored,
        lifetimes: Lifetimes {
            idle_ttl: Duration::from_secs(60),
            max_lifetime: Some(Duration::from_secs(3600)),
        },
        restart: RestartPolicy {
            max_restarts: 2,
            window: Duration::from_secs(60),
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
        },
        retention: Duration::from_secs(600),
    }
}

fn table(max_active: usize, max_stored: usize) -> SessionTable {
    SessionTable::new(limits(max_active, max_stored), RestoreQueue::new(10))
}

fn record(name: &str, desired: Desired, created_ms: u64) -> SessionRecord {
    SessionRecord {
        id: id(name),
        desired,
        created_ms,
        node: "n1".into(),
    }
}

/// The generation the table gave the last actor it spawned for `name`.
fn spawned(effects: &[Effect], name: &str) -> Option<u64> {
    effects.iter().rev().find_map(|e| match e {
        Effect::Spawn { id: i, generation } if i.as_str() == name => Some(*generation),
        _ => None,
    })
}

fn crashed(t: &mut SessionTable, name: &str, generation: u64, now: Instant) -> Vec<Effect> {
    t.exited(&id(name), generation, &Exit::Crashed, None, now)
}

#[test]
fn create_tracks_and_spawns_and_counts_active() {
    let mut t = table(2, 10);
    let fx = t.create(&id("a"), T0);
    assert_eq!(
        fx,
        vec![
            Effect::Track {
                id: id("a"),
                created_ms: T0
            },
            Effect::Spawn {
                id: id("a"),
                generation: 1
            },
        ]
    );
    assert_eq!(t.active(), 1);
    assert!(matches!(
        t.check_create(&id("a")),
        Err(RegistryError::Exists(_))
    ));
}

#[test]
fn limits_refuse_before_anything_is_written() {
    let mut t = table(1, 2);
    t.create(&id("a"), T0);
    assert!(matches!(
        t.check_create(&id("b")),
        Err(RegistryError::LimitReached(1))
    ));
    t.stop(&id("a")).unwrap();
    assert_eq!(t.active(), 0, "a stopped session frees its slot");
    t.create(&id("b"), T0);
    assert!(matches!(
        t.check_restart(&id("a")),
        Err(RegistryError::LimitReached(1))
    ));
    assert!(
        t.check_restart(&id("b")).is_ok(),
        "a running one restarts in place"
    );
    t.stop(&id("b")).unwrap();
    assert!(matches!(
        t.check_create(&id("c")),
        Err(RegistryError::StoredLimitReached(2))
    ));
}

#[test]
fn stop_stops_a_running_actor_and_announces_a_pending_restart() {
    let mut t = table(5, 10);
    t.create(&id("run"), T0);
    assert_eq!(
        t.stop(&id("run")).unwrap(),
        vec![Effect::Stop {
            id: id("run"),
            cause: StopCause::Stopped
        }]
    );
    assert!(matches!(
        t.check_stop(&id("run")),
        Err(RegistryError::NotRunning(_))
    ));

    let fx = t.create(&id("flaky"), T0);
    crashed(
        &mut t,
        "flaky",
        spawned(&fx, "flaky").unwrap(),
        Instant::now(),
    );
    assert_eq!(t.active(), 1, "a pending restart still counts as active");
    let fx = t.stop(&id("flaky")).unwrap();
    assert_eq!(fx[0], Effect::CancelRestart { id: id("flaky") });
    assert!(matches!(
        &fx[1],
        Effect::Publish {
            state: SessionState::Stopped,
            audience: Audience::Laravel,
            ..
        }
    ));
    assert_eq!(t.active(), 0);
}

#[test]
fn stale_exit_reports_are_ignored() {
    let mut t = table(5, 10);
    let first = spawned(&t.create(&id("a"), T0), "a").unwrap();
    let again = spawned(&t.restart(&id("a"), T0 + 1).unwrap(), "a").unwrap();
    assert!(again > first);
    assert!(crashed(&mut t, "a", first, Instant::now()).is_empty());
    assert_eq!(t.running(), vec![id("a")], "the successor is untouched");
    assert!(!t.all_exited());
}

#[test]
fn crashes_back_off_then_give_up_and_an_operator_restart_resets() {
    let mut t = table(5, 10);
    let now = Instant::now();
    let mut gen = spawned(&t.create(&id("a"), T0), "a").unwrap();
    let delays: Vec<Duration> = (0..2)
        .map(|_| {
            let fx = crashed(&mut t, "a", gen, now);
            assert_eq!(fx[0], Effect::Release { id: id("a") });
            let delay = fx
                .iter()
                .find_map(|e| match e {
                    Effect::ScheduleRestart { delay, .. } => Some(*delay),
                    _ => None,
                })
                .expect("a restart is scheduled");
            assert!(fx.contains(&Effect::CountRestarts {
                id: id("a"),
                restarts: gen as u32
            }));
            gen = spawned(&t.restart_due(&id("a"), T0), "a").unwrap();
            delay
        })
        .collect();
    assert_eq!(
        delays,
        [Duration::from_millis(100), Duration::from_millis(200)]
    );
    let fx = crashed(&mut t, "a", gen, now);
    assert!(matches!(&fx[1], Effect::GiveUp { .. }), "{fx:?}");
    assert_eq!(t.active(), 0, "failed does not count as active");
    assert!(t.restart_due(&id("a"), T0).is_empty(), "no timer to honour");

    let fx = t.restart(&id("a"), T0).unwrap();
    gen = spawned(&fx, "a").unwrap();
    let fx = crashed(&mut t, "a", gen, now);
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::ScheduleRestart { .. })),
        "history was reset: {fx:?}"
    );
}

#[test]
fn a_logged_out_end_deletes_the_record_other_ends_keep_it() {
    let mut t = table(5, 10);
    let g = spawned(&t.create(&id("out"), T0), "out").unwrap();
    let fx = t.exited(
        &id("out"),
        g,
        &Exit::Terminal,
        Some(SessionState::LoggedOut),
        Instant::now(),
    );
    assert!(fx.contains(&Effect::DeleteRecord { id: id("out") }));
    let g = spawned(&t.create(&id("banned"), T0), "banned").unwrap();
    let fx = t.exited(
        &id("banned"),
        g,
        &Exit::Terminal,
        Some(SessionState::Failed),
        Instant::now(),
    );
    assert_eq!(fx, vec![Effect::Release { id: id("banned") }]);
    assert!(t.contains(&id("out")) && t.contains(&id("banned")));
}

#[test]
fn delete_stops_and_untracks() {
    let mut t = table(5, 10);
    t.create(&id("a"), T0);
    assert_eq!(
        t.delete(&id("a")).unwrap(),
        vec![
            Effect::Stop {
                id: id("a"),
                cause: StopCause::Deleted
            },
            Effect::Untrack { id: id("a") },
        ]
    );
    assert!(t.is_empty());
    assert!(matches!(
        t.delete(&id("a")),
        Err(RegistryError::NotFound(_))
    ));
}

#[test]
fn sweep_forgets_idle_unlinked_sessions_and_keeps_linked_ones() {
    let mut t = table(5, 10);
    t.create(&id("never"), T0);
    t.create(&id("linked"), T0);
    t.shared(&id("linked")).unwrap().set_linked(true);

    let (n, fx) = t.sweep(T0 + 59_999);
    assert_eq!((n, fx), (0, vec![]), "not idle yet");

    let (n, fx) = t.sweep(T0 + 60_000);
    assert_eq!(n, 1);
    assert_eq!(
        fx,
        vec![
            Effect::Stop {
                id: id("never"),
                cause: StopCause::IdleTtl
            },
            Effect::Untrack { id: id("never") },
            Effect::DeleteRecord { id: id("never") },
        ]
    );
    assert!(!t.contains(&id("never")));
    assert_eq!(t.running(), vec![id("linked")]);
}

#[test]
fn sweep_renews_over_age_sessions_in_place() {
    let mut t = table(5, 10);
    t.create(&id("old"), T0);
    t.shared(&id("old")).unwrap().set_linked(true);
    let (n, fx) = t.sweep(T0 + 3_600_000);
    assert_eq!(n, 1);
    assert_eq!(
        fx[0],
        Effect::Stop {
            id: id("old"),
            cause: StopCause::MaxLifetime
        }
    );
    assert_eq!(spawned(&fx, "old"), Some(3), "a fresh generation");
    assert_eq!(t.active(), 1);
    let (n, _) = t.sweep(T0 + 3_600_001);
    assert_eq!(n, 0, "the renewed actor's lifetime starts again");
}

#[test]
fn restore_tracks_everything_and_paces_the_running_ones_under_the_limit() {
    let mut t = table(2, 10);
    t.create(&id("live"), T0);
    let fx = t.restore(
        vec![
            record("c", Desired::Running, 3),
            record("stopped", Desired::Stopped, 2),
            record("a", Desired::Running, 1),
            record("b", Desired::Running, 2),
            record("live", Desired::Running, 0),
        ],
        T0,
    );
    let tracked: Vec<&str> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Track { id, .. } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        tracked,
        ["a", "stopped", "b", "c"],
        "oldest first, live kept"
    );
    assert_eq!(t.restore_pending(), 3);
    assert_eq!(t.len(), 5);

    // One per tick at 10/s: `a` fits the limit, then `b` and `c` do not.
    assert_eq!(spawned(&t.restore_tick(T0 + 100), "a"), Some(1));
    let fx = t.restore_tick(T0 + 200);
    assert!(
        matches!(
            &fx[..],
            [Effect::Publish {
                state: SessionState::Stopped,
                ..
            }]
        ),
        "{fx:?}"
    );
    assert_eq!(t.active(), 2);
    t.delete(&id("c")).unwrap();
    assert_eq!(t.restore_pending(), 0, "a deleted session leaves the queue");
}

#[test]
fn stop_all_waits_for_running_actors_and_drops_pending_restarts() {
    let mut t = table(5, 10);
    let g = spawned(&t.create(&id("run"), T0), "run").unwrap();
    let f = spawned(&t.create(&id("flaky"), T0), "flaky").unwrap();
    crashed(&mut t, "flaky", f, Instant::now());
    t.restore(vec![record("later", Desired::Running, 1)], T0);

    let mut fx = t.stop_all();
    fx.sort_by_key(|e| format!("{e:?}"));
    assert_eq!(
        fx,
        vec![
            Effect::CancelRestart { id: id("flaky") },
            Effect::Shutdown { id: id("run") },
        ]
    );
    assert!(!t.all_exited());
    assert!(t.restore_tick(T0 + 100).is_empty(), "nothing new starts");
    let fx = t.exited(&id("run"), g, &Exit::Requested, None, Instant::now());
    assert_eq!(fx, vec![Effect::Release { id: id("run") }]);
    assert!(t.all_exited());
}

#[test]
fn retention_picks_ended_sessions_and_rechecks_before_forgetting() {
    let mut t = table(5, 10);
    t.create(&id("running"), T0);
    t.create(&id("ended"), T0);
    t.stop(&id("ended")).unwrap();
    let view = |i: &SessionId| {
        Some(match i.as_str() {
            "running" => (SessionState::Connected, T0),
            _ => (SessionState::Stopped, T0),
        })
    };
    assert!(t.retention_candidates(T0 + 599_999, view).is_empty());
    let picked = t.retention_candidates(T0 + 600_000, view);
    assert_eq!(picked, vec![(id("ended"), T0)]);
    assert!(
        !t.still_ended(&id("ended"), Some(T0 + 5), T0),
        "changed since"
    );
    assert!(t.still_ended(&id("ended"), Some(T0), T0));
    assert_eq!(
        t.forget(&id("ended")),
        vec![Effect::Untrack { id: id("ended") }]
    );
    assert!(t.forget(&id("ended")).is_empty());
}
