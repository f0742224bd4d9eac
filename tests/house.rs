//! Keeps the house clean (issue 11 point 3, STYLE.md "Layering"): reads `src/**/*.rs`, builds the
//! import graph between source files from `use` statements and `crate::`/`super::`/`self::`
//! paths, and checks that
//! - no module depends on a sibling that depends back on it (no cycle at any level of the tree;
//!   a parent's own file is the module's interface, so parent <-> child edges don't count),
//! - no import points up the layers of [`LAYERS`],
//! - no source file is longer than [`MAX_LINES`].
//!
//! The graph is of production code: `#[cfg(test)]` modules and files are left out (a unit test may
//! reach sideways for fixtures, as a test in `tests/` may reach any layer). A `pub use` is an alias,
//! not a dependency: paths are followed through re-exports to the file that defines the item.
//!
//! It is a reader of Rust text, not a compiler: it knows `mod`, `use` trees, paths and
//! re-exports, which is all this crate uses to reach another module. `HOUSE_DEBUG=1` prints the
//! file-to-file edges it found.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The longest a source file may be: past ~800 lines a file holds two ideas (STYLE.md).
const MAX_LINES: usize = 850;

/// The layers, bottom to top: a module may import only from a layer below its own. Modules on one
/// layer may not import each other either, so `node` and `bench` stay independent, and so do the
/// `overlay` and `consensus` workers (PROTOCOL.md §1: the consensus service does not need the DHT).
const LAYERS: &[&[&str]] = &[
    // Leaves any layer may use: plain counters, the counting allocator, the handle slab.
    &["stats", "heap", "handle"],
    &["wire"],
    &["session"],
    &["channel"],
    // The seam workers stand on (issue 11 point 4): below the engine, so workers never import it.
    &["service"],
    &["overlay", "consensus"],
    &["engine"],
    // The node assembles the engine; the benchmark, load and probe tools drive one from outside.
    &["node", "bench"],
    // The binary: `main.rs` and `cli/`.
    &[BIN],
];

/// The binary crate's root (`src/main.rs`), kept apart from the library's module names.
const BIN: &str = "<bin>";

/// Files allowed past [`MAX_LINES`] for now.
const KNOWN_LONG: &[&str] = &[];

/// Cycles allowed for now, each as its sorted members.
const KNOWN_CYCLES: &[&[&str]] = &[];

/// One source file, as a module of the library or of the binary.
struct File {
    path: PathBuf,
    /// Module path from the crate root; the binary's starts with [`BIN`].
    module: Vec<String>,
    /// Text with comments, strings and test modules removed.
    code: String,
    lines: usize,
}

/// `src/` of the crate; cargo sets `CARGO_MANIFEST_DIR` when it runs a test, and setting it by
/// hand points the built test at another checkout.
fn src_dir() -> PathBuf {
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    root.join("src")
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file under `src/`.
fn module_of(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    match (parts.is_empty(), stem) {
        (true, "lib") => {}
        (true, "main") => parts.push(BIN.to_owned()),
        (_, "mod") => {}
        _ => parts.push(stem.to_owned()),
    }
    // The binary's modules (`src/cli/`) hang under its root.
    if parts.first().is_some_and(|p| p == "cli") {
        parts.insert(0, BIN.to_owned());
    }
    parts
}

/// Blanks comments, string and char literals (keeping line breaks), so paths in them don't count.
fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, c: u8| out.push(if c == b'\n' { b'\n' } else { b' ' });
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied().unwrap_or(0);
        if c == b'/' && next == b'/' {
            while i < b.len() && b[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if c == b'/' && next == b'*' {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
        } else if c == b'r' && (next == b'"' || next == b'#') && !ident_byte(prev(b, i)) {
            // Raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == b'"' && (0..hashes).all(|h| b.get(j + 1 + h) == Some(&b'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &x in &b[i..j.min(b.len())] {
                blank(&mut out, x);
            }
            i = j;
        } else if c == b'"' {
            out.push(b' ');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                let skip = if b[i] == b'\\' { 2 } else { 1 };
                for _ in 0..skip {
                    if i < b.len() {
                        blank(&mut out, b[i]);
                        i += 1;
                    }
                }
            }
            out.push(b' ');
            i += 1;
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if next == b'\\' {
                let mut j = i + 2;
                while j < b.len() && b[j] != b'\'' {
                    j += 1;
                }
                out.resize(out.len() + (j + 1 - i), b' ');
                i = j + 1;
            } else if b.get(i + 2) == Some(&b'\'') {
                out.extend_from_slice(b"   ");
                i += 3;
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn prev(b: &[u8], i: usize) -> u8 {
    if i == 0 { b' ' } else { b[i - 1] }
}

fn ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Removes `#[cfg(test)] mod name { ... }` blocks; returns the names of `#[cfg(test)] mod name;`.
fn drop_tests(code: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(code.len());
    let mut test_children = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let mut after = &rest[at + "#[cfg(test)]".len()..];
        // Skip further attributes.
        loop {
            let trimmed = after.trim_start();
            if trimmed.starts_with("#[") {
                let end = trimmed.find(']').unwrap();
                after = &trimmed[end + 1..];
            } else {
                after = trimmed;
                break;
            }
        }
        let item = after
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub ");
        if let Some(decl) = item.strip_prefix("mod ") {
            let name: String = decl
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let tail = decl[name.len()..].trim_start();
            if let Some(after_decl) = tail.strip_prefix(';') {
                test_children.push(name);
                rest = after_decl;
                continue;
            }
            if tail.starts_with('{') {
                let mut depth = 0usize;
                let mut end = tail.len();
                for (i, ch) in tail.char_indices() {
                    match ch {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let lines = tail[..end].matches('\n').count();
                out.push_str(&"\n".repeat(lines));
                rest = &tail[end..];
                continue;
            }
        }
        rest = after;
    }
    out.push_str(rest);
    (out, test_children)
}

/// What one module file says about names: its child modules, and what each `use` brings in.
#[derive(Default)]
struct Scope {
    children: BTreeSet<String>,
    /// Name in this module -> the absolute path it stands for (from every `use`, public or not:
    /// a child sees its parent's private imports through `super::`).
    aliases: BTreeMap<String, Vec<String>>,
}

/// One path a file reaches, absolute, and whether it came from a `pub use` (an alias only).
struct Reach {
    path: Vec<String>,
    reexport: bool,
}

/// Splits a `use` tree (the text between `use` and `;`) into its leaf paths; `self` leaves name
/// the module itself; each leaf carries its `as` rename, if any.
fn use_leaves(tree: &str, prefix: &[String], out: &mut Vec<(Vec<String>, Option<String>)>) {
    let tree = tree.trim();
    if tree.is_empty() {
        return;
    }
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = segments(&tree[..open]);
        let mut full = prefix.to_vec();
        full.extend(head);
        let inner = &tree[open + 1..tree.rfind('}').unwrap()];
        let mut depth = 0;
        let mut start = 0;
        for (i, ch) in inner.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    use_leaves(&inner[start..i], &full, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        use_leaves(&inner[start..], &full, out);
        return;
    }
    let (path, rename) = match tree.split_once(" as ") {
        Some((p, r)) => (p, Some(r.trim().to_owned())),
        None => (tree, None),
    };
    let mut full = prefix.to_vec();
    for seg in segments(path) {
        if seg != "self" || full.is_empty() {
            full.push(seg);
        }
    }
    out.push((full, rename));
}

fn segments(path: &str) -> Vec<String> {
    path.split("::")
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The module a path written in `file` (inside inline module `inline`) is relative to, made absolute.
fn absolute(
    file: &[String],
    inline: &[String],
    path: &[String],
    scope: &Scope,
) -> Option<Vec<String>> {
    let first = path.first()?.as_str();
    let crate_root = |f: &[String]| -> Vec<String> {
        if f.first().is_some_and(|p| p == BIN) {
            vec![BIN.to_owned()]
        } else {
            Vec::new()
        }
    };
    let mut here: Vec<String> = file.iter().chain(inline).cloned().collect();
    match first {
        "crate" => {
            let mut abs = crate_root(file);
            abs.extend(path[1..].iter().cloned());
            Some(abs)
        }
        // The binary names the library `weft`; in the library `weft` can only be a module.
        "weft" if file.first().is_some_and(|p| p == BIN) => Some(path[1..].to_vec()),
        "super" | "self" => {
            let mut rest = path;
            while let Some(seg) = rest.first() {
                match seg.as_str() {
                    "super" => {
                        here.pop()?;
                    }
                    "self" => {}
                    _ => break,
                }
                rest = &rest[1..];
            }
            here.extend(rest.iter().cloned());
            Some(here)
        }
        name if inline.is_empty() && scope.children.contains(name) => {
            here.extend(path.iter().cloned());
            Some(here)
        }
        _ => None,
    }
}

/// Finds the `use` statements and the inline paths of one file.
fn reaches(file: &File, scope: &Scope) -> Vec<Reach> {
    let code = &file.code;
    let b = code.as_bytes();
    let mut out = Vec::new();
    // Inline modules open at a brace depth: (name, depth).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'{' {
            depth += 1;
            i += 1;
            continue;
        }
        if c == b'}' {
            depth = depth.saturating_sub(1);
            if inline.last().is_some_and(|(_, d)| *d == depth) {
                inline.pop();
            }
            i += 1;
            continue;
        }
        if !ident_byte(c) || ident_byte(prev(b, i)) || prev(b, i) == b'$' {
            i += 1;
            continue;
        }
        let word_end = (i..b.len()).find(|&j| !ident_byte(b[j])).unwrap_or(b.len());
        let word = &code[i..word_end];
        let inline_names: Vec<String> = inline.iter().map(|(n, _)| n.clone()).collect();
        if word == "mod" {
            let rest = code[word_end..].trim_start();
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if rest[name.len()..].trim_start().starts_with('{') {
                inline.push((name, depth));
            }
            i = word_end;
            continue;
        }
        if word == "use" {
            let end = code[word_end..].find(';').map_or(b.len(), |e| word_end + e);
            let before = code[..i].trim_end();
            let reexport = before.ends_with("pub")
                || before.ends_with(')') && {
                    let open = before.rfind('(').unwrap_or(0);
                    code[..open].trim_end().ends_with("pub")
                };
            let mut leaves = Vec::new();
            use_leaves(&code[word_end..end], &[], &mut leaves);
            for (path, _) in leaves {
                if let Some(abs) = absolute(&file.module, &inline_names, &path, scope) {
                    out.push(Reach {
                        path: abs,
                        reexport,
                    });
                }
            }
            i = end;
            continue;
        }
        // An inline path: word::word::...
        let mut j = word_end;
        let mut path = vec![word.to_owned()];
        while code[j..].starts_with("::") {
            let s = j + 2;
            let e = (s..b.len()).find(|&k| !ident_byte(b[k])).unwrap_or(b.len());
            if e == s {
                break;
            }
            path.push(code[s..e].to_owned());
            j = e;
        }
        if path.len() > 1
            && let Some(abs) = absolute(&file.module, &inline_names, &path, scope)
        {
            out.push(Reach {
                path: abs,
                reexport: false,
            });
        }
        i = j;
    }
    out
}

struct Crate {
    files: Vec<File>,
    /// Module path -> index in `files`.
    by_module: BTreeMap<Vec<String>, usize>,
    scopes: Vec<Scope>,
}

impl Crate {
    fn read() -> Crate {
        let src = src_dir();
        let mut paths = Vec::new();
        collect(&src, &mut paths);
        let mut files = Vec::new();
        let mut test_only: BTreeSet<Vec<String>> = BTreeSet::new();
        let mut children: BTreeMap<Vec<String>, BTreeSet<String>> = BTreeMap::new();
        for path in paths {
            let text = fs::read_to_string(&path).unwrap();
            let module = module_of(path.strip_prefix(&src).unwrap());
            let (code, tests) = drop_tests(&strip(&text));
            for t in tests {
                let mut m = module.clone();
                m.push(t);
                test_only.insert(m);
            }
            let kids = children.entry(module.clone()).or_default();
            for line in code.lines() {
                let line = line.trim_start();
                let line = line
                    .strip_prefix("pub(crate) ")
                    .or(line.strip_prefix("pub "))
                    .unwrap_or(line);
                if let Some(decl) = line.strip_prefix("mod ")
                    && let Some(name) = decl.trim().strip_suffix(';')
                {
                    kids.insert(name.trim().to_owned());
                }
            }
            files.push(File {
                lines: text.lines().count(),
                path,
                module,
                code,
            });
        }
        // A file under a test-only module is test code.
        files.retain(|f| !test_only.iter().any(|t| f.module.starts_with(t)));
        let by_module = files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.module.clone(), i))
            .collect();
        let mut krate = Crate {
            files,
            by_module,
            scopes: Vec::new(),
        };
        for f in &krate.files {
            krate.scopes.push(Scope {
                children: children.get(&f.module).cloned().unwrap_or_default(),
                aliases: BTreeMap::new(),
            });
        }
        for (i, f) in krate.files.iter().enumerate() {
            let mut leaves = Vec::new();
            for stmt in f.code.split(';') {
                if let Some(at) = stmt.find("use ")
                    && (at == 0 || !ident_byte(stmt.as_bytes()[at - 1]))
                {
                    use_leaves(&stmt[at + 4..], &[], &mut leaves);
                }
            }
            for (path, rename) in leaves {
                let Some(abs) = absolute(&f.module, &[], &path, &krate.scopes[i]) else {
                    continue;
                };
                let name = rename.unwrap_or_else(|| abs.last().cloned().unwrap_or_default());
                if name != "*" && name != "_" {
                    krate.scopes[i].aliases.insert(name, abs);
                }
            }
        }
        krate
    }

    /// The file that defines what an absolute path names, following re-exports.
    fn resolve(&self, path: &[String], hops: usize) -> Option<usize> {
        if hops > 16 {
            return None;
        }
        let mut known = 0;
        while known < path.len() && self.by_module.contains_key(&path[..=known]) {
            known += 1;
        }
        let module = &path[..known];
        let at = *self.by_module.get(module)?;
        if let Some(name) = path.get(known)
            && let Some(target) = self.scopes[at].aliases.get(name)
            && target.as_slice() != path
        {
            let mut next = target.clone();
            next.extend(path[known + 1..].iter().cloned());
            if let Some(found) = self.resolve(&next, hops + 1) {
                return Some(found);
            }
        }
        Some(at)
    }

    /// File-to-file dependencies: `edges[a]` is what file `a` uses.
    fn edges(&self) -> Vec<BTreeSet<usize>> {
        self.files
            .iter()
            .enumerate()
            .map(|(i, f)| {
                reaches(f, &self.scopes[i])
                    .into_iter()
                    .filter(|r| !r.reexport)
                    .filter_map(|r| self.resolve(&r.path, 0))
                    .filter(|&t| t != i)
                    .collect()
            })
            .collect()
    }

    fn name(&self, i: usize) -> String {
        self.files[i]
            .path
            .strip_prefix(src_dir())
            .unwrap()
            .display()
            .to_string()
    }
}

fn layer_of(module: &[String]) -> Option<usize> {
    let top = module.first()?;
    LAYERS
        .iter()
        .position(|layer| layer.contains(&top.as_str()))
}

#[test]
fn no_file_is_too_long() {
    let krate = Crate::read();
    let long: Vec<String> = krate
        .files
        .iter()
        .enumerate()
        .filter(|(_, f)| f.lines > MAX_LINES)
        .map(|(i, f)| format!("src/{} ({} lines)", krate.name(i), f.lines))
        .filter(|name| !KNOWN_LONG.iter().any(|k| name.starts_with(k)))
        .collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines: {long:#?}");
}

#[test]
fn every_module_has_a_layer() {
    let krate = Crate::read();
    let lost: BTreeSet<String> = krate
        .files
        .iter()
        .filter(|f| !f.module.is_empty() && layer_of(&f.module).is_none())
        .map(|f| f.module[0].clone())
        .collect();
    assert!(
        lost.is_empty(),
        "top-level modules missing from LAYERS: {lost:?}"
    );
}

#[test]
fn imports_point_down_the_layers() {
    let krate = Crate::read();
    let edges = krate.edges();
    let mut up = Vec::new();
    for (from, targets) in edges.iter().enumerate() {
        let a = &krate.files[from].module;
        for &to in targets {
            let b = &krate.files[to].module;
            if a.first() == b.first() || a.is_empty() || b.is_empty() {
                continue;
            }
            let (Some(la), Some(lb)) = (layer_of(a), layer_of(b)) else {
                continue;
            };
            if lb >= la {
                up.push(format!(
                    "src/{} -> src/{}",
                    krate.name(from),
                    krate.name(to)
                ));
            }
        }
    }
    assert!(up.is_empty(), "imports that point up or sideways: {up:#?}");
}

#[test]
fn no_import_cycles() {
    let krate = Crate::read();
    let edges = krate.edges();
    if std::env::var_os("HOUSE_DEBUG").is_some() {
        for (from, targets) in edges.iter().enumerate() {
            for &to in targets {
                eprintln!("EDGE src/{} -> src/{}", krate.name(from), krate.name(to));
            }
        }
    }
    // At every level of the module tree, the children of one module (each a whole subtree, the
    // parent's own file as one more) form a graph; none may have a cycle.
    let mut levels: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (from, targets) in edges.iter().enumerate() {
        for &to in targets {
            let a = &krate.files[from].module;
            let b = &krate.files[to].module;
            let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
            // A module's own file (`mod.rs`) is its interface: its children may use what it
            // declares and it may use them, so edges to or from it are not between siblings.
            let (Some(ca), Some(cb)) = (a.get(common), b.get(common)) else {
                continue;
            };
            let level = levels.entry(a[..common].to_vec()).or_default();
            level.entry(ca.clone()).or_default().insert(cb.clone());
        }
    }
    let mut cycles = Vec::new();
    for (parent, graph) in &levels {
        for cycle in find_cycles(graph) {
            let named: Vec<String> = cycle
                .iter()
                .map(|c| {
                    parent
                        .iter()
                        .chain(std::iter::once(c))
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("::")
                })
                .collect();
            let excused = KNOWN_CYCLES.iter().any(|known| *known == named.as_slice());
            if !excused {
                cycles.push(named.join(" -> "));
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles: {cycles:#?}");
}

/// Strongly connected components with more than one member (Tarjan), each in a stable order.
fn find_cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        let graph: &'a BTreeMap<String, BTreeSet<String>> = s.graph;
        if let Some(next) = graph.get(v) {
            for w in next {
                if !s.index.contains_key(w.as_str()) {
                    visit(s, w);
                    let lw = s.low[w.as_str()];
                    let lv = s.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if s.on_stack.contains(w.as_str()) {
                    let iw = s.index[w.as_str()];
                    let lv = s.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on_stack.remove(w);
                component.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    let nodes: BTreeSet<&str> = graph
        .iter()
        .flat_map(|(k, v)| std::iter::once(k.as_str()).chain(v.iter().map(String::as_str)))
        .collect();
    for v in nodes {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}
