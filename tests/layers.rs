//! The layering of `src/` (ARCHITECTURE.md): each top-level folder is a layer, a module imports only from
//! layers below its own, the gateway and the tools never import each other, and no set of modules imports
//! itself round in a cycle. Edges are the `crate::` and `super::` paths in the code (comments excluded).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, bottom first. Folders of one rank may not import each other (the gateway and the tools).
const LAYERS: &[(&str, u8)] = &[
    ("core", 1),
    ("protocol", 2),
    ("rules", 3),
    ("config", 4),
    ("gateway", 5),
    ("tools", 5),
    ("cli", 6),
    ("main", 6),
    ("lib", 6),
];

/// A module: its path from the crate root (`["gateway", "proxy"]`).
type Module = Vec<String>;

/// The layer (folder name) a module belongs to.
fn layer(m: &Module) -> Option<(&'static str, u8)> {
    let top = m.first().map_or("lib", String::as_str);
    LAYERS.iter().find(|(name, _)| *name == top).copied()
}

/// A file's module path: `gateway/proxy.rs` → `gateway::proxy`, `gateway/mod.rs` → `gateway`.
fn module_of(file: &str) -> Module {
    let stem = file.trim_end_matches(".rs");
    let mut parts: Vec<String> = stem.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Drops `//` comments: doc links would otherwise count as imports.
fn strip_comments(src: &str) -> String {
    src.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a `use`/path tail names (what follows `crate::`), with `{a, b::c}` groups expanded.
fn paths_from(s: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut segs = Vec::new();
    let mut rest = s;
    loop {
        let ident: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !ident.is_empty() {
            segs.push(ident.clone());
            rest = &rest[ident.len()..];
        }
        if let Some(r) = rest.strip_prefix("::") {
            rest = r;
            if let Some(group) = rest.strip_prefix('{') {
                let inner = &group[..closing_brace(group)];
                for item in split_top(inner) {
                    for p in paths_from(item.trim()) {
                        out.push(segs.iter().cloned().chain(p).collect());
                    }
                }
                return out;
            }
            continue;
        }
        break;
    }
    out.push(segs);
    out
}

/// Where the group that `s` starts inside of closes (or its end).
fn closing_brace(s: &str) -> usize {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    s.len()
}

/// `a, b::{c, d}` split at its top-level commas.
fn split_top(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0usize, 0usize, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// The modules a file's code names, resolved to the longest module that exists.
fn edges(file: &str, src: &str, modules: &BTreeSet<Module>) -> BTreeSet<Module> {
    let here = module_of(file);
    let code = strip_comments(src);
    let mut found = BTreeSet::new();
    for (i, _) in code.match_indices("crate::").chain(code.match_indices("super::")) {
        // Only whole words: `$crate::` and `my_crate::` are not ours.
        let before = code[..i].chars().last();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == ':') {
            continue;
        }
        let (base, tail) = if code[i..].starts_with("crate::") {
            (Vec::new(), &code[i + "crate::".len()..])
        } else {
            // `super::` from `a/b.rs` (module a::b) is `a`; chains of `super::` climb further.
            let mut base = here.clone();
            let mut tail = &code[i..];
            while let Some(t) = tail.strip_prefix("super::") {
                base.pop();
                tail = t;
            }
            (base, tail)
        };
        for p in paths_from(tail) {
            let full: Module = base.iter().cloned().chain(p).collect();
            let target = (0..=full.len())
                .rev()
                .map(|n| full[..n].to_vec())
                .find(|m| modules.contains(m));
            if let Some(t) = target {
                if t != here && !here.starts_with(&t) {
                    found.insert(t);
                }
            }
        }
    }
    found
}

/// Every violation in a tree of `(path under src/, source)`: upward or sideways edges between layers,
/// files outside any layer, and import cycles.
fn violations(files: &[(String, String)]) -> Vec<String> {
    let modules: BTreeSet<Module> = files.iter().map(|(f, _)| module_of(f)).collect();
    let mut graph: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    let mut out = Vec::new();
    for (file, src) in files {
        let from = module_of(file);
        let Some((from_layer, from_rank)) = layer(&from) else {
            out.push(format!("{file} is in no layer: put it under one of the layer folders"));
            continue;
        };
        let targets = edges(file, src, &modules);
        for to in &targets {
            let Some((to_layer, to_rank)) = layer(to) else { continue };
            let down = to_rank < from_rank;
            if to_layer != from_layer && !down {
                out.push(format!(
                    "{file} imports crate::{} ({to_layer}, layer {to_rank}) from {from_layer} (layer {from_rank}): a layer may import only layers below it",
                    to.join("::")
                ));
            }
        }
        graph.insert(from, targets);
    }
    out.extend(cycles(&graph));
    out
}

/// Import cycles, each reported once as `a -> b -> a`.
fn cycles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<String> {
    fn visit(
        m: &Module,
        graph: &BTreeMap<Module, BTreeSet<Module>>,
        stack: &mut Vec<Module>,
        done: &mut BTreeSet<Module>,
        out: &mut Vec<String>,
    ) {
        if let Some(i) = stack.iter().position(|s| s == m) {
            let names: Vec<String> = stack[i..].iter().chain([m]).map(|s| s.join("::")).collect();
            out.push(format!("import cycle: {}", names.join(" -> ")));
            return;
        }
        if done.contains(m) {
            return;
        }
        stack.push(m.clone());
        for next in graph.get(m).into_iter().flatten() {
            visit(next, graph, stack, done, out);
        }
        stack.pop();
        done.insert(m.clone());
    }
    let mut out = Vec::new();
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, graph, &mut Vec::new(), &mut done, &mut out);
    }
    out
}

fn read_tree(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            read_tree(&p, root, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
            out.push((rel, std::fs::read_to_string(&p).unwrap()));
        }
    }
}

#[test]
fn the_source_tree_keeps_its_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    read_tree(&root, &root, &mut files);
    assert!(files.len() > 20, "read only {} files", files.len());
    let v = violations(&files);
    assert!(v.is_empty(), "layering violations:\n{}", v.join("\n"));
}

fn tree(files: &[(&str, &str)]) -> Vec<(String, String)> {
    files.iter().map(|(f, s)| ((*f).to_owned(), (*s).to_owned())).collect()
}

#[test]
fn a_planted_back_edge_is_caught() {
    let clean = tree(&[
        ("core/mod.rs", "pub mod time;"),
        ("core/time.rs", "pub fn now() {}"),
        ("protocol/mod.rs", "use crate::core::time::now;"),
        (
            "gateway/proxy.rs",
            "use crate::{core::time, protocol};\nuse super::claims::Claims;",
        ),
        ("gateway/claims.rs", "fn f() { crate::core::time::now() }"),
        ("tools/pay.rs", "use crate::protocol;"),
        ("cli.rs", "use crate::{gateway::proxy, tools::pay};"),
    ]);
    assert_eq!(violations(&clean), Vec::<String>::new());

    let mut upward = clean.clone();
    upward.push((
        "core/money.rs".into(),
        "// crate::gateway in a comment is fine\nuse crate::gateway::proxy::Gateway;".into(),
    ));
    let v = violations(&upward);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("core/money.rs imports crate::gateway::proxy"), "{v:?}");

    let mut sideways = clean.clone();
    sideways.push((
        "tools/demo.rs".into(),
        "use crate::gateway::{claims::Claims, proxy};".into(),
    ));
    assert_eq!(violations(&sideways).len(), 2, "{:?}", violations(&sideways));

    let mut cycle = clean.clone();
    cycle[4].1.push_str("\nuse super::proxy::Ctx;");
    let v = violations(&cycle);
    assert!(
        v.iter()
            .any(|m| m.starts_with("import cycle: ") && m.contains("gateway::claims") && m.contains("gateway::proxy")),
        "{v:?}"
    );

    let mut stray = clean;
    stray.push(("helpers.rs".into(), String::new()));
    assert!(violations(&stray)[0].contains("helpers.rs is in no layer"));
}
