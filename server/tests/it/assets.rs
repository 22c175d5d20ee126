//! The site's build output over real HTTP: precompressed brotli/gzip files chosen by
//! `Accept-Encoding`, hashed names cached for a year, pages never cached.

use crate::harness::*;

const JS: &str = "jsHASHjsHASHjsHASHjs_1";
const WASM: &str = "wasmHASHwasmHASH-wasm2";
const CSS: &str = "cssHASHcssHASHcssHASH3";

/// A site as `cargo leptos build --release --precompress` with `hash-files` leaves it: hashed
/// names, `.br` and `.gz` next to each file, and the hash file naming the hashes.
fn hashed_site() -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("hermetic-site-{}", uuid::Uuid::new_v4().simple()));
    let pkg = dir.join("site/pkg");
    std::fs::create_dir_all(pkg.join("snippets")).unwrap();
    for (hash, ext) in [(JS, "js"), (WASM, "wasm"), (CSS, "css")] {
        let name = pkg.join(format!("hermetic.{hash}.{ext}"));
        std::fs::write(&name, format!("plain {ext}")).unwrap();
        std::fs::write(format!("{}.br", name.display()), format!("brotli {ext}")).unwrap();
        std::fs::write(format!("{}.gz", name.display()), format!("gzip {ext}")).unwrap();
    }
    std::fs::write(pkg.join("snippets/inline0.js"), "snippet").unwrap();
    let hash_file = dir.join("hash.txt");
    std::fs::write(&hash_file, format!("js: {JS}\nwasm: {WASM}\ncss: {CSS}\n")).unwrap();
    (dir, hash_file)
}

#[tokio::test]
async fn hashed_assets_are_served_compressed_and_cached_immutably_and_pages_are_not_cached() {
    let (dir, hash_file) = hashed_site();
    let app = TestApp::start_with(Options {
        env: vec![
            ("HERMETIC_SITE_ROOT", dir.join("site").display().to_string()),
            ("HERMETIC_SITE_HASH_FILE", hash_file.display().to_string()),
        ],
        ..Default::default()
    })
    .await;
    let c = app.client();

    // The page names the hashed files and is itself never cached.
    let page = c.get("/login").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.headers["cache-control"], "no-store");
    let assets = [
        (format!("/pkg/hermetic.{JS}.js"), "js", "javascript"),
        (format!("/pkg/hermetic.{WASM}.wasm"), "wasm", "application/wasm"),
        (format!("/pkg/hermetic.{CSS}.css"), "css", "text/css"),
    ];
    for (path, _, _) in &assets {
        assert!(page.body.contains(&format!("\"{path}\"")), "the page does not name {path}: {}", page.body);
    }

    for (path, ext, mime) in &assets {
        for (accept, encoding, body) in [
            ("gzip, deflate, br, zstd", Some("br"), format!("brotli {ext}")),
            ("gzip", Some("gzip"), format!("gzip {ext}")),
            ("identity", None, format!("plain {ext}")),
        ] {
            let r = c.get_with(path, &[("accept-encoding", accept)]).await;
            let h = |n: &str| r.headers.get(n).map(|v| v.to_str().unwrap().to_string());
            assert_eq!(r.status, 200, "{path} ({accept})");
            assert_eq!(h("content-encoding").as_deref(), encoding, "{path} ({accept})");
            assert_eq!(r.body, body, "{path} ({accept})");
            assert!(h("content-type").unwrap().contains(mime), "{path}: {:?}", h("content-type"));
            assert_eq!(h("cache-control").as_deref(), Some("public, max-age=31536000, immutable"), "{path}");
            assert!(h("vary").unwrap_or_default().to_lowercase().contains("accept-encoding"), "{path}: no Vary");
            assert_eq!(h("x-content-type-options").as_deref(), Some("nosniff"));
        }
    }

    // Unhashed files are revalidated on every use; a missing hashed name is not cached for a year.
    let r = c.get("/pkg/snippets/inline0.js").await;
    assert_eq!((r.status, r.body.as_str()), (200, "snippet"));
    assert_eq!(r.headers["cache-control"], "public, no-cache");
    let r = c.get("/pkg/hermetic.AAAAAAAAAAAAAAAAAAAAAA.wasm").await;
    assert_eq!(r.status, 404);
    assert_ne!(r.headers["cache-control"], "public, max-age=31536000, immutable");

    app.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn without_a_hash_file_nothing_is_cached_immutably() {
    let (dir, _) = hashed_site();
    let app = TestApp::start_with(Options {
        env: vec![("HERMETIC_SITE_ROOT", dir.join("site").display().to_string())],
        ..Default::default()
    })
    .await;
    let c = app.client();
    let page = c.get("/login").await;
    assert!(page.body.contains("\"/pkg/hermetic.js\""), "{}", page.body);
    let r = c.get_with(&format!("/pkg/hermetic.{WASM}.wasm"), &[("accept-encoding", "br")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["cache-control"], "public, no-cache");
    app.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}
