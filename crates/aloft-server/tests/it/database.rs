//! The server on a `PostgreSQL` that goes away and comes back.

use std::time::{Duration, Instant};

use aloft_testkit::postgres::PgServer;

use crate::common::{SimDevice, TestApp, wait_for};

#[test]
fn a_postgresql_restart_fails_requests_cleanly_and_the_server_recovers() {
    let pg = PgServer::start().unwrap();
    let app = TestApp::start_on_url(&pg.url());
    let mut dev = SimDevice::new("02:00:00:00:0d:01");
    dev.admit(&app);
    dev.next(&app, "app-1").expect(204);
    app.get("/api/management/v1/deployments/deployments")
        .expect(200);

    pg.stop().unwrap();
    let asked = Instant::now();
    let r = app.get("/api/management/v2/devauth/devices");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(
        r.text().contains("the database is unavailable"),
        "{}",
        r.text()
    );
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "the answer took {:?}",
        asked.elapsed()
    );
    assert_eq!(app.get("/readyz").status, 503);

    pg.up().unwrap();
    // No restart of the server: its pool connects again on its own.
    wait_for(15, "the server answers again", || {
        (app.get("/api/management/v2/devauth/devices").status == 200).then_some(())
    });
    app.get("/readyz").expect(200);
    assert_eq!(
        dev.next(&app, "app-1").status,
        204,
        "the device's token survived"
    );
}
