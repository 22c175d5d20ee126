//! The module graph of the `service` crate has no cycle other than between a module and its own
//! parent or children (issue 20): a cycle makes every module on it depend on every other, so a
//! change to one (say, the send path) reaches all of them.
//!
//! The graph is read from the source: every `crate::…` and `super::…` path of a file (in `use`
//! trees and in expressions) is an edge from that file's module to the deepest module the path
//! names. An edge up to an ancestor is not counted (a parent and its children form one unit); an
//! edge down to a descendant is, so a re-export cannot hide a cycle. Run with `--nocapture` to print
//! the graph's size. Written by hand instead of `cargo modules dependencies --acyclic`: that tool
//! builds rust-analyzer (several minutes of CI on two cores) to answer a question the paths answer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/a/b.rs` → `a::b`; `src/a/mod.rs` → `a`; `src/lib.rs` → `` (the crate root).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src").with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    parts.join("::")
}

/// Remove comments and string literals (paths in doc text or SQL are not dependencies).
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'r' && (b.get(i + 1) == Some(&b'#') || b.get(i + 1) == Some(&b'"')) && !ident_byte(b, i) {
            // Raw string r#"…"# (any number of #).
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == b'"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&b'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' {
            // A char literal ('a', '\n', '\u{1F600}') or a lifetime ('a): skip only the literal.
            if b.get(i + 2) == Some(&b'\'') {
                i += 3;
            } else if b.get(i + 1) == Some(&b'\\') {
                i += 2;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i += 1;
            } else {
                out.push('\'');
                i += 1;
            }
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn ident_byte(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

/// Expand a `use` tree (`crate::{a::{self, B}, c}`) into its full paths.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim().trim_end_matches("::");
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let base = join(prefix, head);
        let mut depth = 0;
        let mut start = 0;
        for (k, ch) in inner.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&base, &inner[start..k], out);
                    start = k + 1;
                }
                _ => {}
            }
        }
        expand(&base, &inner[start..], out);
    } else {
        let t = tree.split(" as ").next().unwrap_or("").trim();
        if t.is_empty() {
            return;
        }
        let t = if t == "self" { "" } else { t };
        out.push(join(prefix, t));
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}::{b}"),
    }
}

/// Every path of a file that starts with `crate::` or `super::`.
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    // `use` trees (they may span lines).
    let mut rest = code;
    while let Some(k) = rest.find("use ") {
        let before_ok = k == 0 || !rest.as_bytes()[k - 1].is_ascii_alphanumeric() && rest.as_bytes()[k - 1] != b'_';
        let after = &rest[k + 4..];
        let end = after.find(';').unwrap_or(after.len());
        if before_ok {
            let tree = after[..end].trim();
            if tree.starts_with("crate::") || tree.starts_with("super::") || tree.starts_with("crate::{") {
                expand("", tree, &mut out);
            }
        }
        rest = &after[end.min(after.len())..];
    }
    // Paths in expressions and types: crate::a::b, super::super::x.
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(k) = code[from..].find(start) {
            let at = from + k;
            let ok = at == 0 || {
                let c = code.as_bytes()[at - 1];
                !(c.is_ascii_alphanumeric() || c == b'_' || c == b':')
            };
            let end = code[at..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map(|e| at + e)
                .unwrap_or(code.len());
            if ok {
                out.push(code[at..end].trim_end_matches(':').to_string());
            }
            from = end.max(at + 1);
        }
    }
    out
}

/// Resolve `crate::…` / `super::…` against the module `here` (of a file that is a `mod.rs` or
/// `lib.rs` when `is_dir_module`) to the deepest known module it names.
fn resolve(here: &str, is_dir_module: bool, path: &str, modules: &BTreeSet<String>) -> Option<String> {
    let mut segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Vec<&str> = if here.is_empty() { vec![] } else { here.split("::").collect() };
    if segs.first() == Some(&"crate") {
        base.clear();
        segs.remove(0);
    } else {
        // `super` in `a/b.rs` (module a::b) is `a`; in `a/b/mod.rs` (module a::b) also `a`.
        let _ = is_dir_module;
        while segs.first() == Some(&"super") {
            base.pop()?;
            segs.remove(0);
        }
    }
    let mut best = base.join("::");
    let mut cur = base.clone();
    for s in segs {
        if s == "self" {
            continue;
        }
        cur.push(s);
        let name = cur.join("::");
        if modules.contains(&name) {
            best = name;
        } else {
            break;
        }
    }
    Some(best)
}

/// Whether an edge from `from` to `to` is not counted: to itself, to the crate root (re-exports
/// of `lib.rs`), or up to one of its own ancestors (a child uses its parent's items). An edge *down*
/// to a descendant counts, so a parent that re-exports a child's item cannot hide a cycle.
fn related(from: &str, to: &str) -> bool {
    from == to || to.is_empty() || from.starts_with(&format!("{to}::"))
}

/// Strongly connected components of more than one module (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        on: BTreeSet<&'a str>,
        stack: Vec<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    impl<'a> T<'a> {
        fn visit(&mut self, v: &'a str) {
            self.index.insert(v, self.next);
            self.low.insert(v, self.next);
            self.next += 1;
            self.stack.push(v);
            self.on.insert(v);
            for w in self.g.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low[v];
                    self.low.insert(v, lv.min(lw));
                } else if self.on.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low[v];
                    self.low.insert(v, lv.min(iw));
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on.remove(w);
                    comp.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    self.out.push(comp);
                }
            }
        }
    }
    let mut t = T {
        g: graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        on: BTreeSet::new(),
        stack: vec![],
        next: 0,
        out: vec![],
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out
}

fn graph_of(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut all = Vec::new();
    files(src, &mut all);
    let modules: BTreeSet<String> = all.iter().map(|f| module_of(src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for f in &all {
        let here = module_of(src, f);
        let is_dir = f.file_name().is_some_and(|n| n == "mod.rs" || n == "lib.rs");
        let code = strip(&std::fs::read_to_string(f).expect("read file"));
        for p in paths(&code) {
            if let Some(to) = resolve(&here, is_dir, &p, &modules)
                && !related(&here, &to)
            {
                graph.get_mut(&here).expect("module").insert(to);
            }
        }
    }
    graph
}

#[test]
fn service_modules_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph_of(&src);
    let edges: usize = graph.values().map(BTreeSet::len).sum();
    println!("service: {} modules, {} edges between unrelated modules", graph.len(), edges);
    assert!(
        graph.len() > 30 && edges > 50,
        "the graph reader found too little: {} modules, {edges} edges",
        graph.len()
    );
    let found = cycles(&graph);
    let mut msg = String::new();
    for c in &found {
        msg.push_str(&format!("\ncycle of {} modules: {}", c.len(), c.join(", ")));
        for m in c {
            let inside: Vec<&String> = graph[m].iter().filter(|t| c.contains(t)).collect();
            msg.push_str(&format!("\n  {m} -> {inside:?}"));
        }
    }
    assert!(found.is_empty(), "module cycles in service:{msg}");
}

#[test]
fn the_graph_reader_sees_use_trees_expressions_and_super() {
    let code = strip(
        "use crate::{a::{self, X}, b::c as d};\nuse super::e;\n// use crate::commented;\n\
         fn f() { let s = \"crate::in_a_string\"; crate::g::h(); super::super::i::j(); }",
    );
    let p = paths(&code);
    for want in ["a", "a::X", "b::c", "super::e", "crate::g::h", "super::super::i::j"] {
        let want = if want.starts_with("crate::") || want.starts_with("super::") {
            want.to_string()
        } else {
            format!("crate::{want}")
        };
        assert!(p.contains(&want), "{want} missing from {p:?}");
    }
    assert!(!p.iter().any(|x| x.contains("commented") || x.contains("in_a_string")), "{p:?}");
    let modules: BTreeSet<String> = ["a", "a::b", "g", "i", "x", "x::y"].iter().map(|s| s.to_string()).collect();
    assert_eq!(resolve("x::y", false, "super::super::i::j", &modules).as_deref(), Some("i"));
    assert_eq!(resolve("x::y", false, "crate::a::b::Thing", &modules).as_deref(), Some("a::b"));
    assert_eq!(resolve("x", true, "super::g", &modules).as_deref(), Some("g"));
    // A two-module cycle is found; parent/child edges are not edges.
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.insert("a".into(), ["b".to_string()].into());
    g.insert("b".into(), ["a".to_string()].into());
    g.insert("c".into(), BTreeSet::new());
    assert_eq!(cycles(&g), vec![vec!["a".to_string(), "b".to_string()]]);
    assert!(related("a::b", "a") && related("a::b", "") && !related("a", "a::b") && !related("a", "ab"));
}
