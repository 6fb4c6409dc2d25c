//! The worker pool in isolation: panics are contained, overload is 503.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vkv::http::message::{HttpRequest, HttpResponse};
use vkv::http::workers::{Reply, WorkerPool};

fn req(target: &str) -> HttpRequest {
    HttpRequest {
        method: "GET".into(),
        target: target.into(),
        headers: vec![],
        body: vec![],
        remote: None,
    }
}

#[test]
fn a_panic_is_answered_500_and_the_worker_lives_on() {
    let pool = WorkerPool::start(
        1,
        4,
        Arc::new(|r: &HttpRequest| -> Reply {
            if r.target == "/boom" {
                panic!("boom");
            }
            HttpResponse::json(200, b"{}".to_vec()).into()
        }),
    )
    .unwrap();
    for _ in 0..3 {
        let r = pool.dispatch(req("/boom"));
        assert_eq!(r.status, 500);
        assert!(String::from_utf8_lossy(&r.body).contains("detail"));
        assert_eq!(
            pool.dispatch(req("/ok")).status,
            200,
            "the only worker died"
        );
    }
    pool.shutdown();
}

#[test]
fn a_full_queue_answers_503_with_retry_after_at_once() {
    let (release, wait) = crossbeam_channel::bounded::<()>(0);
    let pool = Arc::new(
        WorkerPool::start(
            1,
            1,
            Arc::new(move |_: &HttpRequest| -> Reply {
                let _ = wait.recv_timeout(Duration::from_secs(10));
                HttpResponse::json(200, b"{}".to_vec()).into()
            }),
        )
        .unwrap(),
    );
    // One request occupies the worker, then one fills the queue (spaced so
    // the worker has taken the first out of the queue before the second).
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let p = Arc::clone(&pool);
            let t = std::thread::spawn(move || p.dispatch(req("/slow")).status);
            std::thread::sleep(Duration::from_millis(200));
            t
        })
        .collect();
    let start = Instant::now();
    let r = pool.dispatch(req("/more"));
    assert_eq!(r.status, 503);
    assert_eq!(r.header("Retry-After"), Some("1"));
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "503 was not immediate"
    );
    release.send(()).unwrap();
    release.send(()).unwrap();
    for h in busy {
        assert_eq!(h.join().unwrap(), 200);
    }
    // Recovered: the next request is served.
    let p = Arc::clone(&pool);
    let t = std::thread::spawn(move || p.dispatch(req("/again")).status);
    release.send(()).unwrap();
    assert_eq!(t.join().unwrap(), 200);
}
