use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::*;

fn rs(name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("apps/v1".into()),
        kind: Some("ReplicaSet".into()),
        name: Some(name.into()),
        namespace: Some("ns".into()),
        uid: Some(format!("uid-{name}")),
        ..Default::default()
    }
}

/// A fresh event as the recorder makes it; `n` keeps names apart.
fn event(object: &str, reason: &str, message: &str, n: u64) -> Event {
    let at = Timestamp::from_second(1_700_000_000 + n as i64).unwrap();
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{object}.{n:x}")),
            namespace: Some("ns".into()),
            ..Default::default()
        },
        involved_object: rs(object),
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some("Normal".into()),
        source: Some(EventSource {
            component: Some("replicaset-controller".into()),
            host: None,
        }),
        reporting_component: Some("replicaset-controller".into()),
        first_timestamp: Some(Time(at)),
        last_timestamp: Some(Time(at)),
        count: Some(1),
        ..Default::default()
    }
}

fn created(o: &Outcome) -> &Event {
    match o {
        Outcome::Create(e) => e,
        other => panic!("expected a create, got {other:?}"),
    }
}

fn patched(o: &Outcome) -> &Event {
    match o {
        Outcome::Patch(e) => e,
        other => panic!("expected a patch, got {other:?}"),
    }
}

#[test]
fn nine_distinct_messages_then_one_combined_event_counted_up() {
    let mut c = Correlator::default();
    let t = Instant::now();
    let out: Vec<Outcome> = (0..12)
        .map(|i| {
            c.correlate(
                event(
                    "web",
                    "SuccessfulCreate",
                    &format!("Created pod: web-{i}"),
                    i,
                ),
                t,
            )
        })
        .collect();
    for (i, o) in out[..9].iter().enumerate() {
        assert_eq!(
            created(o).message.as_deref(),
            Some(format!("Created pod: web-{i}").as_str())
        );
    }
    let combined = created(&out[9]);
    assert_eq!(
        combined.message.as_deref(),
        Some("(combined from similar events): Created pod: web-9")
    );
    assert_eq!(combined.count, Some(1));
    assert_eq!(combined.reporting_component, None);
    let first = patched(&out[10]);
    assert_eq!(first.metadata.name, combined.metadata.name);
    assert_eq!(first.count, Some(2));
    assert_eq!(
        first.message.as_deref(),
        Some("(combined from similar events): Created pod: web-10")
    );
    assert_eq!(first.first_timestamp, combined.first_timestamp);
    assert_eq!(patched(&out[11]).count, Some(3));
}

#[test]
fn an_identical_event_patches_the_first_one() {
    let mut c = Correlator::default();
    let t = Instant::now();
    let first = c.correlate(event("web", "FailedCreate", "Error creating: quota", 1), t);
    let again = c.correlate(event("web", "FailedCreate", "Error creating: quota", 2), t);
    let first = created(&first);
    let again = patched(&again);
    assert_eq!(again.metadata.name, first.metadata.name);
    assert_eq!(again.count, Some(2));
    assert_eq!(again.first_timestamp, first.first_timestamp);
    assert_ne!(again.last_timestamp, first.last_timestamp);
}

#[test]
fn an_object_gets_25_events_at_once_then_one_per_five_minutes() {
    let mut c = Correlator::default();
    let t = Instant::now();
    let mut n = 0;
    let mut next = |c: &mut Correlator, at: Instant| {
        n += 1;
        c.correlate(
            event(
                "web",
                "SuccessfulCreate",
                &format!("Created pod: web-{n}"),
                n,
            ),
            at,
        )
    };
    let written = (0..100)
        .filter(|_| next(&mut c, t) != Outcome::Skip)
        .count();
    assert_eq!(written, 25);
    assert_eq!(next(&mut c, t + Duration::from_secs(299)), Outcome::Skip);
    // The skipped ones were counted: the patch after the refill says so.
    let late = next(&mut c, t + Duration::from_secs(301));
    assert_eq!(patched(&late).count, Some(93));
    assert_eq!(next(&mut c, t + Duration::from_secs(302)), Outcome::Skip);
    // Another object has its own budget.
    let other = c.correlate(event("api", "SuccessfulCreate", "Created pod: api-1", 1), t);
    assert!(matches!(other, Outcome::Create(_)));
}

#[test]
fn similar_events_start_afresh_after_ten_quiet_minutes() {
    let mut c = Correlator::default();
    let t = Instant::now();
    for i in 0..9 {
        let o = c.correlate(
            event("web", "SuccessfulDelete", &format!("Deleted pod: {i}"), i),
            t,
        );
        assert!(matches!(o, Outcome::Create(_)));
    }
    let later = t + SIMILAR_WINDOW + Duration::from_secs(1);
    let o = c.correlate(event("web", "SuccessfulDelete", "Deleted pod: 9", 9), later);
    assert_eq!(created(&o).message.as_deref(), Some("Deleted pod: 9"));
}

#[test]
fn other_reasons_and_types_are_not_similar() {
    let mut c = Correlator::default();
    let t = Instant::now();
    for i in 0..9 {
        c.correlate(
            event("web", "SuccessfulCreate", &format!("Created pod: {i}"), i),
            t,
        );
    }
    let o = c.correlate(event("web", "SuccessfulDelete", "Deleted pod: 0", 20), t);
    assert_eq!(created(&o).message.as_deref(), Some("Deleted pod: 0"));
    let mut warning = event("web", "SuccessfulCreate", "Created pod: x", 21);
    warning.type_ = Some("Warning".into());
    assert_eq!(
        created(&c.correlate(warning, t)).message.as_deref(),
        Some("Created pod: x")
    );
}
