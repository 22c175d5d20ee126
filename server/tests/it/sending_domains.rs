//! Sending domains through the server functions an administrator's browser calls, checked against a
//! real DNS server process (scripts/lib/dns_server.py): records missing, wrong, duplicated and
//! right; DNS that does not answer; hostile names; another organisation's domain; the periodic
//! re-check; the sealed key.

use crate::contacts::scalar;
use crate::harness::*;
use domain::Role;
use serde_json::Value;

fn zone_lines(d: &Value) -> Vec<String> {
    d["records"].as_array().unwrap().iter().map(|r| r["zone_line"].as_str().unwrap().to_string()).collect()
}

fn check<'a>(d: &'a Value, kind: &str) -> &'a Value {
    d["checks"].as_array().unwrap().iter().find(|c| c["kind"] == kind).unwrap_or_else(|| panic!("no {kind} in {d}"))
}

async fn dns_app() -> TestApp {
    // The relay's name is what SPF must include.
    TestApp::start_with(Options {
        dns: true,
        env: vec![("HERMETIC_MAIL__SPF_INCLUDE", "_spf.relay.example".into())],
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn a_domain_is_verified_only_when_its_records_are_published_in_dns() {
    let app = dns_app().await;
    let dns = app.dns.as_ref().unwrap();
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    app.add_user(org, "marketer@clinic.test", Role::Marketer).await;
    let (admin, secret) = app.sign_in("admin@clinic.test", None).await;

    // Added in any spelling, stored in one: lower case, no final dot.
    let (code, d) = admin.call("add_sending_domain", &[("domain", " Clinic.Example. ")]).await;
    assert_eq!(code, 200, "{d}");
    assert_eq!(d["domain"], "clinic.example");
    assert_eq!(d["status"], "pending");
    let id = d["id"].as_str().unwrap().to_string();
    let selector = d["selector"].as_str().unwrap().to_string();
    let records = d["records"].as_array().unwrap();
    assert_eq!(records[0]["name"], format!("{selector}._domainkey.clinic.example"));
    assert!(records[0]["value"].as_str().unwrap().starts_with("v=DKIM1; k=rsa; p=MII"));
    assert_eq!(records[1]["value"], "v=spf1 include:_spf.relay.example ~all");
    assert_eq!(records[2]["name"], "_dmarc.clinic.example");
    assert!(records[2]["value"].as_str().unwrap().contains("p=none"));
    assert!(records[2]["note"].as_str().unwrap().contains("p=none"));
    // The private key is sealed (version byte, key id, nonce, ciphertext), never stored plain.
    assert_eq!(scalar(&app, "SELECT count(*) FROM sending_domain WHERE get_byte(dkim_key, 0) = 1").await, 1);
    assert_eq!(
        scalar(&app, "SELECT count(*) FROM sending_domain WHERE position('PRIVATE KEY'::bytea IN dkim_key) > 0").await,
        0
    );
    let (code, _) = admin.call("add_sending_domain", &[("domain", "clinic.example")]).await;
    assert_eq!(code, 409, "the same domain twice");

    // Nothing published: every record fails, each with its reason.
    let (code, v) = admin.call("verify_sending_domain", &[("id", &id)]).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "failed");
    for kind in ["dkim", "spf", "dmarc"] {
        assert_eq!(check(&v, kind)["ok"], false, "{v}");
    }
    assert!(check(&v, "dkim")["reason"].as_str().unwrap().contains("No TXT record"), "{v}");

    // Wrong: another key, an SPF record without the relay, two DMARC records.
    let lines = zone_lines(&d);
    dns.set(&format!(
        "{selector}._domainkey.clinic.example. 60 IN TXT \"v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwrong\"\n\
         clinic.example. 60 IN TXT \"v=spf1 mx -all\"\n\
         clinic.example. 60 IN TXT \"google-site-verification=abc\"\n\
         _dmarc.clinic.example. 60 IN TXT \"v=DMARC1; p=none\"\n\
         _dmarc.clinic.example. 60 IN TXT \"v=DMARC1; p=reject\"\n"
    ));
    let (_, v) = admin.call("verify_sending_domain", &[("id", &id)]).await;
    assert_eq!(v["status"], "failed");
    assert!(check(&v, "dkim")["reason"].as_str().unwrap().contains("not this domain's key"), "{v}");
    assert!(check(&v, "spf")["reason"].as_str().unwrap().contains("include:_spf.relay.example"), "{v}");
    assert!(check(&v, "dmarc")["reason"].as_str().unwrap().contains("several"), "{v}");
    // Two SPF records are an error too.
    dns.set(&format!(
        "{}\n{}\nclinic.example. 60 IN TXT \"v=spf1 a -all\"\n",
        lines.join("\n"),
        "clinic.example. 60 IN TXT \"v=spf1 include:_spf.relay.example ~all\""
    ));
    let (_, v) = admin.call("verify_sending_domain", &[("id", &id)]).await;
    assert_eq!(v["status"], "failed");
    assert!(check(&v, "spf")["reason"].as_str().unwrap().contains("only one"), "{v}");

    // Published as shown (the DKIM value split into two strings, as the zone line has it): verified.
    dns.set(&lines.join("\n"));
    let (_, v) = admin.call("verify_sending_domain", &[("id", &id)]).await;
    assert_eq!(v["status"], "verified", "{v}");
    for kind in ["dkim", "spf", "dmarc"] {
        assert_eq!(check(&v, kind)["ok"], true, "{v}");
    }
    assert!(v["verified_at"].is_string());

    // DNS that does not answer (the zone no longer parses: SERVFAIL) changes nothing.
    dns.set("this is not a zone file \"\n");
    let (_, v) = admin.call("verify_sending_domain", &[("id", &id)]).await;
    assert_eq!(v["status"], "verified", "a lookup failure is not a missing record: {v}");
    assert!(check(&v, "dkim")["reason"].as_str().unwrap().contains("no answer"), "{v}");

    // The periodic re-check: records gone for good make the domain unverified.
    dns.set(&lines.join("\n"));
    app.advance(30 * 60);
    assert_eq!(service::sending_domains::recheck_due(&app.services).await.unwrap().checked, 0, "not due yet");
    dns.set("");
    app.advance(31 * 60);
    let r = service::sending_domains::recheck_due(&app.services).await.unwrap();
    assert_eq!((r.checked, r.lost), (1, 1));
    // (An hour passed on the app's clock: the session has timed out.)
    let (admin, _) = app.sign_in("admin@clinic.test", Some(&secret)).await;
    let (_, list) = admin.call("list_sending_domains", &[]).await;
    assert_eq!(list[0]["status"], "failed", "{list}");

    // Every check is in the audit trail, with its outcome and per-record results.
    assert!(scalar(&app, "SELECT count(*) FROM audit_event WHERE action = 'sending_domain.checked'").await >= 6);
    assert_eq!(
        scalar(
            &app,
            "SELECT count(*) FROM audit_event WHERE action = 'sending_domain.checked' AND actor_kind = 'system' AND outcome = 'failure'"
        )
        .await,
        1
    );
    assert_eq!(scalar(&app, "SELECT count(*) FROM audit_event WHERE action = 'sending_domain.added'").await, 1);

    // Only administrators manage domains.
    let (marketer, _) = app.sign_in("marketer@clinic.test", None).await;
    for (ep, form) in [
        ("list_sending_domains", vec![]),
        ("add_sending_domain", vec![("domain", "marketing.example")]),
        ("verify_sending_domain", vec![("id", id.as_str())]),
        ("remove_sending_domain", vec![("id", id.as_str())]),
    ] {
        assert_eq!(marketer.call(ep, &form).await.0, 403, "{ep}");
    }

    // Removing destroys the row and its key, audited.
    assert_eq!(admin.call("remove_sending_domain", &[("id", &id)]).await.0, 200);
    assert_eq!(scalar(&app, "SELECT count(*) FROM sending_domain").await, 0);
    assert_eq!(scalar(&app, "SELECT count(*) FROM audit_event WHERE action = 'sending_domain.removed'").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn hostile_domain_names_and_another_organisations_domain() {
    let app = dns_app().await;
    let dns = app.dns.as_ref().unwrap();
    let org = app.org_with_user("Clinic", "admin@clinic.test", Role::Admin).await;
    let other = app.org_with_user("Other", "admin@other.test", Role::Admin).await;
    let (admin, _) = app.sign_in("admin@clinic.test", None).await;
    let long_label = format!("{}.example", "a".repeat(64));
    let long_name = vec!["abcdefghij"; 26].join(".");
    let huge = "x".repeat(100_000);
    for bad in [
        "",
        "*.clinic.example",
        "192.0.2.10",
        "[2001:db8::1]",
        "localhost",
        "clinic..example",
        "clinic.example..",
        "news@clinic.example",
        "https://clinic.example",
        "clinic.example\r\nBcc: x@evil.test",
        "clinic.example\u{0}",
        "-clinic.example",
        "clin_ic.example",
        "\u{0301}.example",
        long_label.as_str(),
        long_name.as_str(),
        huge.as_str(),
    ] {
        let (code, body) = admin.call("add_sending_domain", &[("domain", bad)]).await;
        assert_eq!(code, 422, "{bad:.40}: {body}");
        let message = body["message"].as_str().unwrap();
        assert_eq!(body["field"]["field"], "domain", "{body}");
        assert!(message.starts_with("Domain"), "{message}");
        assert!(!message.contains("evil") && message.len() < 200, "the answer never echoes the input: {message}");
    }
    assert_eq!(scalar(&app, "SELECT count(*) FROM sending_domain").await, 0, "nothing hostile was stored");
    // Unicode names are stored as A-labels and shown as people read them.
    let (code, d) = admin.call("add_sending_domain", &[("domain", "Bücher.Example")]).await;
    assert_eq!(code, 200, "{d}");
    assert_eq!(d["domain"], "xn--bcher-kva.example");
    assert_eq!(d["unicode"], "bücher.example");

    // Another organisation verified shared.example. Adding it says nothing (that would tell any
    // administrator which domains other customers use); after publishing this organisation's own
    // records — proof of control of its DNS — verifying is refused, and nothing is verified twice.
    let theirs = app.verified_domain(other, "shared.example").await;
    let (code, d) = admin.call("add_sending_domain", &[("domain", "shared.example")]).await;
    assert_eq!(code, 200, "{d}");
    assert_ne!(d["selector"], theirs.selector.as_str(), "each organisation publishes its own key");
    dns.publish(&zone_lines(&d));
    let (code, body) = admin.call("verify_sending_domain", &[("id", d["id"].as_str().unwrap())]).await;
    assert_eq!(code, 409, "{body}");
    assert!(body["message"].as_str().unwrap().contains("another organisation"), "{body}");
    assert_eq!(
        scalar(&app, "SELECT count(*) FROM sending_domain WHERE domain = 'shared.example' AND status = 'verified'")
            .await,
        1
    );
    // Another organisation's domain id is simply not found.
    let theirs_id = theirs.id.to_string();
    for ep in ["verify_sending_domain", "remove_sending_domain"] {
        assert_eq!(admin.call(ep, &[("id", &theirs_id)]).await.0, 404, "{ep}");
    }
    let (_, list) = admin.call("list_sending_domains", &[]).await;
    assert_eq!(list.as_array().unwrap().len(), 2, "only this organisation's domains: {list}");
    let _ = org;
    app.stop().await;
}
