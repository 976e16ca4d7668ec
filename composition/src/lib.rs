//! Builds each `composition/*.wac` into `target/composed/<name>.wasm`, the way `wac compose
//! --deps-dir target/wac-deps` would, and refuses a result that leaves one of our own interfaces
//! for the host to provide.
//!
//! Packages are found as the wac CLI finds them: `nano:receiver` is `<deps>/nano/receiver.wasm`.
//! [`stage_packages`] puts the cargo-built components there under those names: the components and
//! their packages are the `[[component]]` entries of the one list, `shapes.toml`.

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use wac_graph::EncodeOptions;
use wac_parser::Document;
use wac_resolver::FileSystemPackageResolver;

pub use shapes::{catalog, Catalog};

/// What a composed component may import: only what a Spin host provides.
pub const HOST_PREFIXES: &[&str] = &["wasi:", "fermyon:spin/", "spin:"];

/// Copies `<wasm_dir>/<crate>.wasm` to `<deps_dir>/nano/<name>.wasm` for every component of
/// `shapes.toml`.
pub fn stage_packages(wasm_dir: &Path, deps_dir: &Path) -> Result<()> {
    for shapes::Component { krate, package } in &catalog().components {
        let from = wasm_dir.join(format!("{}.wasm", krate.replace('-', "_")));
        let (namespace, name) = package.split_once(':').expect("package names are ns:name");
        let to = deps_dir.join(namespace).join(format!("{name}.wasm"));
        fs::create_dir_all(to.parent().unwrap())?;
        fs::copy(&from, &to).with_context(|| {
            format!(
                "{} is missing: build the wasm components first (`cargo xtask build`)",
                from.display()
            )
        })?;
    }
    Ok(())
}

/// Parses, resolves and encodes one `.wac` file, then checks its imports.
pub fn compose(wac_file: &Path, deps_dir: &Path) -> Result<Vec<u8>> {
    let source = fs::read_to_string(wac_file)
        .with_context(|| format!("cannot read {}", wac_file.display()))?;
    let report = |e: miette::Report| anyhow::anyhow!(render(e, wac_file, &source));

    let document = Document::parse(&source).map_err(|e| report(e.into()))?;
    let keys = wac_resolver::packages(&document).map_err(|e| report(e.into()))?;
    let packages = FileSystemPackageResolver::new(deps_dir, HashMap::new(), true)
        .resolve(&keys)
        .map_err(|e| report(e.into()))?;
    let resolution = document.resolve(packages).map_err(|e| report(e.into()))?;
    let bytes = resolution
        .encode(EncodeOptions::default())
        .with_context(|| format!("cannot encode {}", wac_file.display()))?;

    check_imports(&bytes)
        .with_context(|| format!("{} is not fully plugged", wac_file.display()))?;
    Ok(bytes)
}

/// Fails, naming them, if the component imports anything but host interfaces.
///
/// Type imports (`import type error`) are not counted: they are equality-bound aliases of types the
/// component already names, which no host has to provide. A world-level `use`, as in the MQTT
/// trigger's `spin-mqtt` world, produces them.
pub fn check_imports(component: &[u8]) -> Result<()> {
    let (imports, _) = imports_and_exports(component)?;
    let ours: Vec<_> = imports
        .into_iter()
        .filter(|name| !name.starts_with(TYPE_IMPORT))
        .filter(|name| !HOST_PREFIXES.iter().any(|p| name.starts_with(p)))
        .collect();
    if !ours.is_empty() {
        bail!(
            "the composed component still imports {}; plug each with a component that exports it \
             (only {} may be left to the host)",
            ours.join(", "),
            HOST_PREFIXES.join(" ")
        );
    }
    Ok(())
}

const TYPE_IMPORT: &str = "type ";

/// The top-level import and export names of a component, in binary order; type imports are
/// prefixed with `type `.
pub fn imports_and_exports(component: &[u8]) -> Result<(Vec<String>, Vec<String>)> {
    use wasmparser::{Parser, Payload};
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(component) {
        match payload.context("not a valid component")? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(section) if depth == 0 => {
                for import in section {
                    let import = import?;
                    let prefix = match import.ty {
                        wasmparser::ComponentTypeRef::Type(_) => TYPE_IMPORT,
                        _ => "",
                    };
                    imports.push(format!("{prefix}{}", import.name.name));
                }
            }
            Payload::ComponentExportSection(section) if depth == 0 => {
                for export in section {
                    exports.push(export?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok((imports, exports))
}

/// A short, stable description of what a component needs and offers; the golden files hold these.
pub fn describe(component: &[u8]) -> Result<String> {
    let (imports, exports) = imports_and_exports(component)?;
    let mut out = String::new();
    for name in imports {
        out.push_str(&format!("import {name}\n"));
    }
    for name in exports {
        out.push_str(&format!("export {name}\n"));
    }
    Ok(out)
}

/// Composes every `*.wac` in `dir` into `out_dir/<stem>.wasm`; returns the written paths.
pub fn compose_all(dir: &Path, deps_dir: &Path, out_dir: &Path) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(out_dir)?;
    let mut written = Vec::new();
    for wac in wac_files(dir)? {
        let bytes = compose(&wac, deps_dir)?;
        let out = out_dir.join(wac.with_extension("wasm").file_name().unwrap());
        fs::write(&out, bytes).with_context(|| format!("cannot write {}", out.display()))?;
        written.push(out);
    }
    Ok(written)
}

/// The `.wac` files of a folder, sorted.
pub fn wac_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wac"))
        .collect();
    files.sort();
    Ok(files)
}

/// wac's diagnostics carry spans into the source; render them as wac's CLI does, without colour.
fn render(report: miette::Report, path: &Path, source: &str) -> String {
    let report = report.with_source_code(miette::NamedSource::new(
        path.file_name().unwrap_or_default().to_string_lossy(),
        source.to_string(),
    ));
    let mut out = String::new();
    let handler =
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .with_cause_chain()
            .with_width(100);
    if handler.render_report(&mut out, report.as_ref()).is_err() {
        return format!("{report:?}");
    }
    out
}
