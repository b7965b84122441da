//! The layout's rules, checked: dependencies point one way (backends ←
//! gateway ← the Worker), and no module imports another that imports it
//! back, in any crate (docs/architecture.md).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `a::b` for `src/a/b.rs` or `src/a/b/mod.rs`; `` for the crate root.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts.join("::")
}

/// Each module's `crate::` references to other modules (test modules left out).
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<String, PathBuf> = files
        .iter()
        .map(|f| (module_of(src, f), f.clone()))
        .collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, f) in &modules {
        let text = fs::read_to_string(f).unwrap_or_default();
        let code = match text.find("#[cfg(test)]\nmod tests") {
            Some(i) => &text[..i],
            None => &text[..],
        };
        let edges = g.entry(m.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let path: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
            for k in (1..=parts.len()).rev() {
                let cand = parts[..k].join("::");
                if modules.contains_key(&cand) {
                    if cand != *m {
                        edges.insert(cand);
                    }
                    break;
                }
            }
        }
    }
    g
}

/// The strongly connected components with more than one module (Tarjan).
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn strong<'a>(t: &mut T<'a>, v: &'a str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        let g = t.g;
        for w in g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                strong(t, w);
                let lw = t.low[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(lw));
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            strong(&mut t, v);
        }
    }
    t.out
}

#[test]
fn no_crate_has_an_import_cycle() {
    for src in ["crates/backends/src", "crates/gateway/src", "src"] {
        let g = graph(&root().join(src));
        assert!(g.len() > 3, "{src}: no modules found");
        assert_eq!(cycles(&g), Vec::<Vec<String>>::new(), "{src}");
    }
}

/// The project's own crates each manifest depends on.
fn own_dependencies(manifest: &str) -> Vec<String> {
    let text = fs::read_to_string(root().join(manifest)).unwrap_or_default();
    ["backends", "gateway", "testkit", "lightning-fallback"]
        .iter()
        .filter(|c| {
            text.lines().any(|l| {
                let l = l.trim();
                l.starts_with(&format!("{c}.workspace")) || l.starts_with(&format!("{c} ="))
            })
        })
        .map(|c| c.to_string())
        .collect()
}

#[test]
fn dependencies_point_down() {
    let section = |manifest: &str, name: &str| -> String {
        let text = fs::read_to_string(root().join(manifest)).unwrap_or_default();
        let start = text.find(&format!("[{name}]")).unwrap_or(text.len());
        let rest = &text[start..];
        let end = rest[1..].find("\n[").map_or(rest.len(), |i| i + 1);
        rest[..end].to_string()
    };
    let deps = section("crates/backends/Cargo.toml", "dependencies");
    for own in ["gateway", "testkit", "backends."] {
        assert!(
            !deps.contains(own),
            "backends must depend on none of ours: {own}"
        );
    }
    let deps = section("crates/gateway/Cargo.toml", "dependencies");
    assert!(deps.contains("backends.workspace"));
    assert!(!deps.contains("testkit") && !deps.contains("lightning-fallback\""));
    let deps = section("crates/testkit/Cargo.toml", "dependencies");
    assert!(
        !deps.contains("gateway"),
        "fixtures sit beside the gateway, not above it"
    );
    // Nothing depends on the Worker.
    for m in [
        "crates/backends/Cargo.toml",
        "crates/gateway/Cargo.toml",
        "crates/testkit/Cargo.toml",
    ] {
        assert!(
            !own_dependencies(m).contains(&"lightning-fallback".to_string()),
            "{m}"
        );
    }
}
