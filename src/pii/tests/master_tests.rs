use super::super::{KeyStore, MasterKey, PiiError};
use super::open_db;

const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

#[test]
fn load_accepts_64_hex_with_optional_newline() {
    let dir = tempfile::tempdir().unwrap();
    let expected = MasterKey::from_bytes(std::array::from_fn(|i| i as u8)).key_id();
    for (name, text) in [
        ("plain", HEX.to_string()),
        ("nl", format!("{HEX}\n")),
        ("crlf", format!("{HEX}\r\n")),
        ("upper", HEX.to_uppercase()),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        assert_eq!(MasterKey::load(&path).unwrap().key_id(), expected, "{name}");
    }
}

#[test]
fn load_rejects_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("short", HEX[..62].to_string()),
        ("long", format!("{HEX}00")),
        ("nothex", format!("{}zz", &HEX[..62])),
        ("two-newlines", format!("{HEX}\n\n")),
        ("spaces", format!(" {HEX}")),
        ("empty", String::new()),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &text).unwrap();
        let err = MasterKey::load(&path).unwrap_err();
        assert!(matches!(err, PiiError::BadKeyFile { .. }), "{name}: {err:?}");
        assert!(!err.to_string().contains(&HEX[..16]), "error quotes key material");
    }
    assert!(matches!(
        MasterKey::load(dir.path().join("missing")),
        Err(PiiError::Io(_))
    ));
}

#[test]
fn from_env_reads_hex() {
    let var = "MIGREG_PII_TEST_MASTER_KEY_FROM_ENV";
    std::env::set_var(var, HEX);
    let key = MasterKey::from_env(var).unwrap();
    assert_eq!(
        key.key_id(),
        MasterKey::from_bytes(std::array::from_fn(|i| i as u8)).key_id()
    );
    std::env::set_var(var, "nothex");
    assert!(matches!(
        MasterKey::from_env(var),
        Err(PiiError::BadKeyFile { .. })
    ));
    std::env::remove_var(var);
    assert!(matches!(
        MasterKey::from_env(var),
        Err(PiiError::BadKeyFile { .. })
    ));
}

#[cfg(unix)]
#[test]
fn load_or_create_dev_creates_0600_once() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys").join("master.key");
    let (k1, created) = MasterKey::load_or_create_dev(&path).unwrap();
    assert!(created);
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.len(), 65);
    assert!(text.ends_with('\n'));
    let (k2, created) = MasterKey::load_or_create_dev(&path).unwrap();
    assert!(!created);
    assert_eq!(k1.key_id(), k2.key_id());
    assert!(matches!(MasterKey::create_file(&path), Err(PiiError::Io(_))));
    // Two generated keys differ.
    let (k3, _) = MasterKey::load_or_create_dev(dir.path().join("other.key")).unwrap();
    assert_ne!(k1.key_id(), k3.key_id());
}

#[test]
fn key_id_follows_spec_and_debug_hides_key() {
    let key = MasterKey::from_bytes([0x42; 32]);
    let derived = blake3::derive_key("migreg master key id v1", &[0x42; 32]);
    assert_eq!(key.key_id(), derived[..8]);
    assert_eq!(key.key_id_hex().len(), 16);
    let debug = format!("{key:?}");
    assert!(debug.contains(&key.key_id_hex()));
    assert!(!debug.contains("4242424242"), "{debug}");
}

#[test]
fn key_store_debug_hides_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    let store = KeyStore::open(&db, MasterKey::from_bytes([0x42; 32])).unwrap();
    let debug = format!("{store:?}");
    assert!(!debug.contains("4242424242"), "{debug}");
}
