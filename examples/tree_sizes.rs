//! Logical bytes per sled tree of a stopped store (keys + values), and per
//! key kind of the `log` tree (chunks `c`, case files `s`, head `h`,
//! case-file position `k`), to split the store's size into what we write
//! and what sled adds.
//! `cargo run --release --example tree_sizes -- DATA_DIR`
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: tree_sizes DATA_DIR")?;
    let db = registry::log::store::sled_config(std::path::Path::new(&dir)).open()?;
    let mut total = 0u64;
    for name in db.tree_names() {
        let tree = db.open_tree(&name)?;
        let (mut n, mut k, mut v) = (0u64, 0u64, 0u64);
        let mut kinds: std::collections::BTreeMap<u8, (u64, u64)> = Default::default();
        for item in tree.iter() {
            let (key, value) = item?;
            n += 1;
            k += key.len() as u64;
            v += value.len() as u64;
            let kind = kinds.entry(key.first().copied().unwrap_or(0)).or_default();
            kind.0 += 1;
            kind.1 += (key.len() + value.len()) as u64;
        }
        total += k + v;
        println!(
            "{:<24} entries {:>10} keys {:>12} B values {:>12} B",
            String::from_utf8_lossy(&name),
            n,
            k,
            v
        );
        if name.as_ref() == b"log" {
            for (kind, (n, bytes)) in kinds {
                println!("  key kind {:?}: entries {n:>10}, {bytes:>12} B", kind as char);
            }
        }
    }
    println!("total logical {total} B; size_on_disk {} B", db.size_on_disk()?);
    Ok(())
}
