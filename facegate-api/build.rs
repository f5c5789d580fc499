//! Compiles proto/facegate/v1/*.proto with protox (pure Rust, no protoc) and
//! generates the tonic server and client, plus the descriptor set that
//! server reflection serves.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let files = [
        "matcher.proto",
        "admin.proto",
        "manifests.proto",
        "encounters.proto",
        "privacy.proto",
    ]
    .map(|f| proto_dir.join("facegate/v1").join(f));
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let fds = protox::compile(&files, [&proto_dir])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("facegate_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
