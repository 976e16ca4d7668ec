//! No function in nanohost's source (`host/src`, its unit tests included) is longer than
//! [`MAX_LINES`] lines, from `fn` to its closing brace (issue 20): a long function hides its
//! steps from a reader. Offenders are listed with their place and length.

use std::path::{Path, PathBuf};

use syn::visit::Visit;

const MAX_LINES: usize = 80;

/// Every function's name, first line and length in lines, of one file.
struct Lengths {
    functions: Vec<(String, usize, usize)>,
}

impl Lengths {
    fn record(&mut self, name: &syn::Ident, fn_token: &syn::token::Fn, block: &syn::Block) {
        let first = fn_token.span.start().line;
        let last = block.brace_token.span.close().end().line;
        self.functions
            .push((name.to_string(), first, last + 1 - first));
    }
}

impl<'ast> Visit<'ast> for Lengths {
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.record(&f.sig.ident, &f.sig.fn_token, &f.block);
        syn::visit::visit_item_fn(self, f);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        self.record(&f.sig.ident, &f.sig.fn_token, &f.block);
        syn::visit::visit_impl_item_fn(self, f);
    }

    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if let Some(block) = &f.default {
            self.record(&f.sig.ident, &f.sig.fn_token, block);
        }
        syn::visit::visit_trait_item_fn(self, f);
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `(place, name, lines)` of every function in the files under `dir`.
fn functions(dir: &Path) -> Vec<(String, String, usize)> {
    let mut files = Vec::new();
    rust_files(dir, &mut files);
    files.sort();
    let mut all = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let parsed = syn::parse_file(&text)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", file.display()));
        let mut lengths = Lengths {
            functions: Vec::new(),
        };
        lengths.visit_file(&parsed);
        let place = file
            .strip_prefix(dir)
            .unwrap_or(&file)
            .display()
            .to_string();
        for (name, line, lines) in lengths.functions {
            all.push((format!("host/src/{place}:{line}"), name, lines));
        }
    }
    all
}

#[test]
fn no_host_function_is_longer_than_the_limit() {
    let host_src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/src");
    let all = functions(&host_src);
    assert!(all.len() > 100, "only {} functions found", all.len());
    let offenders: Vec<String> = all
        .iter()
        .filter(|(_, _, lines)| *lines > MAX_LINES)
        .map(|(place, name, lines)| format!("{place} fn {name}: {lines} lines"))
        .collect();
    assert!(
        offenders.is_empty(),
        "functions over {MAX_LINES} lines in host/src (split them into named steps):\n{}",
        offenders.join("\n")
    );
}

/// The measure itself: a function's lines from `fn` to its closing brace, nested ones apart.
#[test]
fn lengths_are_counted_from_fn_to_the_closing_brace() {
    let source = "/// doc\nfn a() {\n    let x = 1;\n    fn inner() {}\n}\nimpl S {\n    fn b(&self) {}\n}\n";
    let mut lengths = Lengths {
        functions: Vec::new(),
    };
    lengths.visit_file(&syn::parse_file(source).unwrap());
    assert_eq!(
        lengths.functions,
        [
            ("a".to_string(), 2, 4),
            ("inner".to_string(), 4, 1),
            ("b".to_string(), 7, 1)
        ]
    );
}
