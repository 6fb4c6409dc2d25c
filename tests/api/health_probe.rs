//! `vkv health`, the probe for container health checks: options before or
//! after the subcommand.

use crate::common::*;

#[test]
fn health_takes_bind_before_or_after_the_subcommand() {
    let mut s = Server::start(&[]);
    let addr = s.addr.to_string();
    for args in [
        ["health", "--bind", addr.as_str()],
        ["--bind", addr.as_str(), "health"],
    ] {
        let out = run(&args);
        assert!(out.status.success(), "vkv {args:?}: {}", output_text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "healthy\n");
    }
    let out = run(&["health", "--bind", &addr, "--log-level", "warn"]);
    assert!(out.status.success(), "{}", output_text(&out));
    s.kill();
    // Nothing listening: unhealthy, whichever way the address was given.
    for args in [
        ["health", "--bind", addr.as_str()],
        ["--bind", addr.as_str(), "health"],
    ] {
        let out = run(&args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "vkv {args:?}: {}",
            output_text(&out)
        );
        // The address and the reason.
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("http://{addr}/health: connection refused")),
            "{err}"
        );
    }
}
