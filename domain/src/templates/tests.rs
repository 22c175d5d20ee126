use super::*;

fn snapshot(name: &str, actual: &str) {
    let path = format!("{}/src/templates/snapshots/{name}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var("UPDATE_SNAPSHOTS").as_deref() == Ok("1") {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing snapshot {path}; run with UPDATE_SNAPSHOTS=1"));
    assert_eq!(actual, expected, "snapshot {name} differs (UPDATE_SNAPSHOTS=1 to accept)");
}

fn every_block() -> Design {
    Design {
        blocks: vec![
            Block::Heading { text: "Hello {{default contact.first_name \"there\"}} & <friends>".into(), level: 1 },
            Block::Text {
                text: "**Bold** and _italic_ and [a link](https://example.org/a?b=1&c=2).\nSecond line.\n\n<script>alert(1)</script>\n\"><img src=x onerror=alert(1)>\n[bad](javascript:alert(1)) {{contact.time_zone}}".into(),
            },
            Block::Button { label: "Book <now>".into(), url: "https://example.org/book?x=1&y=2".into() },
            Block::Image { src: "https://example.org/i.png".into(), alt: "A \"quoted\" picture".into(), width: Some(300), link: Some("{{links.view_in_browser}}".into()) },
            Block::Divider,
            Block::Spacer { height: 12 },
            Block::Columns {
                left: vec![Block::Text { text: "Left".into() }],
                right: vec![Block::Button { label: "Right".into(), url: "mailto:care@example.org".into() }],
            },
            Block::Footer { text: "{{organisation.name}} · [Unsubscribe]({{links.unsubscribe}})".into() },
        ],
    }
}

#[test]
fn snapshots_of_every_block_and_the_starters() {
    let d = every_block();
    d.validate().unwrap();
    snapshot("every_block.html", &d.to_html());
    snapshot("every_block.txt", &d.to_text());
    for s in starters() {
        s.design.validate().unwrap();
        let html = s.design.to_html();
        assert!(html.contains("href=\"{{links.unsubscribe}}\""), "{}", s.key);
        assert!(!s.subject.contains("contact.") && !s.preheader.contains("contact."), "{}", s.key);
        snapshot(&format!("{}.html", s.key), &html);
        snapshot(&format!("{}.txt", s.key), &s.design.to_text());
    }
}

#[test]
fn author_text_is_escaped_and_merge_tags_are_verbatim() {
    let html = every_block().to_html();
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("<img src=x"));
    assert!(!html.contains("href=\"javascript"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("{{default contact.first_name \"there\"}} &amp; &lt;friends&gt;"));
    assert!(html.contains("<strong>Bold</strong>") && html.contains("<em>italic</em>"));
    assert!(html.contains("href=\"https://example.org/a?b=1&amp;c=2\""));
    assert!(html.contains("href=\"{{links.view_in_browser}}\""));
    assert!(html.contains("[bad](javascript:alert(1))"), "an invalid link stays literal text");
    assert!(html.contains("class=\"col\""));
    let text = every_block().to_text();
    assert!(text.contains("a link (https://example.org/a?b=1&c=2)") && text.contains("Book <now>: https://"));
    assert!(text.contains("Unsubscribe ({{links.unsubscribe}})"));
    // An unclosed tag is just text.
    assert_eq!(escape_keep_tags("a {{b"), "a {{b");
    assert_eq!(escape_keep_tags("<{{x}}>"), "&lt;{{x}}&gt;");
}

#[test]
fn validation_names_the_block_and_refuses_unsafe_links() {
    let bad = |b: Block| Design { blocks: vec![Block::Divider, b] }.validate().unwrap_err().to_string();
    assert!(bad(Block::Button { label: "Go".into(), url: "javascript:alert(1)".into() }).starts_with("block 2:"));
    assert!(bad(Block::Button { label: "Go".into(), url: " JAVASCRIPT:x".into() }).contains("https://"));
    assert!(
        bad(Block::Button { label: "Go".into(), url: "https://a.example/\"onmouseover=x".into() }).contains("link")
    );
    assert!(bad(Block::Button { label: "Go".into(), url: "{{contact.email}}".into() }).contains("system link"));
    assert!(
        bad(Block::Image { src: "http://x.example/i.png".into(), alt: String::new(), width: None, link: None })
            .contains("https://")
    );
    assert!(
        bad(Block::Image { src: "data:image/png;base64,AAAA".into(), alt: String::new(), width: None, link: None })
            .contains("https://")
    );
    assert!(
        bad(Block::Image { src: "https://x.example/i.png".into(), alt: String::new(), width: Some(5000), link: None })
            .contains("width")
    );
    assert!(bad(Block::Heading { text: "x".into(), level: 7 }).contains("size"));
    assert!(bad(Block::Spacer { height: 0 }).contains("height"));
    assert!(bad(Block::Text { text: "x".repeat(MAX_TEXT_CHARS + 1) }).contains("longer"));
    let nested = Block::Columns { left: vec![Block::Columns { left: vec![], right: vec![] }], right: vec![] };
    assert!(bad(nested).starts_with("block 2, left column 1:"));
    let many = Design { blocks: vec![Block::Divider; MAX_BLOCKS + 1] };
    assert!(many.validate().unwrap_err().to_string().contains("more than"));
    assert!(Design::default().validate().is_err());
    assert!(valid_url("{{ links.unsubscribe }}") && valid_url("mailto:a@b.example") && !valid_url("https://"));
}

#[test]
fn html_to_text_handles_real_and_hostile_html() {
    let t = html_to_text(
        "<html><head><title>T</title><style>p{color:red}</style></head><body><h1>Hi&nbsp;there</h1>\
         <p>Dear {{default contact.first_name \"friend\"}},<br>line two &amp; more &#8212; &#x41;</p>\
         <script>alert('x')</script><!-- hidden --><ul><li>One</li><li>Two</li></ul>\
         <a href=\"https://example.org/x\">Visit</a> <a href=\"#top\">Top</a> <img alt=\"Logo\" src=\"x\"><hr></body></html>",
    );
    assert_eq!(
        t,
        "Hi there\n\nDear {{default contact.first_name \"friend\"}},\nline two & more — A\n\n- One\n- Two\nVisit (https://example.org/x) Top [Logo]\n----------\n"
    );
    for hostile in [
        "<",
        "<<<<",
        "<a href=",
        "<!-- never closed",
        "<script>no end",
        "&",
        "&#99999999999;",
        "&#xZZ;",
        "{{",
        "}}{{",
        "<p>caf\u{e9} \u{1F600}</p>",
        "<a href='x'>unterminated",
        "<img alt=\"",
        "\u{0}\u{1}<b>\u{7f}",
    ] {
        let _ = html_to_text(hostile);
    }
    let big = "<".repeat(256 * 1024);
    assert!(html_to_text(&big).len() < big.len() + 2);
    // A starter's own HTML converts to readable text with its links.
    let starter = &starters()[0];
    let text = html_to_text(&starter.design.to_html());
    assert!(text.contains("Manage my appointment (https://example.org/appointments)"), "{text}");
    assert!(text.contains("Unsubscribe ({{links.unsubscribe}})"), "{text}");
    assert!(!text.contains('<'), "{text}");
}

#[test]
fn designs_round_trip_through_json() {
    let d = every_block();
    let j = serde_json::to_value(&d).unwrap();
    assert_eq!(j["blocks"][0]["type"], "heading");
    assert_eq!(j["blocks"][0]["level"], 1);
    assert_eq!(j["blocks"][4], serde_json::json!({ "type": "divider" }));
    let back: Design = serde_json::from_value(j).unwrap();
    assert_eq!(back, d);
    for (k, _) in BLOCK_KINDS {
        assert!(Block::new_of_kind(k).is_some(), "{k}");
    }
}

#[test]
fn scheme_scan_sees_through_disguises() {
    for disguised in [
        "<a href=\"jav&#x61;script:alert(1)\">",
        "<a href=\"jav&#X61;script:alert(1)\">",
        "<a href=\"&#106;avascript:alert(1)\">",
        "<a href=\"&#0000106avascript:alert(1)\">",
        "<a href=\"java\tscript:alert(1)\">",
        "<a href=\"java&Tab;script:alert(1)\">",
        "<a href=\"javascript&colon;alert(1)\">",
        "<a href=\" JaVaScRiPt:alert(1)\">",
        "<a href=\"java&NewLine;script&#58alert(1)\">",
    ] {
        assert!(squash_for_scheme_scan(disguised).contains("javascript:"), "{disguised}");
    }
    for harmless in ["<a href=\"https://example.org/?a=1&amp;b=2\">", "Tom &amp; Jerry &#x;&#;&", "&#xFFFFFFFFFF;"] {
        assert!(!squash_for_scheme_scan(harmless).contains("javascript:"), "{harmless}");
    }
    // Never panics on references cut short or multi-byte neighbours.
    for odd in ["&", "&#", "&#x", "é&é", "&colon", "&#12345678901234567890;", "&\u{1F600};"] {
        let _ = squash_for_scheme_scan(odd);
    }
}
