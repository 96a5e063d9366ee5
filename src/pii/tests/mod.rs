//! Tests of the personal-data module, on real sled directories.

mod blind_tests;
mod disk_tests;
mod keystore_tests;
mod master_tests;
mod seal_tests;

use std::path::Path;

use super::{seal_for_request, DataKey, KeyStore, MasterKey};

/// Seals as one request does (the only way the registry seals).
pub(super) fn seal(key: &DataKey, case_id: &str, field: &str, plaintext: &[u8]) -> Vec<u8> {
    seal_for_request(key, case_id, field, "rq-test", plaintext)
}

/// A fixed master key for tests (`byte` repeated).
pub(super) fn master(byte: u8) -> MasterKey {
    MasterKey::from_bytes([byte; 32])
}

/// Opens a sled db in `dir`, retrying for a while when a db just dropped
/// still holds its file lock (sled's background threads release it a
/// moment after the last handle goes; seen under a loaded CI machine).
pub(super) fn open_db(dir: &Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sled::Config::new().path(dir).open() {
            Ok(db) => return db,
            Err(e)
                if std::time::Instant::now() < deadline
                    && e.to_string().contains("could not acquire lock") =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            Err(e) => panic!("open sled: {e:?}"),
        }
    }
}

/// Opens a key store in a db.
pub(super) fn open_store(db: &sled::Db, byte: u8) -> KeyStore {
    KeyStore::open(db, master(byte)).expect("open key store")
}

/// Every file under `dir`, recursively, with its contents.
pub(super) fn read_all_files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read file");
                out.push((path, bytes));
            }
        }
    }
    out
}

/// Files under `dir` whose contents hold `needle`.
pub(super) fn files_containing(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    read_all_files(dir)
        .into_iter()
        .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
        .map(|(p, _)| p)
        .collect()
}
