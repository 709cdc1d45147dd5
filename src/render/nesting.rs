//! How deep templates nest: blocks inside blocks, partials inside partials.
//!
//! Handlebars parses and renders by recursion, one level per block or partial, and does not
//! notice when two partials include each other: a deep or recursive template overflows the
//! stack and aborts the whole run, and a few thousand nested blocks take minutes to parse.
//! A plain scan of the tags, before the parser sees the text, bounds both.

use std::collections::{BTreeMap, BTreeSet};

/// The deepest nesting of blocks and partials a template may have (real templates rarely
/// pass ten); every level costs the parser and the renderer a stack frame or more.
pub(crate) const MAX_DEPTH: usize = 100;

/// A `{{> name}}` or `{{#> name}}` tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Include {
    /// The partial's name; `None` when it is computed (`{{> (lookup ...)}}`).
    pub name: Option<String>,
    /// Byte offset of the tag.
    pub offset: usize,
    /// Blocks open around the tag.
    pub depth: usize,
}

/// What a scan of one template's tags found.
#[derive(Debug, Default)]
pub(crate) struct Shape {
    /// The partials it includes, in order.
    pub includes: Vec<Include>,
    /// The deepest block nesting.
    pub depth: usize,
    /// Byte offset of the first block opened past [`MAX_DEPTH`].
    pub too_deep_at: Option<usize>,
}

/// Scans the tags of `text`, skipping comments, raw blocks and escaped `\{{`.
pub fn scan(text: &str) -> Shape {
    let mut shape = Shape::default();
    let mut depth = 0usize;
    let mut pos = 0;
    while let Some(found) = text[pos..].find("{{") {
        let start = pos + found;
        if start > 0 && text.as_bytes()[start - 1] == b'\\' {
            pos = start + 2;
            continue;
        }
        let rest = &text[start..];
        if let Some(after) = rest.strip_prefix("{{{{") {
            // A raw block: its body is text, up to the matching close.
            let name: String = after
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '}')
                .collect();
            let close = format!("{{{{{{{{/{name}}}}}}}}}");
            pos = rest
                .find(&close)
                .map_or(text.len(), |i| start + i + close.len());
            continue;
        }
        let inner = rest[2..].trim_start_matches('~');
        if inner.starts_with("!--") {
            pos = rest.find("--}}").map_or(text.len(), |i| start + i + 4);
            continue;
        }
        let end = rest.find("}}").map_or(text.len(), |i| start + i + 2);
        if inner.starts_with('!') {
            pos = end;
            continue;
        }
        let opens_block = inner.starts_with('#')
            || (inner.starts_with('^') && !inner[1..].trim_start().starts_with(['}', '~']));
        if let Some(partial) = inner.strip_prefix('>').or(inner.strip_prefix("#>")) {
            shape.includes.push(Include {
                name: partial_name(partial),
                offset: start,
                depth,
            });
        }
        if opens_block {
            depth += 1;
            shape.depth = shape.depth.max(depth);
            if depth > MAX_DEPTH && shape.too_deep_at.is_none() {
                shape.too_deep_at = Some(start);
            }
        } else if inner.starts_with('/') {
            depth = depth.saturating_sub(1);
        }
        pos = end;
    }
    shape
}

fn partial_name(tag: &str) -> Option<String> {
    let tag = tag.trim_start();
    if tag.starts_with('(') {
        return None;
    }
    if let Some(quoted) = tag.strip_prefix(['"', '\'']) {
        let close = quoted.find(['"', '\''])?;
        return Some(quoted[..close].to_owned());
    }
    let name: String = tag
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '}' && *c != '~')
        .collect();
    Some(name)
}

/// Why a set of partials cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GraphError {
    /// Partials include each other: `path` starts and ends with the same name. The include
    /// that closes the cycle is at `offset` in the partial before last.
    Cycle {
        /// The partials around the cycle.
        path: Vec<String>,
        /// Byte offset of the closing include in `path[path.len() - 2]`.
        offset: usize,
    },
    /// Nesting through partials goes past [`MAX_DEPTH`]; `path` is the deepest chain.
    TooDeep {
        /// The chain of partials, outermost first.
        path: Vec<String>,
        /// Byte offset in the first partial of the include that starts the chain.
        offset: usize,
    },
}

/// How deep a partial nests, and which partial it includes on its deepest path.
type Depth = (usize, Option<String>);

/// The partials and how deep each one nests, its own blocks and its includes together.
#[derive(Debug, Default)]
pub(crate) struct PartialDepths {
    depths: BTreeMap<String, Depth>,
}

impl PartialDepths {
    /// Computes depths over `partials` (name → its scan); names not in the map are not
    /// partials of this tree (inline partials, or missing: rendering reports those).
    pub fn new(partials: &BTreeMap<String, Shape>) -> (PartialDepths, Vec<(String, GraphError)>) {
        let mut walk = Walk {
            partials,
            done: BTreeMap::new(),
            errors: Vec::new(),
        };
        for name in partials.keys() {
            walk.visit(name);
        }
        let Walk {
            done, mut errors, ..
        } = walk;
        let depths = PartialDepths { depths: done };
        let included: BTreeSet<&str> = partials
            .values()
            .flat_map(|s| s.includes.iter().filter_map(|i| i.name.as_deref()))
            .collect();
        for (name, shape) in partials {
            // A deep chain is reported once, at its top: every partial below is deep too.
            if included.contains(name.as_str()) {
                continue;
            }
            if let (depth, Some((inc, path))) = depths.of(shape) {
                if depth > MAX_DEPTH {
                    let mut path = path;
                    path.insert(0, name.clone());
                    let offset = inc.offset;
                    errors.push((name.clone(), GraphError::TooDeep { path, offset }));
                }
            }
        }
        (depths, errors)
    }

    /// How deep `shape` (a template) nests with the partials it includes, and for its
    /// deepest include, the include and the chain of partials it leads through.
    pub fn of<'s>(&self, shape: &'s Shape) -> (usize, Option<(&'s Include, Vec<String>)>) {
        let mut deepest = (shape.depth, None);
        for inc in &shape.includes {
            let Some(name) = &inc.name else { continue };
            let Some((d, _)) = self.depths.get(name) else {
                continue;
            };
            let total = inc.depth + 1 + d;
            if total > deepest.0 {
                deepest = (total, Some((inc, self.chain(name))));
            }
        }
        deepest
    }

    /// The deepest path of partials from `name` down, cut short past the limit (a message
    /// names the way in, not thousands of partials).
    fn chain(&self, name: &str) -> Vec<String> {
        let mut path = vec![name.to_owned()];
        let mut at = name;
        while let Some((_, Some(next))) = self.depths.get(at) {
            if path.len() > MAX_DEPTH + 1 || path.iter().any(|p| p == next) {
                path.push("...".to_owned());
                break;
            }
            path.push(next.clone());
            at = next;
        }
        path
    }
}

struct Walk<'a> {
    partials: &'a BTreeMap<String, Shape>,
    done: BTreeMap<String, Depth>,
    errors: Vec<(String, GraphError)>,
}

/// A partial being visited: how far through its includes, and its deepest so far.
struct Frame<'a> {
    name: &'a str,
    next: usize,
    depth: usize,
    deepest: Option<String>,
}

impl<'a> Walk<'a> {
    /// Depth-first over includes with an explicit stack (a chain of thousands of partials
    /// must not overflow this walk either); a cycle shows up as a name already on it.
    fn visit(&mut self, root: &'a str) {
        if self.done.contains_key(root) {
            return;
        }
        let frame = |name: &'a str| Frame {
            name,
            next: 0,
            depth: self.partials[name].depth,
            deepest: None,
        };
        let mut stack = vec![frame(root)];
        while let Some(top) = stack.last_mut() {
            let shape = &self.partials[top.name];
            let Some(inc) = shape.includes.get(top.next) else {
                let finished = stack.pop().expect("the loop holds a frame");
                let depth = finished.depth;
                self.done
                    .insert(finished.name.to_owned(), (depth, finished.deepest));
                if let Some(parent) = stack.last_mut() {
                    let inc = &self.partials[parent.name].includes[parent.next - 1];
                    if inc.depth + 1 + depth > parent.depth {
                        parent.depth = inc.depth + 1 + depth;
                        parent.deepest = Some(finished.name.to_owned());
                    }
                }
                continue;
            };
            top.next += 1;
            let Some((next, _)) = inc
                .name
                .as_deref()
                .and_then(|n| self.partials.get_key_value(n))
            else {
                continue;
            };
            if let Some(i) = stack.iter().position(|f| f.name == next) {
                let mut path: Vec<String> = stack[i..].iter().map(|f| f.name.to_owned()).collect();
                path.push(next.clone());
                let owner = stack[stack.len() - 1].name.to_owned();
                let error = GraphError::Cycle {
                    path,
                    offset: inc.offset,
                };
                if !self.errors.iter().any(|(_, e)| same_cycle(e, &error)) {
                    self.errors.push((owner, error));
                }
                continue;
            }
            if let Some((d, _)) = self.done.get(next) {
                let top = stack.last_mut().expect("the loop holds a frame");
                if inc.depth + 1 + d > top.depth {
                    top.depth = inc.depth + 1 + d;
                    top.deepest = Some(next.clone());
                }
                continue;
            }
            stack.push(frame(next));
        }
    }
}

/// The same cycle found from another partial on it (a -> b -> a and b -> a -> b).
fn same_cycle(a: &GraphError, b: &GraphError) -> bool {
    let members = |e: &GraphError| match e {
        GraphError::Cycle { path, .. } => {
            let mut m = path[..path.len() - 1].to_vec();
            m.sort();
            m.dedup();
            Some(m)
        }
        GraphError::TooDeep { .. } => None,
    };
    members(a).is_some() && members(a) == members(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes(partials: &[(&str, &str)]) -> BTreeMap<String, Shape> {
        partials
            .iter()
            .map(|(n, t)| ((*n).to_owned(), scan(t)))
            .collect()
    }

    #[test]
    fn scan_counts_blocks_and_finds_includes() {
        let s = scan(
            "{{#if a}}{{#each b}}{{> row x=1}}{{/each}}{{else}}{{~> \"q\"}}{{/if}}\
             {{!-- {{#if}} --}}{{! {{#x}} }}\\{{#no}}{{{{raw}}}}{{#if}}{{{{/raw}}}}{{#> (lookup . \"n\")}}{{/x}}",
        );
        assert_eq!(s.depth, 2);
        assert_eq!(s.too_deep_at, None);
        let names: Vec<_> = s
            .includes
            .iter()
            .map(|i| (i.name.clone(), i.depth))
            .collect();
        assert_eq!(
            names,
            [
                (Some("row".to_owned()), 2),
                (Some("q".to_owned()), 1),
                (None, 0)
            ]
        );
    }

    #[test]
    fn scan_stops_counting_at_the_limit() {
        let text = "{{#if a}}".repeat(20_000);
        let s = scan(&text);
        assert_eq!(s.too_deep_at, Some(MAX_DEPTH * "{{#if a}}".len()));
    }

    #[test]
    fn mutual_recursion_is_one_cycle_named_in_order() {
        let (_, errors) = PartialDepths::new(&shapes(&[("a", "x{{> b}}"), ("b", "{{> a}}")]));
        assert_eq!(
            errors,
            [(
                "b".to_owned(),
                GraphError::Cycle {
                    path: vec!["a".into(), "b".into(), "a".into()],
                    offset: 0
                }
            )]
        );
    }

    #[test]
    fn depth_adds_blocks_and_partials() {
        let (d, errors) = PartialDepths::new(&shapes(&[
            ("a", "{{#if x}}{{> b}}{{/if}}"),
            ("b", "{{#if y}}{{#if z}}{{/if}}{{/if}}"),
        ]));
        assert!(errors.is_empty());
        let template = scan("{{#each l}}{{> a}}{{/each}}");
        let (depth, deepest) = d.of(&template);
        assert_eq!(depth, 1 + 1 + 1 + 1 + 2);
        assert_eq!(deepest.unwrap().1, ["a", "b"]);
    }

    #[test]
    fn a_long_chain_of_partials_is_too_deep_and_reported_once() {
        let names: Vec<String> = (0..10_000).map(|i| format!("p{i:05}")).collect();
        let partials: BTreeMap<String, Shape> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let next = names
                    .get(i + 1)
                    .map_or(String::new(), |m| format!("{{{{> {m}}}}}"));
                (n.clone(), scan(&next))
            })
            .collect();
        let (_, errors) = PartialDepths::new(&partials);
        assert_eq!(errors.len(), 1, "{errors:?}");
        let (name, GraphError::TooDeep { path, offset }) = &errors[0] else {
            panic!("{errors:?}")
        };
        assert_eq!((name.as_str(), *offset), ("p00000", 0));
        assert_eq!(&path[..3], ["p00000", "p00001", "p00002"]);
        assert_eq!(path.last().map(String::as_str), Some("..."));
    }
}
