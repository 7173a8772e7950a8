//! The floors of the code: every module of `src/` imports only modules on floors below its own.
//! The floor list is written once, in docs/architecture.md between the `floors` markers; this test
//! reads it and every `crate::…` path in the library's source (tests aside), and fails on a
//! module that names one on its own floor or above, or a module the list does not place.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Module → floor, from docs/architecture.md.
fn floors(doc: &str) -> HashMap<String, usize> {
    let begin = doc
        .find("<!-- floors:begin -->")
        .expect("floors:begin marker");
    let end = doc.find("<!-- floors:end -->").expect("floors:end marker");
    let mut map = HashMap::new();
    for line in doc[begin..end].lines() {
        // `N  module module …  # what the floor is`
        let line = line.split('#').next().unwrap_or("").trim();
        let mut words = line.split_whitespace();
        let Some(Ok(floor)) = words.next().map(str::parse::<usize>) else {
            continue;
        };
        for m in words {
            assert!(
                map.insert(m.to_owned(), floor).is_none(),
                "{m} is listed twice"
            );
        }
    }
    map
}

/// The top-level module a source file belongs to (`src/router/hedge.rs` → `router`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// Whether a file holds only tests (its imports are not the module's).
fn is_test_file(file: &Path) -> bool {
    let name = file.file_name().unwrap().to_string_lossy();
    name == "tests.rs" || name.ends_with("_tests.rs")
}

/// The modules a file's code names as `crate::NAME` (comments and the trailing
/// `#[cfg(test)] mod tests` block left out), with their line numbers.
fn imports(text: &str) -> Vec<(String, usize)> {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
    let mut out = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let line = line.split("//").next().unwrap_or("");
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let before = rest[..i].chars().last();
            rest = &rest[i + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // `ai_gatewaycrate::`-like words, not a path
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push((name, n + 1));
            }
        }
    }
    out
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every import that breaks the floors, as `file:line: a (floor N) imports b (floor M)`.
fn violations(src: &Path, floors: &HashMap<String, usize>) -> Vec<String> {
    let mut files = Vec::new();
    sources(src, &mut files);
    files.sort();
    let mut bad = Vec::new();
    for f in files {
        let module = module_of(src, &f);
        if module == "lib" || module == "main" || is_test_file(&f) {
            continue;
        }
        let Some(&mine) = floors.get(&module) else {
            bad.push(format!(
                "{}: module `{module}` is on no floor: add it to the list in docs/architecture.md",
                f.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&f).unwrap();
        for (target, line) in imports(&text) {
            if target == module {
                continue;
            }
            match floors.get(&target) {
                Some(&theirs) if theirs < mine => {}
                Some(&theirs) => bad.push(format!(
                    "{}:{line}: `{module}` (floor {mine}) imports `{target}` (floor {theirs}); a module may import only floors below its own",
                    f.display()
                )),
                None => bad.push(format!(
                    "{}:{line}: `{target}` is on no floor: add it to the list in docs/architecture.md",
                    f.display()
                )),
            }
        }
    }
    bad
}

#[test]
fn every_module_imports_only_floors_below_its_own() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    let floors = floors(&doc);
    assert!(floors.len() > 20, "the floor list was not read: {floors:?}");
    assert!(
        floors.values().max().copied().unwrap_or(0) < 8,
        "at most 8 floors (0-7)"
    );
    let bad = violations(&root.join("src"), &floors);
    assert!(
        bad.is_empty(),
        "imports against the floors:\n{}",
        bad.join("\n")
    );
}

/// The check itself fails on a wrong import: a source tree where a floor-0 module imports one
/// above it, and one that imports a module on its own floor.
#[test]
fn a_wrong_import_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::write(src.join("clock.rs"), "use crate::router::x;\n").unwrap();
    std::fs::create_dir(src.join("router")).unwrap();
    std::fs::write(
        src.join("router/mod.rs"),
        "// crate::pipeline in a comment is fine\nuse crate::clock::now;\nfn f() { crate::limits::g(); }\n",
    )
    .unwrap();
    std::fs::write(src.join("limits.rs"), "").unwrap();
    std::fs::write(src.join("pipeline.rs"), "").unwrap();
    let floors: HashMap<String, usize> =
        [("clock", 0), ("limits", 1), ("router", 1), ("pipeline", 2)]
            .into_iter()
            .map(|(m, f)| (m.to_owned(), f))
            .collect();
    let bad = violations(src, &floors);
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(
        bad[0].contains("`clock` (floor 0) imports `router` (floor 1)"),
        "{bad:?}"
    );
    assert!(
        bad[1].contains("`router` (floor 1) imports `limits` (floor 1)"),
        "{bad:?}"
    );
}
