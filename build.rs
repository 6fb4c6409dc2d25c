//! Embeds the two Swagger UI assets `/docs` needs, gzip-compressed.
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
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&raw).expect("gzip");
        let gz = gz.finish().expect("gzip");
        std::fs::write(out.join(format!("{asset}.gz")), gz).expect("write asset");
    }
}
