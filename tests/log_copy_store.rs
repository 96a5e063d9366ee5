//! `registry copy-store`: a stopped store copied into a new directory with
//! this build's sled settings (8 MiB segments), every tree byte for byte.

use std::path::Path;
use std::process::Command;

use registry::log::verify::verify_full;
use registry::log::{Log, Store, SyncMode, WriterConfig};

#[path = "support/requests.rs"]
mod requests;
#[path = "support/retry.rs"]
mod retry;
use retry::retry_while_locked;

fn segment_size(dir: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(dir.join("conf")).unwrap())
        .lines()
        .find(|l| l.starts_with("segment_size: "))
        .unwrap()
        .to_string()
}

fn copy_store(from: &Path, to: &Path) -> std::process::Output {
    retry_while_locked(|| {
        let out = Command::new(env!("CARGO_BIN_EXE_registry"))
            .arg("copy-store")
            .arg("--from")
            .arg(from)
            .arg("--to")
            .arg(to)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if stderr.contains("could not acquire lock") {
            Err(stderr)
        } else {
            Ok(out)
        }
    })
    .unwrap()
}

/// Every tree of a store: its name and its (key, value) pairs in order.
type Contents = Vec<(Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>)>;

fn all_entries(dir: &Path) -> Contents {
    let db = retry_while_locked(|| registry::log::store::sled_config(dir).open()).unwrap();
    let mut names = db.tree_names();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let tree = db.open_tree(&name).unwrap();
            let kvs = tree
                .iter()
                .map(|kv| kv.unwrap())
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect();
            (name.to_vec(), kvs)
        })
        .collect()
}

#[test]
fn a_512_kib_store_is_copied_byte_for_byte_into_8_mib_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let old = tmp.path().join("old");
    // A store created with sled's default segment size, as before 2026-11-30.
    drop(sled::Config::new().path(&old).open().unwrap());
    let log = retry_while_locked(|| {
        Log::open(
            &old,
            WriterConfig {
                sync: SyncMode::Fdatasync,
            },
        )
    })
    .unwrap();
    for i in 0..300u32 {
        log.appender()
            .append_blocking(requests::noted(i as usize, 17))
            .unwrap();
    }
    let head = log.store().head().unwrap();
    log.shutdown().unwrap();
    std::fs::write(old.join("access.json"), b"{\"principals\":[]}").unwrap();
    assert_eq!(segment_size(&old), "segment_size: 524288");

    let new = tmp.path().join("new");
    let out = copy_store(&old, &new);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("read from the source and again from the copy"),
        "{stdout}"
    );
    assert_eq!(segment_size(&new), "segment_size: 8388608");
    assert_eq!(
        std::fs::read(new.join("access.json")).unwrap(),
        b"{\"principals\":[]}"
    );
    assert_eq!(
        all_entries(&old),
        all_entries(&new),
        "every tree, key and value is the same"
    );
    let store = retry_while_locked(|| Store::open(&new)).unwrap();
    assert_eq!(store.head().unwrap(), head);
    let (chain, _) = verify_full(&store, &mut |_, _| {}).unwrap();
    assert_eq!(chain.head, head);
    drop(store);

    // A target that is not empty is refused and left as it was.
    let busy = tmp.path().join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("keep.txt"), b"keep").unwrap();
    let out = copy_store(&old, &busy);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("exists and is not empty"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&busy)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("keep.txt")]);
}
