//! What a sync costs on the wire and on disk: a compressed manifest from a real nginx with
//! gzip on, and bundles whose files are links into the object store, not copies.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use converge::bundle::{publish, sync, Freshness, Manifest, Source, SyncOptions};
use support::Nginx;

const FILES: usize = 200;

/// A source tree of `FILES` small templates, as a fleet's generated roles would have.
fn source(dir: &Path) {
    fs::create_dir_all(dir.join("templates/app")).unwrap();
    fs::create_dir_all(dir.join("roles")).unwrap();
    fs::write(dir.join("roles/app.toml"), "# app\n").unwrap();
    for i in 0..FILES {
        fs::write(
            dir.join(format!("templates/app/svc{i:04}.conf.hbs")),
            format!("# service {i}\nport = {}\n", 20000 + i),
        )
        .unwrap();
    }
}

/// Source, publish dir and state dir under `t`, with the source published once; and the
/// id of that bundle.
fn published(t: &Path) -> (PathBuf, PathBuf, PathBuf, String) {
    let (src, out, state) = (t.join("src"), t.join("out"), t.join("state"));
    source(&src);
    let id = publish(&src, &out, None).unwrap().id;
    (src, out, state, id)
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for sub in ["roles", "templates/app"] {
        for e in fs::read_dir(dir.join(sub)).unwrap() {
            let e = e.unwrap();
            let name = format!("{sub}/{}", e.file_name().to_string_lossy());
            out.insert(name, fs::read(e.path()).unwrap());
        }
    }
    out
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_gzip_server_sends_the_manifest_compressed_and_the_bundle_verifies_on_decoded_bytes() {
    let t = tempfile::tempdir().unwrap();
    let (src, out, state, id) = published(t.path());
    let manifest_size = fs::metadata(out.join("manifest.json")).unwrap().len();
    let nginx = Nginx::serve_gzip(&out);
    let url = Source::parse(&format!("{}/", nginx.url())).unwrap();

    let first = sync(&url, &state, &SyncOptions::default()).unwrap();
    assert_eq!(
        first.freshness,
        Freshness::Fresh {
            fetched_objects: FILES + 1
        }
    );
    assert_eq!(first.id, id, "the id is the hash of the decoded manifest");
    assert_eq!(files(&first.bundle_dir), files(&src));
    nginx.wait_for_requests(FILES + 2);
    let transfers = nginx.transfers();
    let (path, sent, encoding) = &transfers[0];
    assert_eq!(
        (path.as_str(), encoding.as_str()),
        ("/manifest.json", "gzip")
    );
    assert!(
        *sent * 3 < manifest_size,
        "{sent} bytes sent for a {manifest_size}-byte manifest"
    );

    // The ETag nginx weakens when it compresses still makes an unchanged poll one 304.
    let second = sync(&url, &state, &SyncOptions::default()).unwrap();
    assert_eq!(second.freshness, Freshness::Unchanged);
    assert_eq!(nginx.wait_for_requests(FILES + 3).last(), Some(&304));
}

#[test]
fn a_new_bundle_links_its_files_to_the_object_store_instead_of_copying_them() {
    let t = tempfile::tempdir().unwrap();
    let (src, out, state, _) = published(t.path());
    let dir = Source::parse(out.to_str().unwrap()).unwrap();
    let first = sync(&dir, &state, &SyncOptions::default()).unwrap();
    fs::write(src.join("templates/app/svc0007.conf.hbs"), "# changed\n").unwrap();
    publish(&src, &out, None).unwrap();
    let second = sync(&dir, &state, &SyncOptions::default()).unwrap();
    assert_eq!(second.freshness, Freshness::Fresh { fetched_objects: 1 });
    assert_eq!(files(&second.bundle_dir), files(&src));

    let manifest = fs::read(second.bundle_dir.join(".manifest.json")).unwrap();
    let manifest = Manifest::parse(&manifest, "m").unwrap();
    for (rel, entry) in &manifest.files {
        let object = fs::metadata(state.join("objects").join(&entry.sha256)).unwrap();
        let new = fs::metadata(second.bundle_dir.join(rel)).unwrap();
        assert_eq!(new.ino(), object.ino(), "{rel} is the stored object");
        if rel != "templates/app/svc0007.conf.hbs" {
            let old = fs::metadata(first.bundle_dir.join(rel)).unwrap();
            assert_eq!(
                old.ino(),
                new.ino(),
                "{rel} is shared with the previous bundle"
            );
        }
    }
}
