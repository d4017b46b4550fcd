use std::time::Duration;

use super::*;

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vigil-store-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn event(camera: &str, time_ms: u64, answer: &str) -> NewEvent {
    NewEvent {
        time_ms,
        kind: EventKind::AnswerChanged,
        camera: camera.into(),
        question: Some("q".into()),
        ask: "Is anyone there?".into(),
        answer: answer.into(),
        previous: None,
        scores: vec![("yes".into(), 0.75), ("no".into(), 0.25)],
        latency_ms: 12.5,
        frames_used: 4,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn events_round_trip_and_filter() {
    let dir = temp_dir("roundtrip");
    let store = Store::open(&dir).unwrap();
    let t = now_ms();
    let a = store
        .record(&[event("door", t, "yes")], Some(b"\xff\xd8jpeg"))
        .unwrap();
    let b = store.record(&[event("yard", t + 10, "no")], None).unwrap();
    assert!(b[0].id > a[0].id);
    let all = store.events(&EventFilter::default()).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], b[0], "newest first, read back as written");
    assert_eq!(
        all[1].event.scores,
        vec![("yes".into(), 0.75), ("no".into(), 0.25)]
    );
    let door = store
        .events(&EventFilter {
            camera: Some("door".into()),
            ..EventFilter::default()
        })
        .unwrap();
    assert_eq!(door.len(), 1);
    assert!(door[0].has_snapshot);
    assert_eq!(store.snapshot(a[0].id).unwrap().unwrap(), b"\xff\xd8jpeg");
    assert_eq!(store.snapshot(b[0].id).unwrap(), None);
    let later = store
        .events(&EventFilter {
            since_ms: Some(t + 5),
            ..EventFilter::default()
        })
        .unwrap();
    assert_eq!(later, b);
    drop(store);
    // Reopening keeps everything, and ids keep counting up.
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.count().unwrap(), 2);
    let c = store.record(&[event("door", t, "no")], None).unwrap();
    assert!(c[0].id > b[0].id);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn retention_by_age_and_by_size() {
    let dir = temp_dir("retention");
    let store = Store::open(&dir).unwrap();
    let t = now_ms();
    let day = 86_400_000;
    store
        .record(&[event("door", t - 3 * day, "old")], Some(&[1; 1000]))
        .unwrap();
    store.record(&[event("door", t, "new")], None).unwrap();
    let gone = store
        .prune(Duration::from_secs(2 * 86400), u64::MAX)
        .unwrap();
    assert_eq!(gone, 1);
    let left = store.events(&EventFilter::default()).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].event.answer, "new");

    // 200 events with 20 KB snapshots: ~4 MB; a 1 MiB budget keeps the newest.
    for i in 0..200 {
        store
            .record(
                &[event("door", t + i, &format!("a{i}"))],
                Some(&vec![i as u8; 20_000]),
            )
            .unwrap();
    }
    assert!(store.used_bytes().unwrap() > 3 << 20);
    store.prune(Duration::from_secs(86400), 1 << 20).unwrap();
    assert!(store.used_bytes().unwrap() <= 1 << 20);
    let left = store
        .events(&EventFilter {
            limit: 1000,
            ..EventFilter::default()
        })
        .unwrap();
    assert!(
        left.len() >= 20 && left.len() < 60,
        "{} events left",
        left.len()
    );
    assert_eq!(left[0].event.answer, "a199", "the newest stay");
    let _ = std::fs::remove_dir_all(&dir);
}
