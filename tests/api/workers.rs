//! The worker pool in isolation: panics are contained, overload is 503.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vkv::http::completion::Reply;
use vkv::http::message::{HttpRequest, HttpResponse};
use vkv::http::workers::WorkerPool;

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
    let (started, running) = crossbeam_channel::unbounded::<()>();
    let pool = Arc::new(
        WorkerPool::start(
            1,
            1,
            Arc::new(move |_: &HttpRequest| -> Reply {
                let _ = started.send(());
                let _ = wait.recv_timeout(Duration::from_secs(10));
                HttpResponse::json(200, b"{}".to_vec()).into()
            }),
        )
        .unwrap(),
    );
    let send = |target: &'static str| {
        let p = Arc::clone(&pool);
        std::thread::spawn(move || {
            let start = Instant::now();
            let r = p.dispatch(req(target));
            (
                r.status,
                r.header("Retry-After").map(str::to_string),
                start.elapsed(),
            )
        })
    };
    // One request occupies the only worker...
    let first = send("/slow");
    running
        .recv_timeout(Duration::from_secs(10))
        .expect("the worker never started the first request");
    // ...then two more race for the one queue slot: one waits in the
    // queue, the other finds it full and must be answered 503 at once.
    let mut racing = vec![send("/slow"), send("/more")];
    assert!(
        crate::common::poll_until(Duration::from_secs(10), || racing
            .iter()
            .any(|t| t.is_finished())),
        "neither request was refused"
    );
    let refused = racing.remove(racing.iter().position(|t| t.is_finished()).unwrap());
    let (status, retry_after, elapsed) = refused.join().unwrap();
    assert_eq!(status, 503);
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert!(
        elapsed < Duration::from_millis(100),
        "503 was not immediate"
    );
    release.send(()).unwrap();
    release.send(()).unwrap();
    for h in [first, racing.remove(0)] {
        assert_eq!(h.join().unwrap().0, 200);
    }
    // Recovered: the next request is served.
    let again = send("/again");
    release.send(()).unwrap();
    assert_eq!(again.join().unwrap().0, 200);
}
