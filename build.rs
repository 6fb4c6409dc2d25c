//! Embeds the two Swagger UI assets `/docs` needs, gzip-compressed, and
//! the key browser's (`/ui`, sources in `src/http/handlers/ui/`).
//!
//! The assets come from the `utoipa-swagger-ui-vendored` crate (the Swagger
//! UI release zip, published on crates.io), so nothing is downloaded at
//! build or run time. Only `swagger-ui-bundle.js` and `swagger-ui.css` are
//! kept (the page itself is vkv's own `src/http/handlers/docs.html`): 0.44
//! MB instead of the 4.3 MB of the whole distribution.

use std::io::{Cursor, Read, Write};
use std::path::PathBuf;

const ASSETS: [&str; 2] = ["swagger-ui-bundle.js", "swagger-ui.css"];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    key_browser(&out);
    let zip = utoipa_swagger_ui_vendored::SWAGGER_UI_VENDORED;
    let mut archive = zip::ZipArchive::new(Cursor::new(zip)).expect("vendored Swagger UI zip");
    for asset in ASSETS {
        let suffix = format!("/dist/{asset}");
        let mut raw = Vec::new();
        for i in 0..archive.len() {
            let mut f = archive.by_index(i).expect("zip entry");
            if f.name().expect("entry name").ends_with(&suffix) {
                f.read_to_end(&mut raw).expect("read asset");
                break;
            }
        }
        assert!(!raw.is_empty(), "{asset} missing from the Swagger UI zip");
        std::fs::write(out.join(format!("{asset}.gz")), gzip(&raw)).expect("write asset");
    }
}

fn gzip(raw: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(raw).expect("gzip");
    gz.finish().expect("gzip")
}

/// The key browser: `app.js` and `app.css` gzipped, and the page with
/// `{{VERSION}}` replaced by a hash of both (its asset links carry it, so
/// a cached old asset is never used by a new page).
fn key_browser(out: &std::path::Path) {
    let dir = PathBuf::from("src/http/handlers/ui");
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a, 64 bits
    for asset in ["app.js", "app.css"] {
        let path = dir.join(asset);
        println!("cargo:rerun-if-changed={}", path.display());
        let raw = std::fs::read(&path).expect("read a key browser asset");
        for b in &raw {
            hash = (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        std::fs::write(out.join(format!("ui-{asset}.gz")), gzip(&raw)).expect("write asset");
    }
    let page = dir.join("index.html");
    println!("cargo:rerun-if-changed={}", page.display());
    let html = std::fs::read_to_string(&page).expect("read the key browser page");
    let html = html.replace("{{VERSION}}", &format!("{:012x}", hash >> 16));
    std::fs::write(out.join("ui.html"), html).expect("write the page");
}
