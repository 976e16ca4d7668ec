//! `composition [WORKSPACE]`: stages the built components and composes every `composition/*.wac`.
//! `cargo xtask build` calls the library directly; this binary is for running the step alone.

use anyhow::Result;
use std::path::PathBuf;

fn main() -> Result<()> {
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."));
    let target = root.join("target");
    let deps = target.join("wac-deps");
    composition::stage_packages(&target.join("wasm32-wasip2/release"), &deps)?;
    for out in composition::compose_all(&root.join("composition"), &deps, &target.join("composed"))?
    {
        println!("{}", out.display());
    }
    Ok(())
}
