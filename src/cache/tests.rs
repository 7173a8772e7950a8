use super::*;
use axum::http::HeaderValue;

fn cfg() -> CacheConfig {
    CacheConfig::default()
}

#[test]
fn cache_control() {
    let mut h = HeaderMap::new();
    let p = policy(&h, &cfg(), None, false).unwrap();
    assert!(p.read && p.write);
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    assert!(policy(&h, &cfg(), None, false).is_none());
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    let p = policy(&h, &cfg(), None, false).unwrap();
    assert!(!p.read && p.write);
    h.insert("cache-control", HeaderValue::from_static("max-age=5"));
    assert_eq!(
        policy(&h, &cfg(), None, false).unwrap().max_age,
        Some(Duration::from_secs(5))
    );
    h.insert("x-gateway-cache-ttl", HeaderValue::from_static("7"));
    assert_eq!(
        policy(&h, &cfg(), None, false).unwrap().ttl,
        Duration::from_secs(7)
    );
    assert!(policy(&HeaderMap::new(), &cfg(), Some(false), false).is_none());
    let mut only = cfg();
    only.only_deterministic = true;
    assert!(policy(&HeaderMap::new(), &only, None, false).is_none());
    assert!(policy(&HeaderMap::new(), &only, None, true).is_some());
}

#[test]
fn l2_encoding_round_trips() {
    let e = Entry::new(
        Bytes::from_static(b"{\"a\":1}\n{}"),
        Duration::from_secs(9),
        "p",
        "m",
    );
    let d = decode(&encode(&e)).unwrap();
    assert_eq!(d.body, e.body);
    assert_eq!(d.ttl, e.ttl);
    assert_eq!(d.provider, "p");
    assert!(decode(b"\x09garbage").is_none());
}

fn far() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(60)
}

#[tokio::test]
async fn single_flight_and_l1() {
    let cache = Cache::new(&cfg(), None);
    let p = policy(&HeaderMap::new(), &cfg(), None, false).unwrap();
    let k = [7u8; 32];
    let Lookup::Miss(leader) = cache.lookup(k, &p, far()).await else {
        panic!("miss expected")
    };
    let Lookup::Wait(rx) = cache.lookup(k, &p, far()).await else {
        panic!("wait expected")
    };
    let e = Arc::new(Entry::new(
        Bytes::from_static(b"x"),
        Duration::from_secs(60),
        "p",
        "m",
    ));
    cache.finish(k, e, true, Some(leader)).await;
    let got = Cache::wait(rx, tokio::time::Instant::now() + Duration::from_secs(1)).await;
    assert_eq!(got.unwrap().body, Bytes::from_static(b"x"));
    assert!(matches!(
        cache.lookup(k, &p, far()).await,
        Lookup::Hit(_, Layer::L1)
    ));
}

#[tokio::test]
async fn abandoned_leader_releases_waiters() {
    let cache = Cache::new(&cfg(), None);
    let p = policy(&HeaderMap::new(), &cfg(), None, false).unwrap();
    let k = [8u8; 32];
    let Lookup::Miss(leader) = cache.lookup(k, &p, far()).await else {
        panic!()
    };
    let Lookup::Wait(rx) = cache.lookup(k, &p, far()).await else {
        panic!()
    };
    drop(leader);
    let got = Cache::wait(rx, tokio::time::Instant::now() + Duration::from_secs(1)).await;
    assert!(got.is_none());
    assert!(matches!(cache.lookup(k, &p, far()).await, Lookup::Miss(_)));
}

#[tokio::test]
async fn l1_bounded_by_entries() {
    let mut c = cfg();
    c.l1_max_entries = 10;
    c.l1_max_bytes = crate::config::ByteSize(10 * 1024);
    let cache = Cache::new(&c, None);
    for i in 0..100u8 {
        let e = Arc::new(Entry::new(
            Bytes::from_static(b"x"),
            Duration::from_secs(60),
            "p",
            "m",
        ));
        cache.l1.insert([i; 32], e).await;
    }
    cache.l1.run_pending_tasks().await;
    assert!(cache.l1.entry_count() <= 10, "{}", cache.l1.entry_count());
}
