//! Logical bytes per sled tree of a data directory (keys + values), to split
//! the store's size into what we write and what sled adds.
//! `cargo run --release --example tree_sizes -- DATA_DIR/..` (the `data` dir).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: tree_sizes SLED_DIR")?;
    let db = sled::Config::new().path(&dir).open()?;
    let mut total = 0u64;
    for name in db.tree_names() {
        let tree = db.open_tree(&name)?;
        let (mut n, mut k, mut v) = (0u64, 0u64, 0u64);
        for item in tree.iter() {
            let (key, value) = item?;
            n += 1;
            k += key.len() as u64;
            v += value.len() as u64;
        }
        total += k + v;
        println!(
            "{:<24} entries {:>10} keys {:>12} B values {:>12} B",
            String::from_utf8_lossy(&name),
            n,
            k,
            v
        );
    }
    println!("total logical {total} B; size_on_disk {} B", db.size_on_disk()?);
    Ok(())
}
