//! Compiles every `.proto` file under `proto/` with a vendored `protoc`, so a
//! fresh machine needs nothing installed beyond the Rust toolchain.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };

    let mut protos: Vec<PathBuf> = Vec::new();
    collect_protos(&PathBuf::from("proto"), &mut protos)?;
    protos.sort();
    println!("cargo:rerun-if-changed=proto");
    if protos.is_empty() {
        return Ok(());
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("registry_descriptor.bin"))
        .compile_protos(&protos, &[PathBuf::from("proto")])?;
    Ok(())
}

fn collect_protos(dir: &PathBuf, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            println!("cargo:rerun-if-changed={}", path.display());
            out.push(path);
        }
    }
    Ok(())
}
