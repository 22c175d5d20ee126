//! The `server` binary: configuration errors and operator commands.

use crate::harness::*;
use std::process::Command;

fn server(db: &TestDb) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_server"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HERMETIC_DATABASE_URL", &db.url)
        .env("HERMETIC_ROOT_KEY", ROOT_KEY)
        .env("HERMETIC_LOG", "error");
    c
}

#[tokio::test]
async fn bad_configuration_stops_with_a_clear_message() {
    let db = TestDb::new().await;
    let out = server(&db).env("HERMETIC_LISTEN", "not-an-address").arg("migrate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen"), "{err}");
    let out = server(&db).env("HERMETIC_SESION__IDLE_TIMEOUT_SECS", "5").arg("migrate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sesion"));
    let out = server(&db).env("HERMETIC_ROOT_KEY", "AAAA").arg("migrate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn operator_commands_create_reset_and_disable_users() {
    let db = TestDb::new().await;
    let ok = |c: &mut Command| {
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    ok(server(&db).args(["admin", "create-org", "--name", "Clinic"]));
    let out = ok(server(&db).args([
        "admin",
        "create-user",
        "--email",
        "ops@clinic.test",
        "--role",
        "admin",
        "--generate-password",
    ]));
    assert!(out.contains("password (shown once): "));
    ok(server(&db).env("HERMETIC_NEW_USER_PASSWORD", PASSWORD).args([
        "admin",
        "create-user",
        "--email",
        "m@clinic.test",
        "--role",
        "marketer",
    ]));
    let out = server(&db)
        .env("HERMETIC_NEW_USER_PASSWORD", "password")
        .args(["admin", "create-user", "--email", "w@clinic.test", "--role", "analyst"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password"));
    ok(server(&db).args(["admin", "reset-mfa", "--email", "m@clinic.test"]));
    ok(server(&db).args(["admin", "disable-user", "--email", "m@clinic.test"]));
    let out = ok(server(&db).args(["admin", "verify-audit"]));
    assert!(out.contains(": ok ("), "{out}");
    // Seeding is idempotent.
    let first = ok(server(&db).env("HERMETIC_DEMO_ADMIN_PASSWORD", PASSWORD).args(["admin", "seed-demo"]));
    assert!(first.contains("created"));
    let second = ok(server(&db).args(["admin", "seed-demo"]));
    assert!(second.contains("already exists"));
    // A wrong root key is refused before anything is touched.
    let out = server(&db)
        .env("HERMETIC_ROOT_KEY", "BBECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
        .args(["admin", "verify-audit"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("root key"), "{}", String::from_utf8_lossy(&out.stderr));
}
